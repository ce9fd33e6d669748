"""Accepting samples in the two forms users have: model output and image files' pixels.

    float (N, C, H, W) in [-1, 1]    what samplers return (torch or numpy); clamped to [-1, 1] as saving would
    uint8 (N, H, W, C) or (N, H, W)  pixels as read from image files; mapped by x = v / 127.5 - 1
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

OUT_OF_RANGE_TOL = 0.5  # samplers overshoot [-1, 1] a little; beyond this the scale is probably wrong


def as_float_images(x) -> torch.Tensor:
    """float32 (N, C, H, W) in [-1, 1] from either accepted form; clear errors for anything else."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"samples must be a torch.Tensor or np.ndarray; got {type(x).__name__}")
    x = x.detach().cpu()
    if x.dtype == torch.uint8:
        if x.ndim == 3:
            x = x[..., None]  # (N, H, W) grayscale
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"uint8 samples must be (N, H, W, C) with C in (1, 3) or (N, H, W); got {tuple(x.shape)}")
        return (x.permute(0, 3, 1, 2).float() / 127.5 - 1).contiguous()
    if not x.is_floating_point():
        raise TypeError(f"samples must be floating point in [-1, 1] or uint8 pixels; got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"float samples must be (N, C, H, W) in [-1, 1]; got shape {tuple(x.shape)}")
    x = x.float()
    if not torch.isfinite(x).all():
        raise ValueError(f"samples contain {int((~torch.isfinite(x)).sum())} NaN/inf values (did sampling diverge?)")
    lo, hi = float(x.min()), float(x.max())
    if hi > 1 + OUT_OF_RANGE_TOL or lo < -1 - OUT_OF_RANGE_TOL:
        raise ValueError(
            f"float samples must be in [-1, 1]; got range [{lo:.3g}, {hi:.3g}]. Pixels 0..255 should be passed "
            "as uint8 (N, H, W, C); other scales: x / 127.5 - 1 for 0..255, x * 2 - 1 for 0..1"
        )
    if lo >= 0 and hi <= 1 and x.numel() > 1000:
        warnings.warn(
            f"float samples lie in [{lo:.3g}, {hi:.3g}], which looks like the [0, 1] convention; "
            "diffusekit uses [-1, 1] (x * 2 - 1)",
            stacklevel=3,
        )
    return x.clamp(-1, 1)


def read_samples(path, clouds_ok: bool = False):
    """The `images` array of a samples .npz written by `diffusekit sample` (uint8 (N, H, W, C)), read without
    unpickling; an unreadable file or one without `images` is a ValueError naming the file. With clouds_ok, returns
    (array, is_clouds): a point-cloud file's `points` (N, P, 3) come back as float32 (N, 3, P)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if clouds_ok and "points" in f:
                return np.ascontiguousarray(f["points"].transpose(0, 2, 1), dtype=np.float32), True
            return (f["images"], False) if clouds_ok else f["images"]
    except (OSError, KeyError, ValueError) as e:
        want = "`images` or `points`" if clouds_ok else "`images`"
        raise ValueError(f"cannot read samples from {path}: {e} (expected a .npz with {want})") from e
