"""Train the feature classifiers that ship in `diffusekit/eval/weights/`, deterministically.

    python -m diffusekit.eval.train_classifier --data digits      # ~25 s on one CPU core
    python -m diffusekit.eval.train_classifier --data mnist5k     # ~3.5 min on one CPU core
    python -m diffusekit.eval.train_classifier --data spoken-digits   # the audio judge (`eval.audio`)

Determinism: one CPU thread, `torch.use_deterministic_algorithms(True)`, seeded init, a seeded generator for
shuffling and shifts, and float64 arithmetic. float64 is the point: kernels differ between CPUs (AVX2 vs AVX-512,
MKL vs oneDNN) in the last bits, and training amplifies such differences; starting from 1e-16 instead of 1e-7 they
stay far below float32 resolution, so the float32 weights that ship reproduce to ~1 ulp on any machine (and
bit-exactly on the same one). The held-out split is the rule in `classifier.heldout_mask` (i % 5 == 0); for
spoken-digits it is the data set's own test split, whose voices never speak in train (`data.speech`), and the
augmentation is a random shift in time (zero-filled) and a random gain instead of a shift in pixels.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from .classifier import (
    HELDOUT_EVERY,
    AudioClassifier,
    AudioClassifierConfig,
    WEIGHTS_DIR,
    ClassifierConfig,
    FeatureClassifier,
    config_dict,
    file_sha256,
    heldout_mask,
    weights_paths,
)
from .real import load_real


@dataclass
class Recipe:
    arch: ClassifierConfig
    epochs: int
    batch_size: int = 64
    lr: float = 2e-3  # Adam, cosine-decayed to 0 so the last steps settle instead of jittering
    weight_decay: float = 1e-4  # AdamW
    shift: int = 1  # random translations of up to `shift` pixels (samples for audio): robustness to sample jitter
    seed: int = 0
    dtype: str = "float64"
    extra: dict = field(default_factory=dict)


RECIPES = {
    "digits": Recipe(ClassifierConfig("digits", 1, 8, (32, 64), 128, 10), epochs=50, shift=1),
    "mnist5k": Recipe(ClassifierConfig("mnist5k", 1, 28, (16, 32, 64), 128, 10), epochs=20, shift=2),
    # shift 800 samples = 0.1 s, the data's own placement jitter; gain log-uniform in GAIN
    "spoken-digits": Recipe(AudioClassifierConfig(), epochs=15, shift=800),
}
GAIN = (0.5, 1.5)  # audio: random gain, so the judge does not lean on the data's exact loudness range


@contextlib.contextmanager
def deterministic(threads: int = 1):
    """One thread and deterministic kernels for the duration; restores the caller's settings after."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def random_shift(x: torch.Tensor, s: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image of (B, C, H, W) by its own integer offset in [-s, s]^2, filling with background -1."""
    if s == 0:
        return x
    b, _, h, w = x.shape
    xp = F.pad(x, (s, s, s, s), value=-1.0)  # (B, C, H+2s, W+2s)
    dy, dx = torch.randint(0, 2 * s + 1, (2, b), generator=gen)
    rows = torch.arange(h)[None, :] + dy[:, None]  # (B, H)
    cols = torch.arange(w)[None, :] + dx[:, None]  # (B, W)
    out = xp[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def random_time_shift(x: torch.Tensor, s: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each signal of (B, C, L) by its own integer offset in [-s, s] samples, filling with silence (0), and
    scale it by a gain log-uniform in GAIN."""
    b, _, n = x.shape
    xp = F.pad(x, (s, s))  # (B, C, L + 2s)
    d = torch.randint(0, 2 * s + 1, (b,), generator=gen)
    idx = torch.arange(n)[None, :] + d[:, None]  # (B, L)
    out = torch.gather(xp, 2, idx[:, None, :].expand(-1, x.shape[1], -1))
    lo, hi = torch.log(torch.tensor(GAIN, dtype=x.dtype))
    gain = torch.exp(lo + (hi - lo) * torch.rand(b, generator=gen, dtype=x.dtype))
    return out * gain[:, None, None]


def _image_data(data: str, cfg: ClassifierConfig):
    """(train x, y, held-out x, y, split record, cfg) of an image data set: the rule of `heldout_mask`."""
    x, labels = load_real(data)
    if labels is None:
        raise ValueError(f"{data!r} has no labels: a feature classifier needs a labelled data set")
    test = heldout_mask(len(x))
    if tuple(x.shape[1:]) != (cfg.in_channels, cfg.image_size, cfg.image_size):
        raise ValueError(f"{data}: images {tuple(x.shape[1:])} do not match the recipe's architecture {cfg}")
    split = {"rule": f"image i of load_data({data!r}) is held out iff i % {HELDOUT_EVERY} == 0",
             "n_train": int((~test).sum()), "n_heldout": int(test.sum())}
    return x[~test], labels[~test], x[test], labels[test], split, cfg


def _audio_data(data: str, cfg: AudioClassifierConfig):
    """(train x, y, test x, y, split record) of spoken-digits, and cfg with the log-mel affine of the train clips."""
    import dataclasses

    from ..data.speech import load_spoken_digits

    tr, te = load_spoken_digits("train"), load_spoken_digits("test")
    with torch.no_grad():
        m = AudioClassifier(cfg).double().log_mel(tr.x.double())  # (N, n_mels, frames) with mean 0, std 1 so far
    cfg = dataclasses.replace(cfg, mel_mean=round(float(m.mean()), 4), mel_std=round(float(m.std()), 4))
    split = {"rule": "spoken-digits' own splits: train clips for training, the test split (voices never in "
                     "train) for the accuracy", "train_source": tr.source, "n_train": len(tr), "n_heldout": len(te),
             "heldout_voices": te.notes[0]}
    return tr.x, tr.labels, te.x, te.labels, split, cfg


@torch.no_grad()
def accuracy(model: FeatureClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    pred = torch.cat([model(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return (pred == y).double().mean().item()


def train_classifier(data: str, recipe: Recipe | None = None, log=print) -> tuple[dict[str, torch.Tensor], dict]:
    """Train on the non-held-out images of `data`; returns (float32 state dict, JSON record without sha256)."""
    if recipe is None:
        if data not in RECIPES:
            raise ValueError(f"no training recipe for {data!r}; recipes: {', '.join(RECIPES)}")
        recipe = RECIPES[data]
    dtype = getattr(torch, recipe.dtype)
    x_tr, y_tr, x_te, y_te, split, cfg = (_audio_data if isinstance(recipe.arch, AudioClassifierConfig)
                                          else _image_data)(data, recipe.arch)
    audio = isinstance(cfg, AudioClassifierConfig)
    net, augment = (AudioClassifier, random_time_shift) if audio else (FeatureClassifier, random_shift)

    t0 = time.time()
    with deterministic():
        torch.manual_seed(recipe.seed)  # the default init draws from the global generator
        model = net(cfg).to(dtype)
        gen = torch.Generator().manual_seed(recipe.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        steps_per_epoch = -(-len(x_tr) // recipe.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs * steps_per_epoch)
        xd_tr = x_tr.to(dtype)
        for epoch in range(recipe.epochs):
            model.train()
            perm = torch.randperm(len(x_tr), generator=gen)
            total = 0.0
            for i in range(0, len(x_tr), recipe.batch_size):
                idx = perm[i : i + recipe.batch_size]
                xb = augment(xd_tr[idx], recipe.shift, gen)
                loss = F.cross_entropy(model(xb), y_tr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            log(f"{data} epoch {epoch + 1}/{recipe.epochs} loss {total / len(x_tr):.4f} ({time.time() - t0:.0f}s)")
        model = model.float().eval()  # what ships, and what the accuracies below are measured on
        acc_te, acc_tr = accuracy(model, x_te, y_te), accuracy(model, x_tr, y_tr)
    log(f"{data}: held-out accuracy {acc_te:.4f} ({len(x_te)} examples), train accuracy {acc_tr:.4f}")

    record = {
        "data": data,
        "arch": config_dict(cfg),
        "feature_dim": cfg.feature_dim,
        "features": ("penultimate layer: ReLU(Linear([mean, max] over time of conv stages on log-mel)), float32"
                     if audio else "penultimate layer: ReLU(Linear(flatten(conv stages))), float32"),
        "input": {"shape": list(x_tr.shape[1:]), "range": [-1.0, 1.0], **({"rate": cfg.rate} if audio else {})},
        "split": split,
        "train": {
            "optimizer": "AdamW",
            "lr": recipe.lr,
            "lr_schedule": "cosine to 0, per step",
            "weight_decay": recipe.weight_decay,
            "epochs": recipe.epochs,
            "batch_size": recipe.batch_size,
            "augment": (f"random shifts in [-{recipe.shift}, {recipe.shift}] samples, zero-filled; gain "
                        f"log-uniform in {list(GAIN)}" if audio else
                        f"random integer shifts in [-{recipe.shift}, {recipe.shift}] px, padded with -1"),
            "seed": recipe.seed,
            "dtype": recipe.dtype,
            "threads": 1,
            "deterministic_algorithms": True,
            "torch": torch.__version__,
            "seconds": round(time.time() - t0, 1),
        },
        "test_accuracy": acc_te,
        "train_accuracy": acc_tr,
        "command": f"python -m diffusekit.eval.train_classifier --data {data}",
    }
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return state, record


def save_classifier(state: dict[str, torch.Tensor], record: dict, out_dir: Path | str = WEIGHTS_DIR) -> Path:
    """Write <data>.safetensors and <data>.json (with the sha256 of the weights file) into `out_dir`."""
    st_path, json_path = weights_paths(record["data"], out_dir)
    st_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, st_path, metadata={"data": record["data"], "format": "diffusekit.eval.FeatureClassifier"})
    st_path.chmod(0o644)  # safetensors creates the file owner-only; it ships, so make it readable like the rest
    record = {**record, "sha256": file_sha256(st_path)}
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    return st_path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, choices=sorted(RECIPES))
    p.add_argument("--out", default=str(WEIGHTS_DIR), help="output folder (default: the shipped weights folder)")
    args = p.parse_args(argv)
    state, record = train_classifier(args.data)
    path = save_classifier(state, record, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB) and {path.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
