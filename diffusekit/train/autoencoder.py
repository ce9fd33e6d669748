"""Training the first stage of latent diffusion: a KL autoencoder (`diffusekit.nets.autoencoder`) on a data set.

The run directory is laid out like a diffusion run's (`diffusekit.rundir`): run.json (with the autoencoder config
under "autoencoder"), checkpoints/step-N/ (model, EMA, optimizer and RNG state, written atomically; the latent
scale measured on the EMA weights in state.json), metrics.jsonl, samples/ (originals above their reconstructions).
Resumption is exact, as for diffusion runs: data order and posterior noise come from two seeded generators whose
states are saved.

Loss per image (LDM's, without its perceptual and patch-GAN terms, which need weights not available offline):
    sum over pixels of |x - x_hat| (or (x - x_hat)^2)  +  kl_weight * KL(q(z|x) || N(0, I)) summed over the latent
divided by the pixels per image (so the loss reads as a per-pixel error), averaged over the batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import fast
from ..data import load_data
from ..latent import latent_scale
from ..model import describe_data
from ..nets import param_count
from ..nets.autoencoder import Autoencoder, AutoencoderConfig, autoencoder_config, kl_divergence
from ..rundir import RUN_FILE, latest_checkpoint
from ..viz.grids import save_grid
from .checkpoint import load_checkpoint, save_checkpoint, write_json_atomic
from .distributed import Dist
from .ema import EMA
from .ownership import hold
from .setup import BatchStream, autocast_for, prepare_out
from .hooks import progress_bar
from .step import diverged, lr_at

LOSSES = ("l1", "l2")


@dataclass
class AutoencoderTrainConfig:
    """Settings of an autoencoder run; saved in run.json under "train"."""

    data: str = "mnist5k"
    out: str = "runs/ae"
    steps: int | None = None
    minutes: float | None = None
    factor: int = 4  # down-sampling factor of each spatial dim: 4 (28x28 -> 7x7) or 8 (64x64 -> 8x8)
    latent_channels: int = 4
    channels: int = 32  # width at full resolution (then x2, x2, x4 per level)
    image_size: int | None = None
    batch_size: int = 64
    lr: float = 5e-4  # AdamW; a small conv autoencoder tolerates more than LDM's 4.5e-6 x batch
    warmup_steps: int = 50
    lr_decay: float = 0.0  # fraction of the budget, at its end, over which the LR falls linearly to 0
    loss: str = "l1"  # l1 | l2: L1 keeps edges sharper (LDM's choice)
    kl_weight: float = 1e-6  # LDM's: the KL only keeps the latent's scale from drifting
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 500
    keep_last: int = 3
    precision: str = "auto"
    device: str = "auto"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; allowed: {', '.join(LOSSES)}")
        if self.factor not in (2, 4, 8, 16):
            raise ValueError(f"factor must be 2, 4, 8 or 16, got {self.factor}")
        for k in ("latent_channels", "channels", "batch_size", "log_every", "checkpoint_every", "keep_last"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be an integer >= 1, got {v!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes!r}")
        if self.lr <= 0 or self.kl_weight < 0 or not 0 <= self.ema_decay < 1 or not 0 <= self.lr_decay <= 1:
            raise ValueError("lr must be > 0, kl_weight >= 0, ema_decay in [0, 1) and lr_decay in [0, 1]")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AutoencoderTrainConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown autoencoder training settings {sorted(unknown)}")
        return cls(**d)


@dataclass
class _Run:
    """What the loop works with: the data, the network and its EMA, the optimizer, the generators, the counters."""

    config: AutoencoderTrainConfig
    out: Path
    x: torch.Tensor
    ae: Autoencoder
    ema: EMA
    opt: torch.optim.Optimizer
    amp: object
    batches: BatchStream
    noise: torch.Generator
    step: int = 0
    elapsed: float = 0.0

    def done(self) -> bool:
        if self.config.steps is not None:
            return self.step >= self.config.steps
        return self.elapsed >= self.config.minutes * 60


def train_autoencoder(config: AutoencoderTrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train an autoencoder as `config` says; returns the run directory. See `diffusekit train-autoencoder --help`."""
    with hold(Path(config.out), Dist()):  # one process per run directory, as for diffusion runs
        return _train(config, resume, progress)


def _train(config: AutoencoderTrainConfig, resume: bool, progress: bool) -> Path:
    if config.steps is None and config.minutes is None:
        raise ValueError("give a budget: steps or minutes")
    run = _set_up(config, resume)
    bar = progress_bar(config, run.step, run.elapsed, progress, desc="autoencoder")
    with open(run.out / "metrics.jsonl", "a") as log:
        try:
            while not run.done():
                loss, rec, kl = _step(run)
                if run.step % config.log_every == 0 or run.done():
                    row = {"step": run.step, "loss": loss, "rec": rec, "kl": kl, "elapsed_s": run.elapsed}
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    if bar:
                        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if bar:
                    bar.update(1 if config.steps is not None else min(round(run.elapsed), bar.total) - bar.n)
                if run.step % config.checkpoint_every == 0 and not run.done():
                    _checkpoint(run)
            final = _checkpoint(run)
        finally:
            if bar:
                bar.close()
    grid = _write_reconstructions(run)
    print(f"diffusekit: autoencoder {run.step} steps, {run.elapsed / 60:.1f} min; checkpoint {final}; "
          f"reconstructions {grid}", file=sys.stderr)
    return run.out


