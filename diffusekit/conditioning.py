"""Conditioning a network on class labels or on text, and classifier-free guidance (Ho & Salimans 2022).

Labels: the label embedding enters through the UNet's conditioning hook (its `cond` vector, added to the noise-level
embedding). One extra embedding row is the "no label" token: training replaces labels by it with probability
`p_uncond` (label dropout), so the same network also learns the unconditional model that guidance needs.

Text (as Stable Diffusion): a frozen text encoder turns each prompt into per-token states (B, L, C) with a padding
mask (B, L); the UNet cross-attends to them (`context`, `context_mask`). The "no prompt" condition is the encoding
of the empty prompt "" (SD's choice, not a learned token): training replaces a caption by it with probability
`p_uncond`, and sampling uses it for guidance's unconditional pass, or a negative prompt in its place. The wrapper
sees only tensors: which encoder made them is the caller's business (`diffusekit.model.TrainedModel`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
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


class TextCond(NamedTuple):
    """Encoded prompts as one condition: tokens (B, L, C) float, zero on padding, and mask (B, L) bool, True on real
    tokens. A tuple, so samplers and DDP pass it through untouched; prompts of different lengths share a batch by
    padding (masked out by cross-attention, so padding never changes the result)."""

    tokens: torch.Tensor  # (B, L, C)
    mask: torch.Tensor  # (B, L) bool

    @property
    def batch(self) -> int:
        return self.tokens.shape[0]

    def to(self, device) -> "TextCond":
        return TextCond(self.tokens.to(device), self.mask.to(device))

    def select(self, idx) -> "TextCond":
        """Rows `idx` (int tensor, list or slice), padding trimmed to the longest selected prompt."""
        return TextCond(self.tokens[idx], self.mask[idx]).trim()

    def trim(self) -> "TextCond":
        """Drop the padding columns no row uses: cross-attention costs O(L), and padding changes nothing."""
        used = self.mask.any(0).nonzero()
        L = int(used.max()) + 1 if len(used) else 1
        return TextCond(self.tokens[:, :L], self.mask[:, :L])

    def pad_to(self, length: int) -> "TextCond":
        extra = length - self.tokens.shape[1]
        if extra < 0:
            raise ValueError(f"cannot pad {self.tokens.shape[1]} tokens to {length}")
        return TextCond(F.pad(self.tokens, (0, 0, 0, extra)), F.pad(self.mask, (0, extra)))

    def expand(self, batch: int) -> "TextCond":
        """One prompt (1, L, C) repeated for a batch."""
        if self.batch != 1:
            raise ValueError(f"expand needs one prompt, got {self.batch}")
        return TextCond(self.tokens.expand(batch, -1, -1), self.mask.expand(batch, -1))

    @staticmethod
    def cat(conds) -> "TextCond":
        """Concatenate along the batch, padding to the longest."""
        L = max(c.tokens.shape[1] for c in conds)
        padded = [c.pad_to(L) for c in conds]
        return TextCond(torch.cat([c.tokens for c in padded]), torch.cat([c.mask for c in padded]))


class TextConditioned(nn.Module):
    """net(x, c_noise, cond=TextCond) -> net(x, c_noise, context=tokens, context_mask=mask); cond=None is the
    unconditional model, i.e. the empty prompt.

    `null` is the encoder's output for the empty prompt "" (1, L0, C): what a dropped caption becomes in training and
    what guidance's unconditional pass gets. It is not a parameter and not in the state_dict (it belongs to the
    frozen encoder and is recomputed, or read from the caption cache, when a run is loaded); not a buffer either,
    because DDP would broadcast it every step for nothing."""

    def __init__(self, net: nn.Module, null: TextCond, p_uncond: float = 0.1):
        super().__init__()
        if null.tokens.ndim != 3 or null.batch != 1 or null.mask.shape != null.tokens.shape[:2]:
            raise ValueError(f"null must be one encoded prompt: tokens (1, L, C) and mask (1, L); got "
                             f"{tuple(null.tokens.shape)} and {tuple(null.mask.shape)}")
        if not 0 <= p_uncond <= 1:
            raise ValueError(f"p_uncond is a probability, got {p_uncond}")
        self.net = net
        self.p_uncond = p_uncond
        self._null = TextCond(null.tokens.detach().float().cpu(), null.mask.cpu())

    def null(self, batch: int = 1, device=None) -> TextCond:
        """The empty prompt's encoding for `batch` samples (B, L0, C)."""
        return self._null.expand(batch).to(device or "cpu")

    def drop_prompts(self, cond: TextCond, generator: torch.Generator | None = None) -> TextCond:
        """Empty-prompt dropout for training: each caption becomes the empty prompt with probability p_uncond.
        One uniform draw per caption, from `generator` (the trainer's noise generator: resumes exactly)."""
        drop = torch.rand((cond.batch,), generator=generator) < self.p_uncond  # (B,)
        null = self._null.to(cond.tokens.device)
        L = max(cond.tokens.shape[1], null.tokens.shape[1])
        c, n = cond.pad_to(L), null.pad_to(L)
        drop = drop.to(cond.tokens.device)
        tokens = torch.where(drop[:, None, None], n.tokens.to(c.tokens.dtype), c.tokens)  # (B, L, C)
        mask = torch.where(drop[:, None], n.mask, c.mask)  # (B, L)
        return TextCond(tokens, mask).trim()

    def forward(self, x, c_noise, cond=None):
        if cond is None:
            cond = self.null(x.shape[0], x.device)
        if not isinstance(cond, tuple) or len(cond) != 2 or not all(isinstance(t, torch.Tensor) for t in cond):
            raise ValueError("a text-conditioned network takes cond=TextCond(tokens (B, L, C), mask (B, L)) from the "
                             "text encoder (TrainedModel.sample(prompts=...) does this), not "
                             f"{type(cond).__name__}")
        tokens, mask = cond
        if tokens.shape[0] != x.shape[0] or mask.shape != tokens.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(f"text condition for a batch of {x.shape[0]}: need tokens ({x.shape[0]}, L, C) and a bool "
                             f"mask ({x.shape[0]}, L); got {tuple(tokens.shape)} and {mask.dtype} {tuple(mask.shape)}")
        return self.net(x, c_noise, context=tokens, context_mask=mask)


def cat_conds(conds):
    """Concatenate conditions along the batch: label tensors, or TextCond (padded to a common length)."""
    if isinstance(conds[0], TextCond):
        return TextCond.cat(conds)
    return torch.cat(conds)


class Guided:
    """A denoiser with classifier-free guidance: D_w = D(x | none) + w (D(x | cond) - D(x | none)).

    Both passes go through the network as one batch of 2B. w = 1 is the conditional model itself (and costs one
    pass); w = 0 the unconditional one. `null_cond(cond)` gives the unconditional condition for the batch: the null
    label, the empty prompt, or a negative prompt (then D(x | none) is D(x | negative), as in Stable Diffusion).
    Conditions are label tensors or TextCond."""

    def __init__(self, denoiser, scale: float, null_cond):
        self.denoiser, self.scale, self.null_cond = denoiser, scale, null_cond

    def __getattr__(self, name):  # schedule, prior_std, ...: the wrapped denoiser's
        return getattr(self.denoiser, name)

    def __call__(self, x, sigma, cond=None):
        if cond is None or self.scale == 1:
            return self.denoiser(x, sigma, cond)
        null = self.null_cond(cond)
        both = self.denoiser(torch.cat([x, x]), sigma, cat_conds([cond, null]))
        c, u = both.chunk(2)
        return u + self.scale * (c - u)
