"""The real images that evaluation compares against, from `diffusekit.data.load_data` (one place for data rules).

`load_real(spec)` returns `(x, labels)`: x float32 (N, C, H, W) in [-1, 1], labels int64 (N,) or None. `spec` is
anything `load_data` accepts: a built-in name (digits, mnist5k), an image folder, or a .npy/.npz file.
"""

from __future__ import annotations

import functools

import torch

from diffusekit.data import load_data


@functools.lru_cache(maxsize=2)  # evaluate() is often called repeatedly on the same data (checkpoints, seeds)
def load_real(spec: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    ds = load_data(spec)
    return ds.x, ds.labels