def _set_up(config: AutoencoderTrainConfig, resume: bool) -> _Run:
    out = Path(config.out)
    saved = json.loads((out / RUN_FILE).read_text()) if resume and (out / RUN_FILE).exists() else None
    if resume and saved is not None:
        if "autoencoder" not in saved:
            raise ValueError(f"--resume: {out} holds a diffusion run, not an autoencoder run")
        config = AutoencoderTrainConfig.from_dict({**saved["train"], "steps": config.steps,
                                                   "minutes": config.minutes, "out": config.out})
    prepare_out(config, resume, Dist())
    device = fast.pick_device(config.device)
    ds = load_data(config.data, image_size=config.image_size)
    spatial = tuple(ds.x.shape[2:])
    acfg = (AutoencoderConfig.from_dict(saved["autoencoder"]) if saved else
            autoencoder_config(config.factor, ds.x.shape[1], spatial, config.latent_channels, channels=config.channels))
    torch.manual_seed(config.seed)
    ae = fast.prepare_model(Autoencoder(acfg), device, len(spatial))
    amp, ae = autocast_for(config, ae, device, len(spatial))  # the diffusion runs' precision rules
    ema = EMA(ae, config.ema_decay)
    opt = fast.adamw(ae.parameters(), lr=config.lr)
    run = _Run(config, out, ds.x.to(device), ae, ema, opt, amp, BatchStream(len(ds), config.batch_size, config.seed),
               torch.Generator().manual_seed(config.seed + 1))
    resume_from = latest_checkpoint(out / "checkpoints") if resume else None
    if resume_from is not None:
        state, rng = load_checkpoint(resume_from, ae, ema.shadow, opt)
        run.step, run.elapsed, ema.num_updates = state["step"], state["elapsed_s"], state["ema_updates"]
        run.batches = BatchStream(len(ds), config.batch_size, config.seed, state["epoch"], state["pos"])
        run.noise.set_state(rng["noise"])
        torch.set_rng_state(rng["torch"])
    elif saved is None:
        write_json_atomic(out / RUN_FILE, {"train": config.to_dict(), "autoencoder": acfg.to_dict(),
                                           "data": describe_data(ds), "params": param_count(ae)})
    print(f"diffusekit: training a f={acfg.factor} autoencoder ({param_count(ae) / 1e6:.2f}M params, latent "
          f"{(acfg.latent_channels, *acfg.latent_spatial)}) on {ds.name} ({len(ds)} x {tuple(ds.x.shape[1:])}) "
          f"-> {out}; device {device}", file=sys.stderr)
    return run


def _step(run: _Run) -> tuple[float, float, float]:
    """One optimizer step; returns (loss, reconstruction term, KL term) per pixel, as floats."""
    c = run.config
    t0 = time.perf_counter()
    for group in run.opt.param_groups:
        group["lr"] = lr_at(c, run.step, run.elapsed)
    x = run.x[run.batches.next().to(run.x.device)]
    pixels = x[0].numel()
    with run.amp:
        x_hat, mean, logvar = run.ae(x, run.noise)
    err = (x_hat.float() - x).abs() if c.loss == "l1" else (x_hat.float() - x).pow(2)
    rec = err.flatten(1).sum(1).mean() / pixels
    kl = kl_divergence(mean.float(), logvar.float()).mean() / pixels
    loss = rec + c.kl_weight * kl
    if not torch.isfinite(loss):
        diverged(run, f"the loss became {loss.item()} at step {run.step + 1}")  # names the checkpoint to resume
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.ae.parameters(), c.grad_clip or math.inf)
    run.opt.step()
    run.ema.update(run.ae)
    run.step += 1
    run.elapsed += time.perf_counter() - t0
    return loss.item(), rec.item(), kl.item()


def _checkpoint(run: _Run) -> Path:
    """Save the step's checkpoint, with the latent scale of its EMA weights measured on the data."""
    state = {"elapsed_s": run.elapsed, "images_seen": run.step * run.config.batch_size,
             "ema_updates": run.ema.num_updates, "epoch": run.batches.epoch, "pos": run.batches.pos,
             "latent_scale": latent_scale(run.ema.shadow, run.x)}
    rng = {"noise": run.noise.get_state(), "torch": torch.get_rng_state()}
    return save_checkpoint(run.out / "checkpoints", run.step, run.ae, run.ema.shadow, run.opt, rng, state,
                           run.config.keep_last)


@torch.no_grad()
def _write_reconstructions(run: _Run, n: int = 16) -> Path:
    """samples/reconstructions.png: n data images spread over the set (data sets often come sorted by class), in
    the top rows, above their EMA reconstructions."""
    x = run.x[torch.linspace(0, len(run.x) - 1, n).long()]
    mean, _ = run.ema.shadow.posterior(x)
    x_hat = run.ema.shadow.decode(mean).float().clamp(-1, 1)
    if x.dim() != 4:  # signals and video: no picture grid
        return run.out / "checkpoints"
    return save_grid(torch.cat([x, x_hat]).cpu(), run.out / "samples" / "reconstructions.png", nrow=8)


__all__ = ["AutoencoderTrainConfig", "train_autoencoder", "LOSSES"]
