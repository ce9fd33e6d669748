"""Conditioning a network on class labels, and classifier-free guidance (Ho & Salimans 2022).

The label embedding enters through the UNet's conditioning hook (its `cond` vector, added to the noise-level
embedding). One extra embedding row is the "no label" token: training replaces labels by it with probability
`p_uncond` (label dropout), so the same network also learns the unconditional model that guidance needs.
"""

from __future__ import annotations

import torch
from torch import nn


class LabelConditioned(nn.Module):
    """net(x, c_noise, cond=labels) with labels (B,) int64 in 0..num_classes-1, or `null` (= num_classes) or None
    for the unconditional model."""

    def __init__(self, net: nn.Module, num_classes: int, cond_dim: int, p_uncond: float = 0.1):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.net = net
        self.num_classes = num_classes
        self.p_uncond = p_uncond
        self.embed = nn.Embedding(num_classes + 1, cond_dim)

    @property
    def null(self) -> int:
        return self.num_classes

    def drop_labels(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Label dropout for training: each label becomes the null token with probability p_uncond."""
        drop = torch.rand(labels.shape, generator=generator) < self.p_uncond
        return torch.where(drop.to(labels.device), torch.full_like(labels, self.null), labels)

    def forward(self, x, c_noise, cond=None):
        if cond is None:
            cond = torch.full((x.shape[0],), self.null, dtype=torch.long, device=x.device)
        if cond.dtype != torch.long or cond.ndim != 1:
            raise ValueError(f"labels must be an int64 tensor of shape (B,), got {cond.dtype} {tuple(cond.shape)}")
        if ((cond < 0) | (cond > self.null)).any():
            raise ValueError(f"labels must be in 0..{self.num_classes - 1} (or {self.null} for none)")
        return self.net(x, c_noise, self.embed(cond))


class Guided:
    """A denoiser with classifier-free guidance: D_w = D(x | none) + w (D(x | cond) - D(x | none)).

    Both passes go through the network as one batch of 2B. w = 1 is the conditional model itself (and costs one
    pass); w = 0 the unconditional one."""

    def __init__(self, denoiser, scale: float, null_cond):
        self.denoiser, self.scale, self.null_cond = denoiser, scale, null_cond

    def __getattr__(self, name):  # schedule, prior_std, ...: the wrapped denoiser's
        return getattr(self.denoiser, name)

    def __call__(self, x, sigma, cond=None):
        if cond is None or self.scale == 1:
            return self.denoiser(x, sigma, cond)
        null = self.null_cond(cond)
        both = self.denoiser(torch.cat([x, x]), sigma, torch.cat([cond, null]))
        c, u = both.chunk(2)
        return u + self.scale * (c - u)
