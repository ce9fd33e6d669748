"""The spoken-digit data set and its judge, measured on real clips only (BENCHMARKS.md section 15): what a model's
figures are to be read against.

    OMP_NUM_THREADS=1 python benchmarks/speech_judge.py --out benchmarks/results/15-speech/judge.json

Reports: the data set's recipe, size and build time (from its cache record); the shipped judge's accuracy on the
held-out voices, per digit and per voice; FD in the judge's features at n = 1000 for the real-vs-real floor (train
half B vs train half A, what `diffusekit eval` reports beside a model: "real_train_half_b", whose FD is the floor by
construction) and for the first n held-out-voice clips against the same half A; the IS-style figure of real clips; and, for scale, what three wrong generators score: pink noise, the real
clips time-reversed, and the real clips with shuffled labels (accuracy only). `--rate-cost`: the time of one
training step of the `small` 1-D UNet at 8,000 and 16,000 samples (the cost behind the choice of 8 kHz).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

import flops  # benchmarks/flops.py: machine_info
from diffusekit.data.speech import SpeechRecipe, cache_dir, load_spoken_digits, pink_noise
from diffusekit.eval.audio import judge_speech
from diffusekit.eval.classifier import classifier_outputs, load_classifier


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=Path(__file__).parent).stdout.strip()


def short(r: dict) -> dict:
    keep = {"fd": r["fd"], "is": r["is"]}
    if "accuracy" in r:
        keep["accuracy"] = r["accuracy"]
    return keep


def rate_cost(repeats: int = 3) -> dict:
    """Seconds per training step (forward + backward, batch 16) of the `small` 1-D UNet at both lengths."""
    from diffusekit.nets.unet import UNet, unet_config

    out = {}
    for length in (8000, 16000):
        torch.manual_seed(0)
        net = UNet(unet_config("small", 1, dims=1))
        x, t = torch.randn(16, 1, length), torch.rand(16) * 999
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            net(x, t).square().mean().backward()
            times.append(time.perf_counter() - t0)
        out[str(length)] = {"median_s": float(np.median(times[1:])), "runs_s": times[1:]}  # first call: warm-up
    out["ratio_16k_over_8k"] = out["16000"]["median_s"] / out["8000"]["median_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/15-speech/judge.json"))
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--rate-cost", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    recipe = SpeechRecipe()
    train, test = load_spoken_digits("train"), load_spoken_digits("test")
    meta = json.loads((cache_dir() / recipe.key()).with_suffix(".json").read_text())
    clf = load_classifier("spoken-digits")
    res = {"machine": flops.machine_info(), "commit": commit(), "n": args.n,
           "data": {k: meta[k] for k in ("key", "recipe", "espeak", "scipy", "rate", "length", "train_voices",
                                         "test_voices", "cropped", "processes", "build_seconds")},
           "judge": {"name": clf.name, "record_test_accuracy": clf.record["test_accuracy"],
                     "train_seconds": clf.record["train"]["seconds"]}}

    # held-out voices: accuracy overall, per digit, per voice
    _, logits = classifier_outputs(clf, test.x, batch_size=250)
    pred, y = logits.argmax(1), test.labels
    names = meta["test_voices"]
    res["heldout"] = {
        "accuracy": float((pred == y).double().mean()), "n": len(y),
        "per_digit": [float((pred[y == k] == k).double().mean()) for k in range(10)],
        "per_voice": {names[v]: {"accuracy": float((pred[m] == y[m]).double().mean()), "n": int(m.sum())}
                      for v in range(len(names)) for m in [test.params["voice"] == v]},
        "confusions": [[int(((y == a) & (pred == b)).sum()) for b in range(10)] for a in range(10)],
    }
    _, logits_tr = classifier_outputs(clf, train.x, batch_size=250)
    res["train_accuracy"] = float((logits_tr.argmax(1) == train.labels).double().mean())

    real = (train.x, train.labels)
    kw = dict(n=args.n, seed=0, real=real, classifier=clf)
    # the judge's real halves (`judge_speech`, seed 0): A = perm[:n] is the reference, B = perm[n:2n] the floor.
    # Half B judged as if it were samples gives the floor as its FD (by construction) and real clips' accuracy and IS.
    pick = np.sort(np.random.default_rng(0).permutation(len(train))[args.n : 2 * args.n])
    res["real_train_half_b"] = short(judge_speech(train.x[pick], asked=train.labels[pick], **kw))
    res["heldout_voices"] = short(judge_speech(test.x[: args.n], asked=test.labels[: args.n], **kw))
    noise = np.stack([pink_noise(np.random.default_rng([1, i]), train.x.shape[-1]) for i in range(args.n)])
    noise = torch.from_numpy(0.3 * noise / np.abs(noise).max(1, keepdims=True)).float()[:, None]
    res["wrong"] = {
        "pink_noise": short(judge_speech(noise, **kw)),
        "time_reversed": short(judge_speech(train.x[pick].flip(-1), asked=train.labels[pick], **kw)),
        "shuffled_labels": short(judge_speech(train.x[pick], asked=train.labels[pick][torch.randperm(
            args.n, generator=torch.Generator().manual_seed(0))], **kw))["accuracy"],
    }
    if args.rate_cost:
        res["rate_cost"] = rate_cost()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    h = res["heldout"]
    print(f"held-out voices: accuracy {h['accuracy']:.4f} (n {h['n']}); train {res['train_accuracy']:.4f}")
    for k in ("real_train_half_b", "heldout_voices"):
        r = res[k]
        print(f"{k}: FD {r['fd']['value']:.4g} (floor {r['fd']['floor']:.4g}), IS {r['is']['value']:.3f}, "
              f"accuracy {r['accuracy']['value']:.4f}")
    for k, r in res["wrong"].items():
        print(k, r if k == "shuffled_labels" else f"FD {r['fd']['value']:.4g} IS {r['is']['value']:.3f}")
    if "rate_cost" in res:
        print("rate cost", res["rate_cost"])
    print(args.out)


if __name__ == "__main__":
    main()
