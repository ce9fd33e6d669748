"""Exponential moving average of weights (Polyak averaging), with warm-up."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps `shadow`, an EMA copy of `model`. The decay warms up as min(decay, (1 + n) / (10 + n)) so the first
    hundreds of steps (random weights) are forgotten quickly (Tan & Le's schedule, used by many DDPM codebases)."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.num_updates = 0
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ema_p = list(self.shadow.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1 - d)  # one fused pass
        for b_ema, b in zip(self.shadow.buffers(), model.buffers()):
            b_ema.copy_(b)
        self.num_updates += 1
