"""What the loop does around the steps: the metrics.jsonl lines and the progress bar, checkpoints, sample grids
and quality checks, each on its own schedule, and the end of the run (last checkpoint, check and grid, summary).

Only rank 0 writes files; but every process joins the collective parts (the logged loss's mean, the replica check
before each checkpoint), so the hooks run on all processes. Time spent in grids and quality checks is not training
time: the budget clock (`TrainState.elapsed`) runs inside the step only.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..model import TrainedModel
from ..sample_files import save_prompts
from ..viz.signals import save_samples
from .checkpoint import save_checkpoint
from .config import TrainConfig
from .setup import Setup, TrainState
from .step import diverged


class Hooks:
    """Per-step and end-of-run side effects of one process; `close()` releases the log file and the bar."""

    def __init__(self, s: Setup, st: TrainState, progress: bool):
        self.s, self.st = s, st
        main = s.dist.is_main
        self.log = open(s.out / "metrics.jsonl", "a") if main else None
        self.bar = progress_bar(s.config, st.step, st.elapsed, enabled=progress and main)
        self.window_t, self.window_imgs, self.last_loss = time.perf_counter(), 0, float("nan")
        self.next_eval_s, self.evaluated_at = s.config.eval_minutes * 60, -1
        self.next_checkpoint_s = next_time(s.config.checkpoint_minutes, st.elapsed)
        if main:
            arch = s.info.get("arch", "unet")
            net = {"points": "point transformer", "molecules": "EGNN"}.get(arch, "UNet")
            print(f"diffusekit: training {s.config.model} {net} ({s.info['params'] / 1e6:.2f}M params, "
                  f"{ {'points': 'sets', 'molecules': 'graphs'}.get(arch, f'{s.ds.x.ndim - 2}-D')}) on {s.ds.name} ({len(s.ds)} x {tuple(s.ds.x.shape[1:])}) -> {s.out}; "
                  f"device {s.dist.device}, {'bf16 autocast' if isinstance(s.amp, torch.autocast) else 'fp32'}, "
                  f"{s.dist.world_size} process(es)", file=sys.stderr)

    def after_step(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """Log, move the bar, and checkpoint / draw a grid / check quality when each is due (none at the last
        step: `finish` does those)."""
        s, st, config = self.s, self.st, self.s.config
        self.window_imgs += config.batch_size
        if st.step % config.log_every == 0 or st.done(config):
            self.log_line(loss, grad_norm)
        if self.bar:  # tqdm redraws at most every `mininterval` seconds
            self.bar.update(1 if config.steps is not None else min(round(st.elapsed), self.bar.total) - self.bar.n)
        if self.checkpoint_due() and not st.done(config):
            self.checkpoint()
        if config.sample_every and st.step % config.sample_every == 0 and not st.done(config) and s.dist.is_main:
            write_grid(s.out, st.step, s.info, s.ema.shadow, config, s.dist.device)
        if s.dist.is_main and self.quality_due():
            self.quality_check()
            self.window_t = time.perf_counter()  # the check's time is neither training time nor throughput

    def log_line(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """A metrics.jsonl line and the bar's postfix: the loss averaged over processes, and throughput since the
        last line."""
        s, st = self.s, self.st
        self.last_loss = s.dist.mean(loss.detach()).item()
        now = time.perf_counter()
        ips = self.window_imgs / max(now - self.window_t, 1e-9)
        self.window_t, self.window_imgs = now, 0
        if self.log:
            self.log.write(json.dumps({"step": st.step, "loss": self.last_loss, "lr": s.opt.param_groups[0]["lr"],
                                       "grad_norm": float(grad_norm), "images_per_s": ips,
                                       "elapsed_s": st.elapsed, "epoch": st.batches.epoch}) + "\n")
            self.log.flush()
        if self.bar:
            self.bar.set_postfix(loss=f"{self.last_loss:.4f}", img_s=f"{ips:.0f}", step=st.step, refresh=False)

    def checkpoint(self) -> Path | None:
        """Save a checkpoint (rank 0; returns its path there), after checking the weights are finite and the same
        on every process."""
        s, st = self.s, self.st
        if not all(torch.isfinite(p).all() for p in s.net.parameters()):
            diverged(s, f"the weights became NaN or inf at step {st.step}")
        check_replicas(s.net, s.dist)
        if s.dist.is_main:
            rng = {"noise": st.noise_gen.get_state(), "torch": torch.get_rng_state()}
            state = {"elapsed_s": st.elapsed, "images_seen": st.images_seen, "ema_updates": s.ema.num_updates,
                     "epoch": st.batches.epoch, "pos": st.batches.pos}
            return save_checkpoint(s.out / "checkpoints", st.step, s.net, s.ema.shadow, s.opt, rng, state,
                                   s.config.keep_last)
        return None

    def checkpoint_due(self) -> bool:
        """Every `checkpoint_every` steps, and every `checkpoint_minutes` of training time (the clock is the same
        on every process, so all of them agree)."""
        config, st = self.s.config, self.st
        if not (config.checkpoint_minutes and st.elapsed >= self.next_checkpoint_s):
            return st.step % config.checkpoint_every == 0
        self.next_checkpoint_s = next_time(config.checkpoint_minutes, st.elapsed)
        return True

    def quality_due(self) -> bool:
        config = self.s.config
        if config.eval_every and self.st.step % config.eval_every == 0:
            return True
        return bool(config.eval_minutes) and self.st.elapsed >= self.next_eval_s

    def quality_check(self) -> None:
        """A Frechet-distance check of the EMA weights, logged to metrics.jsonl and the bar (rank 0 only)."""
        s, st, config = self.s, self.st, self.s.config
        result = quality(s.info, s.ema.shadow, config, s.dist.device, st.step)
        self.log.write(json.dumps({"step": st.step, "elapsed_s": st.elapsed, "eval": result}) + "\n")
        self.log.flush()
        if self.bar:
            self.bar.write(f"step {st.step}: FD {result['fd']:.3f} (real-vs-real floor {result['fd_floor']:.3f}, "
                           f"n={result['n']})")
        while config.eval_minutes and self.next_eval_s <= st.elapsed:
            self.next_eval_s += config.eval_minutes * 60
        self.evaluated_at = st.step

    def finish(self) -> None:
        """The end of the budget: the last checkpoint, a last quality check (unless this step had one) and grid,
        and a one-line summary."""
        s, st, config = self.s, self.st, self.s.config
        final = self.checkpoint()
        if s.dist.is_main and (config.eval_every or config.eval_minutes) and self.evaluated_at != st.step:
            self.quality_check()
        if s.dist.is_main:
            grid = write_grid(s.out, st.step, s.info, s.ema.shadow, config, s.dist.device)
            print(f"diffusekit: {st.step} steps, {st.images_seen} images, {st.elapsed / 60:.1f} min, last loss "
                  f"{self.last_loss:.4f}; checkpoint {final}; samples {grid}", file=sys.stderr)

    def close(self) -> None:
        if self.bar:
            self.bar.close()
        if self.log:
            self.log.close()


def check_replicas(net, dist) -> None:
    """Under DDP every process must hold the same weights; compare fingerprints before each checkpoint."""
    if not dist.enabled:
        return
    with torch.no_grad():
        flat = torch.cat([p.detach().double().flatten() for p in net.parameters()]).cpu()
        mine = torch.stack([flat.sum(), (flat * torch.arange(len(flat), dtype=torch.float64).sin()).sum()])
    everyone = [torch.zeros_like(mine) for _ in range(dist.world_size)]
    torch.distributed.all_gather(everyone, mine)
    if any(not torch.equal(e, everyone[0]) for e in everyone):
        raise RuntimeError(f"DDP replicas differ: weight fingerprints {[e.tolist() for e in everyone]}")


def next_time(minutes: float, elapsed: float) -> float:
    """The first multiple of `minutes` (in seconds) after `elapsed`; infinity when `minutes` is 0."""
    if not minutes:
        return float("inf")
    return (int(elapsed // (minutes * 60)) + 1) * minutes * 60


def progress_bar(config: TrainConfig, step: int, elapsed: float, enabled: bool, desc: str = "train"):
    """A bar over steps, or over training seconds for a time budget; None where disabled (and off rank 0).
    `config` is any training config with `steps` and `minutes` (the autoencoder's too)."""
    if not enabled:
        return None
    if config.steps is not None:
        return tqdm(total=config.steps, initial=step, unit="step", desc=desc, dynamic_ncols=True,
                    mininterval=0.5 if sys.stderr.isatty() else 10)
    return tqdm(total=round(config.minutes * 60), initial=round(elapsed), unit="s", desc=f"{desc} (time budget)",
                dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 10,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}s [ETA {remaining}{postfix}]")


def quality(info: dict, ema_net, config: TrainConfig, device, step: int) -> dict:
    """Frechet distance of `eval_samples` EMA samples in the data's classifier features, with its real-vs-real floor
    at the same n. Time spent here is not training time (the budget clock does not run)."""
    from ..eval import evaluate

    model = TrainedModel(info, ema_net, step, device)  # the EMA copy is never trained: eval mode is its mode
    images = model.sample(config.eval_samples, sampler=config.sample_sampler, steps=config.sample_steps, seed=1)
    res = evaluate(images, config.data, metrics=("fd",), n=config.eval_samples, progress=False)
    return {"fd": res["fd"]["value"], "fd_floor": res["fd"]["floor"], "n": res["fd"]["n"],
            "sampler": config.sample_sampler, "steps": config.sample_steps}


def write_grid(out: Path, step: int, info: dict, ema_net, config: TrainConfig, device) -> Path:
    """samples/step-N.png and latest.png; for text runs also step-N.txt and latest.txt: the prompt of each image
    (the run's grid prompts: the first num_grid distinct captions of the data, in data order)."""
    model = TrainedModel(info, ema_net, step, device)
    images = model.sample(config.num_grid, sampler=config.sample_sampler, steps=config.sample_steps, seed=0)
    path = out / "samples" / f"step-{step:07d}.png"
    save_samples(images, path, rate=info["data"].get("rate"), kind=info["data"].get("kind", "grid"),
                 graphs=model.graphs_for(config.num_grid))
    shutil.copyfile(path, out / "samples" / "latest.png")
    if model.text is not None:
        txt = save_prompts(model.prompts_for(config.num_grid), path.with_suffix(".txt"), guidance=1.0)
        shutil.copyfile(txt, out / "samples" / "latest.txt")
    return path
