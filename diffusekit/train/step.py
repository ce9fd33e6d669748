"""One optimizer step: the learning rate for this step, a global batch with its sigmas, noise and (dropped)
conditions, this process's part of it through the denoiser loss, backward, gradient clipping, AdamW, EMA.

Exactness: every random draw comes from the data order (`BatchStream`) and the noise generator, in a fixed order
(data indices, sigmas, noise, label/prompt dropout), and every process draws the whole global batch before taking
its slice. So N steps straight equal N/2 + resume + N/2, and 2 processes under torchrun equal 1 (both tested).
"""

from __future__ import annotations

import copy
import math
import time

import torch

from ..conditioning import TextCond
from ..process import sample_training_sigmas
from ..rundir import latest_checkpoint
from .config import TrainConfig
from .faults import TrainingStopped, check_batch
from .setup import Setup, TrainState


class TrainingDiverged(TrainingStopped):
    """The loss became NaN or inf; the run stopped and its last good checkpoint is kept."""


def diverged(s: Setup, what: str):
    """Stop the run without saving (the weights are no longer worth keeping), naming the checkpoint to resume."""
    last = latest_checkpoint(s.out / "checkpoints")
    raise TrainingDiverged(
        f"{what}; stopped without saving. The last good checkpoint is {last or '(none yet)'}. Try a lower "
        f"--lr (now {s.config.lr}) or --precision fp32, then --resume.")


def lr_at(config: TrainConfig, step: int, elapsed: float = 0.0) -> float:
    """Linear warm-up to config.lr, constant, then (with lr_decay > 0) a linear fall to 0 over the last lr_decay
    of the budget: of the steps, or of the minutes for a time budget (`elapsed` is the training seconds so far)."""
    lr = config.lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
    if config.lr_decay:
        done = step / config.steps if config.steps is not None else elapsed / (config.minutes * 60)
        lr *= min(1.0, max(0.0, (1.0 - done) / config.lr_decay))
    return lr


def draw_batch(s: Setup, st: TrainState):
    """(x0, sigma, eps, cond) of this process: the global batch is drawn whole, in the fixed order, then sliced."""
    config, device, rows = s.config, s.dist.device, s.rows
    idx = st.batches.next()
    sigma, _ = sample_training_sigmas(s.den.schedule, config.batch_size, config.noise_sampler, st.noise_gen)
    eps = torch.randn((config.batch_size, *s.x_all.shape[1:]), generator=st.noise_gen)
    cond = None
    if s.labels_all is not None:
        cond = s.net.drop_labels(s.labels_all[idx.to(device)].cpu(), st.noise_gen)[rows].to(device)
    elif s.captions is not None:  # (B, L, C) and (B, L) for the global batch, L its longest caption
        c = s.net.drop_prompts(TextCond(*s.captions.lookup(idx)).trim(), st.noise_gen)
        cond = TextCond(c.tokens[rows], c.mask[rows]).to(device)
    elif s.graphs is not None:  # molecules: each row's graph (atoms (b, A), bonds (b, A, A)); draws nothing
        atoms, bonds, mol_index = s.graphs
        m = mol_index[idx[rows].to(device)]
        cond = (atoms[m], bonds[m])
    x0, eps = s.x_all[idx[rows].to(device)], eps[rows].to(device)
    if config.points_per_step:  # point clouds: a fresh random subset of each cloud's points (drawn last, so
        # runs without it keep their draws); eps is the same subset of iid normals, so still iid normal
        keep = torch.rand(config.batch_size, s.x_all.shape[-1], generator=st.noise_gen).argsort(1)
        keep = keep[rows, None, :config.points_per_step].expand(-1, x0.shape[1], -1).to(device)  # (b, 3, k)
        x0, eps = x0.gather(2, keep), eps.gather(2, keep)
    project = getattr(s.net, "project_noise", None)  # a network whose data lives in a subspace (EGNN: centred
    if project is not None:  # coordinates, 0 at padding) takes the noise there too: it cannot predict the rest
        eps = project(eps, cond)
    return x0, sigma[rows].to(device), eps, cond


def train_step(s: Setup, st: TrainState) -> tuple[torch.Tensor, torch.Tensor]:
    """One step; advances `st` (step, images seen, training time). Returns (this process's loss, grad norm)."""
    t0 = time.perf_counter()
    config = s.config
    for group in s.opt.param_groups:
        group["lr"] = lr_at(config, st.step, st.elapsed)
    before = copy.copy(st.batches)  # the data order before this batch: names its items if they are bad
    x0, sigma, eps, cond = draw_batch(s, st)
    with s.amp:
        losses = s.den.loss(x0, sigma, eps, cond=cond, weighting=config.loss_weighting, gamma=config.min_snr_gamma)
    loss = losses.mean()
    # one sync checks both: NaN or inf anywhere in the batch makes its sum so (a sum is ~50x cheaper than isfinite
    # of every element: RELIABILITY.md); a sum that merely overflows is told apart in check_batch
    if not torch.isfinite(loss.detach() + x0.sum()):
        check_batch(s, st, before, x0)  # bad data: stops naming the step and items
        if not torch.isfinite(loss):
            diverged(s, f"the loss became {loss.item()} at step {st.step + 1}")
    s.opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(s.net.parameters(), config.grad_clip or math.inf)
    s.opt.step()
    s.ema.update(s.net)
    st.step += 1
    st.images_seen += config.batch_size
    st.elapsed += s.dist.longest(time.perf_counter() - t0)  # one clock: every process stops at the same step
    return loss, grad_norm
