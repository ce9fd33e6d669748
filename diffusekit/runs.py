"""A run directory: what a training run wrote, and the trained model loaded back for sampling.

    RUN_DIR/run.json        what was trained: training settings, network config, schedule, data description
    RUN_DIR/checkpoints/    step-NNNNNNN/ (see train/checkpoint.py); the newest complete one is used
    RUN_DIR/metrics.jsonl   one JSON line per logged step
    RUN_DIR/samples/        sample grids written during training

Loading reads JSON and safetensors only: nothing is unpickled and no code comes from the run directory.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import load_file

from . import fast
from .conditioning import Guided, LabelConditioned
from .denoiser import Denoiser
from .nets import UNet, UNetConfig
from .samplers import sample
from .schedules import get_schedule, schedule_from_dict

RUN_FILE = "run.json"
LOG_SIGMA_EMB_SCALE = 250.0  # UNet embedding scale when it sees log(sigma)/4 (range ~[-1.6, 1.1]) not t in 0..999


def build_net(unet_config: UNetConfig, num_classes: int | None = None, p_uncond: float = 0.1) -> torch.nn.Module:
    net = UNet(unet_config)
    if num_classes:
        net = LabelConditioned(net, num_classes, unet_config.cond_dim, p_uncond)
    return net


def build_schedule(train_config):
    return get_schedule(train_config.schedule)


def describe_data(ds) -> dict:
    return {"name": ds.name, "source": ds.source, "n": len(ds), "shape": list(ds.x.shape[1:]),
            "num_classes": ds.num_classes, "class_names": ds.class_names, "rate": getattr(ds, "rate", None)}


def read_run_info(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a diffusekit run directory (no {RUN_FILE}); train one with "
                                f"`diffusekit train --out {run_dir}`")
    return json.loads(path.read_text())


class TrainedModel:
    """A trained network with its denoiser, ready to sample. `TrainedModel.load(run_dir)` takes the EMA weights
    of the newest checkpoint."""

    def __init__(self, info: dict, net: torch.nn.Module, step: int, device="cpu", precision: str = "auto"):
        if precision not in ("auto", "fp32"):
            raise ValueError(f"precision must be 'auto' (bf16 network where the CPU has native bf16) or 'fp32', "
                             f"got {precision!r}")
        self.info, self.net, self.step = info, net.eval().requires_grad_(False), step
        self.device = torch.device(device)
        self.precision = precision
        self.schedule = schedule_from_dict(info["schedule"])
        self.denoiser = Denoiser(self.net, self.schedule, prediction=info["prediction"])
        self.shape = tuple(info["data"]["shape"])
        self.num_classes = info["data"]["num_classes"] if info["train"].get("cond") == "label" else None

    @classmethod
    def load(cls, run_dir: str | Path, weights: str = "ema", checkpoint: str | Path | None = None, device="cpu",
             precision: str = "auto"):
        from .train.checkpoint import latest_checkpoint  # here: train imports this module

        if weights not in ("ema", "model"):
            raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
        run_dir = Path(run_dir)
        info = read_run_info(run_dir)
        ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir / "checkpoints")
        if ckpt is None:
            raise FileNotFoundError(f"{run_dir} has no complete checkpoint yet (in {run_dir / 'checkpoints'})")
        train = info["train"]
        net = build_net(UNetConfig.from_dict(info["unet"]),
                        info["data"]["num_classes"] if train.get("cond") == "label" else None)
        net.load_state_dict(load_file(str(ckpt / f"{weights}.safetensors")))
        step = json.loads((ckpt / "state.json").read_text())["step"]
        if precision == "auto":
            net = fast.prepare_model(net, device, len(info["data"]["shape"]) - 1)
        return cls(info, net.to(device), step, device, precision)

    @torch.no_grad()
    def sample(self, num: int, sampler: str = "dpmpp-2m", steps: int = 20, seed: int = 0, batch: int = 64,
               labels=None, guidance: float = 1.0, callback=None, progress=None, **options) -> torch.Tensor:
        """`num` samples in [-1, 1], shape (num, *data shape). Batches are drawn from one seeded generator, so
        the result depends on the seed and `batch`, not on anything else.

        labels: for class-conditional models, an int, a list of ints, or None (the classes in turn);
        guidance: classifier-free guidance scale (1 = plain conditional model)."""
        if num < 1 or batch < 1:
            raise ValueError(f"num and batch must be >= 1, got num={num}, batch={batch}")
        label_tensor = self.labels_for(num, labels)
        g = torch.Generator(device=self.device).manual_seed(seed)
        den = self.denoiser
        if label_tensor is not None and guidance != 1:
            den = Guided(self.denoiser, guidance, lambda c: torch.full_like(c, self.num_classes))
        out = []
        amp = fast.autocast(self.device, len(self.shape) - 1) if self.precision == "auto" else nullcontext()
        for start in range(0, num, batch):
            b = min(batch, num - start)
            cond = None if label_tensor is None else label_tensor[start:start + b].to(self.device)
            with amp:  # the network in bf16 where that is fast; the sampler's arithmetic stays fp32
                x = sample(den, (b, *self.shape), sampler=sampler, steps=steps, generator=g, cond=cond,
                           callback=callback, device=self.device, **options)
            out.append(x.clamp(-1, 1).cpu())
            if progress is not None:
                progress(b)
        return torch.cat(out)

    def labels_for(self, num: int, labels=None) -> torch.Tensor | None:
        """The labels `sample` uses for `num` samples (None for unconditional models); checks them."""
        if self.num_classes is None:
            if labels is not None:
                raise ValueError("this model is unconditional: it takes no labels (train with --cond label)")
            return None
        if labels is None:
            return torch.arange(num) % self.num_classes
        t = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if len(t) == 1:
            t = t.expand(num)
        bad = t[(t < 0) | (t >= self.num_classes)]
        if len(bad):
            names = self.info["data"].get("class_names")
            raise ValueError(f"unknown label {int(bad[0])}: this model knows labels 0..{self.num_classes - 1}"
                             + (f" ({', '.join(map(str, names))})" if names else ""))
        if len(t) != num:
            raise ValueError(f"give one label or {num} labels, got {len(t)}")
        return t.clone()
