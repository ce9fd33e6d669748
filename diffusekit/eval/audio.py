"""The spoken-digit judge: a small CNN on log-mel spectrograms, trained on the real clips of `spoken-digits`, that
scores generated clips as SC09 papers do (WaveGAN, Donahue et al. 2019; DiffWave, Kong et al. 2021, section 5.3).

    from diffusekit.eval.audio import judge_speech, format_speech
    res = judge_speech(samples, asked=labels)   # samples (N, 1, 8000) in [-1, 1]; asked: the digits asked for
    print(format_speech(res))

The judge is `classifier.AudioClassifier` (log-mel front end, 1-D CNN over time; its docstring gives the
details), shipped in weights/spoken-digits.* and trained by `python -m diffusekit.eval.train_classifier --data
spoken-digits` on the train voices; its record holds its accuracy on the held-out voices.

What `judge_speech` reports (n = min(len(samples), len(real) // 2) unless given):
    accuracy      share of samples the judge recognises as the digit asked for (class-conditional samples)
    fd            Frechet distance in the judge's features, a random n of the samples against real half A of the
                  train clips; floor = real half B against A, same n (as `evaluate`)
    is            the Inception-Score-style figure exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016) over all
                  samples, with p(y) their mean prediction; 10 at most (ten classes). "real": the same for as
                  many real clips (the figure real speech reaches under this judge)
    classes       the predicted-class histogram (`classes.class_histogram`)
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from .classes import class_histogram
from .classifier import classifier_outputs, load_classifier
from .frechet import frechet_distance, gaussian_stats

DATA = "spoken-digits"
MIN_N = 10


def inception_score(logits: np.ndarray | torch.Tensor) -> float:
    """exp(mean_x KL(p(y|x) || p(y))), p(y) the mean of p(y|x): from 1 (one class, or no confidence) to K."""
    logp = torch.as_tensor(np.asarray(logits), dtype=torch.float64).log_softmax(1)  # (N, K)
    p = logp.exp()
    log_py = torch.log(p.mean(0, keepdim=True))
    return float(math.exp((p * (logp - log_py)).sum(1).mean()))


def judge_speech(samples: torch.Tensor, asked=None, n: int | None = None, seed: int = 0, real=None,
                 classifier=None) -> dict:
    """Score clips (N, 1, 8000) in [-1, 1] with the shipped judge (see the module docstring). `asked`: the digit
    each sample was asked for (None for unconditional samples: no accuracy). `real`: the reference clips
    (default: the train split of `spoken-digits`, what a model learns from); `classifier`: a LoadedClassifier
    (default: the shipped one)."""
    t0 = time.time()
    x = torch.as_tensor(samples).float()
    clf = classifier or load_classifier(DATA)
    cfg = clf.cfg
    if x.ndim != 3 or tuple(x.shape[1:]) != (1, cfg.length):
        raise ValueError(f"spoken-digit judge: samples must be (N, 1, {cfg.length}) at {cfg.rate} Hz; got "
                         f"{tuple(x.shape)}")
    if real is None:
        from ..data.speech import load_spoken_digits

        ds = load_spoken_digits("train")
        real = (ds.x, ds.labels)
    x_r, y_r = real
    f_s, l_s = (t.double().numpy() for t in classifier_outputs(clf, x, batch_size=250))
    f_r, l_r = (t.double().numpy() for t in classifier_outputs(clf, x_r, batch_size=250))
    n_max = min(len(x), len(x_r) // 2)
    n = n_max if n is None else int(n)
    if not MIN_N <= n <= n_max:
        raise ValueError(f"n = {n} clips per set is not possible: need {MIN_N} <= n <= min(samples = {len(x)}, "
                         f"real // 2 = {len(x_r) // 2})")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x_r))
    a, b = np.sort(perm[:n]), np.sort(perm[n : 2 * n])
    pick = np.sort(rng.permutation(len(x))[:n])
    mu_a, sig_a = gaussian_stats(f_r[a])
    res = {"data": DATA, "n_samples": len(x), "n_real": len(x_r), "n": n, "seed": seed,
           "classifier": {"name": clf.name, "heldout_voice_accuracy": clf.record.get("test_accuracy")},
           "fd": {"value": frechet_distance(*gaussian_stats(f_s[pick]), mu_a, sig_a),
                  "floor": frechet_distance(*gaussian_stats(f_r[b]), mu_a, sig_a), "n": n}}
    res["fd"]["ratio"] = res["fd"]["value"] / res["fd"]["floor"]
    real_pick = np.sort(perm[: min(len(x), len(x_r))])
    res["is"] = {"value": inception_score(l_s), "real": inception_score(l_r[real_pick]), "n": len(x),
                 "n_real": len(real_pick), "max": cfg.num_classes}
    counts = np.bincount(np.asarray(y_r), minlength=cfg.num_classes)
    res["classes"] = class_histogram(l_s, counts / counts.sum(), real_logits=l_r[real_pick])
    if asked is not None:
        asked = torch.as_tensor(asked, dtype=torch.long).reshape(-1).numpy()
        if len(asked) != len(x):
            raise ValueError(f"asked: one digit per sample; got {len(asked)} for {len(x)} samples")
        pred = l_s.argmax(1)
        per = [float((pred[asked == k] == k).mean()) if (asked == k).any() else None for k in range(cfg.num_classes)]
        res["accuracy"] = {"value": float((pred == asked).mean()), "per_digit": per, "n": len(x)}
    res["seconds"] = round(time.time() - t0, 2)
    return res


def format_speech(r: dict) -> str:
    """A few lines: accuracy of the asked digit, FD with its floor, the IS-style figure beside real clips'."""
    lines = [f"{r['data']}: {r['n_samples']} samples vs {r['n_real']} real clips (judge {r['classifier']['name']}, "
             f"held-out-voice accuracy {r['classifier']['heldout_voice_accuracy']:.3f})"]
    if "accuracy" in r:
        lines.append(f"asked digit recognised: {r['accuracy']['value']:.3f} (n = {r['accuracy']['n']})")
    fd = r["fd"]
    lines.append(f"FD (judge features): {fd['value']:.4g}   real-vs-real floor {fd['floor']:.4g}   "
                 f"ratio {fd['ratio']:.3g}   n = {fd['n']}")
    lines.append(f"IS-style score: {r['is']['value']:.3f}   real clips {r['is']['real']:.3f}   (max {r['is']['max']}, "
                 f"n = {r['is']['n']})")
    c = r["classes"]
    lines.append("predicted digits: " + " ".join(f"{i}:{k}" for i, k in enumerate(c["counts"])))
    lines += [f"note: {s}" for s in r.get("notes", [])]
    return "\n".join(lines)


__all__ = ["format_speech", "inception_score", "judge_speech"]
