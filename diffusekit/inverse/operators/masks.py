"""Inpainting: `Mask` (y = m * x) and the masks it takes. Masks are generated from a seed (numpy's PCG64), so the
same seed gives the same mask on every machine."""

from __future__ import annotations

import math

import numpy as np
import torch

from ...samplers.base import randn_like
from .base import Operator, shape_of, spatial_shape


class Mask(Operator):
    """Inpainting: y = m * x (m is 0/1), stored at x's size with zeros where nothing was measured.

    A is a diagonal 0/1 matrix, so A^T = A^+ = A and its singular values are all 1. `mask` is a bool/0-1 tensor of
    shape (*spatial) (the same for every image and channel), (C, *spatial) or (B, C, *spatial); `missing_fraction`
    is the share of x's entries not measured."""

    name = "mask"

    def __init__(self, mask: torch.Tensor, sigma_y: float = 0.0):
        super().__init__(sigma_y)
        mask = torch.as_tensor(mask)
        if mask.ndim < 1 or not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"mask must be a tensor of 0/1 (or bool) values, got shape {shape_of(mask)}")
        self.mask = mask.to(torch.bool)

    def _m(self, x):
        if not _broadcasts(self.mask, x.shape):
            raise ValueError(f"{self.name}: a mask of shape {tuple(self.mask.shape)} does not fit a tensor of shape "
                             f"{tuple(x.shape)}")
        return self.mask.to(device=x.device, dtype=x.dtype)

    def forward(self, x):
        return x * self._m(x)

    adjoint = forward
    pinv = forward

    def noise(self, x, generator=None):
        return self.forward(randn_like(x, generator))

    def pinv_noise_std(self, x_shape):
        return self.sigma_y

    def input_shape(self, y_shape):
        if not _broadcasts(self.mask, y_shape):
            raise ValueError(
                f"{self.name}: y of shape {tuple(y_shape)} does not match the mask's shape {tuple(self.mask.shape)} "
                f"(y is stored at the image's size, (B, C, *spatial))"
            )
        return tuple(y_shape)

    @property
    def missing_fraction(self) -> float:
        return 1.0 - float(self.mask.float().mean())

    def describe(self):
        return f"mask {tuple(self.mask.shape)}, {100 * self.missing_fraction:.0f}% missing, sigma_y={self.sigma_y:g}"


def _broadcasts(m: torch.Tensor, shape) -> bool:
    """True when m broadcasts to `shape` without changing that shape."""
    shape = tuple(shape)
    if m.ndim > len(shape):
        return False
    return all(a == b or a == 1 for a, b in zip(m.shape[::-1], shape[::-1]))



def box_mask(size, box: tuple[int, ...] | None = None) -> torch.Tensor:
    """A 2-D mask (True = measured) with one box missing. box = (top, left, height, width); default: the central
    box of half the height and width (a quarter of the image), the usual 'box inpainting' task."""
    h, w = spatial_shape(size)
    if box is None:
        box = (h // 4, w // 4, h // 2, w // 2)
    top, left, bh, bw = box
    if not (0 <= top and 0 <= left and bh >= 1 and bw >= 1 and top + bh <= h and left + bw <= w):
        raise ValueError(f"box {box} (top, left, height, width) does not fit an image of {h}x{w}")
    m = torch.ones(h, w, dtype=torch.bool)
    m[top : top + bh, left : left + bw] = False
    return m


def random_pixel_mask(size, missing: float = 0.8, seed: int = 0) -> torch.Tensor:
    """A mask of any spatial shape with round(missing * N) pixels missing, chosen uniformly from a seed."""
    shape = spatial_shape(size)
    if not 0 <= missing < 1:
        raise ValueError(f"missing must be in [0, 1), got {missing}")
    n = math.prod(shape)
    drop = np.random.default_rng(seed).permutation(n)[: round(missing * n)]
    m = torch.ones(n, dtype=torch.bool)
    m[torch.from_numpy(drop)] = False
    return m.reshape(shape)


HALVES = ("right", "left", "top", "bottom")


def half_mask(size, missing: str = "right") -> torch.Tensor:
    """A 2-D mask with one half of the image missing (`missing`: right, left, top or bottom)."""
    h, w = spatial_shape(size)
    if missing not in HALVES:
        raise ValueError(f"unknown half {missing!r}; allowed: {', '.join(HALVES)}")
    m = torch.ones(h, w, dtype=torch.bool)
    if missing == "right":
        m[:, w // 2 :] = False
    elif missing == "left":
        m[:, : w - w // 2] = False
    elif missing == "bottom":
        m[h // 2 :, :] = False
    else:
        m[: h - h // 2, :] = False
    return m
