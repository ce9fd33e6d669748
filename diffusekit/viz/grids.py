"""Pictures of data and of the diffusion process: image grids, process strips, GIFs. Pillow only, no matplotlib.

All functions take [-1, 1] float images (B, C, H, W) with C = 1 (grayscale) or 3 (RGB), as torch tensors or
numpy arrays; anything else is a ValueError. Pixels are v = round(clamp((x + 1) * 127.5, 0, 255)) (`to_uint8`).
Small images are enlarged by an integer factor with nearest-neighbour (`upscale`), so 8x8 digits stay crisp;
`upscale=None` picks the smallest factor that makes the picture readable (grids >= 256 px wide, strip cells
>= 48 px and wide enough for their caption).

Layout (pixels, with s = upscale):
    grid   width  = ncol * (W*s + pad) + pad,  height = nrow * (H*s + pad) + pad
    strip  width  = left + steps * (W*s + pad) + pad,  height = top + B * (H*s + pad) + pad
           top = CAPTION_H when captions are given, left = the widest row label + 2*pad when row labels are
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.dataset import to_uint8
from .draw import caption_font, draw_text, fill, save_image, text_width

MIN_GRID_WIDTH = 256  # px: a grid of 8x8 digits is otherwise a smudge on screen
MIN_CELL = 48  # px: a strip cell must hold a caption like "t=1000" in the 10 px default font
CAPTION_H = 14  # px: a band above the strip for the captions (10 px font + margins)
BACKGROUND = 255  # white pads and caption bands


def image_grid(x, nrow: int | None = None, pad: int = 2, upscale: int = 1) -> Image.Image:
    """Tile (B, C, H, W) images into one picture, `nrow` images per row (default ceil(sqrt(B)))."""
    v = _as_images(x, "image_grid")  # (B, H, W, C) uint8
    ncol = nrow or math.ceil(math.sqrt(v.shape[0]))
    return _grid(v, ncol, pad, _check_upscale(upscale))


def save_grid(x, path: str | os.PathLike, nrow: int | None = None, pad: int = 2,
              upscale: int | None = None) -> Path:
    """`image_grid` saved to `path` (format from the suffix, e.g. .png); upscale=None: at least 256 px wide."""
    v = _as_images(x, "save_grid")
    ncol = nrow or math.ceil(math.sqrt(v.shape[0]))
    ncol_used = min(ncol, v.shape[0])
    s = upscale if upscale is not None else _auto_upscale(v.shape[2], ncol_used, pad)
    return save_image(_grid(v, ncol, pad, _check_upscale(s)), path)


def process_strip(rows, labels: Sequence[str] | None = None, row_labels: Sequence[str] | None = None,
                  pad: int = 2, upscale: int | None = None) -> Image.Image:
    """Images at successive steps, left to right, with a caption above each column.

    rows: a (steps, B, C, H, W) tensor, or a list of `steps` tensors (B, C, H, W) or (C, H, W): column j shows
    step j, and each of the B samples is one row. A forward-process strip is one image at several noise levels
    (B = 1); a reverse-process strip can stack [x_t, x0_hat] at each step (B = 2, row_labels=["x_t", "x0_hat"]).
    labels: one caption per step, e.g. "t=250" or "σ=1.2"; row_labels: one per row, drawn on the left.
    """
    v = _as_steps(rows)  # (steps, B, H, W, C)
    steps, b, h, w, c = v.shape
    if labels is not None and len(labels) != steps:
        raise ValueError(f"process_strip: {len(labels)} labels for {steps} steps; give one caption per step")
    if row_labels is not None and len(row_labels) != b:
        raise ValueError(f"process_strip: {len(row_labels)} row_labels for {b} rows; give one per row")
    font = caption_font()
    widest = max((text_width(font, str(t)) for t in labels or []), default=0)
    s = upscale if upscale is not None else max(1, math.ceil(max(MIN_CELL, widest + 4) / w))
    s = _check_upscale(s)
    cw, ch = w * s + pad, h * s + pad  # cell pitch
    top = CAPTION_H if labels is not None else 0
    left = max(text_width(font, str(t)) for t in row_labels) + 2 * pad if row_labels is not None else 0
    mode = "L" if c == 1 else "RGB"
    canvas = Image.new(mode, (left + steps * cw + pad, top + b * ch + pad), fill(BACKGROUND, c))
    for j in range(steps):
        for i in range(b):
            canvas.paste(_to_pil(_enlarge(v[j, i], s)), (left + pad + j * cw, top + pad + i * ch))
    draw = ImageDraw.Draw(canvas)
    for j, text in enumerate(labels or []):
        x_mid = left + pad + j * cw + w * s / 2
        draw_text(draw, (x_mid, top / 2 + 1), str(text), font, c, anchor="mm")
    for i, text in enumerate(row_labels or []):
        draw_text(draw, (pad, top + pad + i * ch + h * s / 2), str(text), font, c, anchor="lm")
    return canvas


def save_strip(rows, path: str | os.PathLike, labels: Sequence[str] | None = None,
               row_labels: Sequence[str] | None = None, pad: int = 2, upscale: int | None = None) -> Path:
    """`process_strip` saved to `path`."""
    return save_image(process_strip(rows, labels, row_labels, pad, upscale), path)


def save_gif(frames, path: str | os.PathLike, duration_ms: int = 100, loop: int = 0, hold_last_ms: int = 1500,
             nrow: int | None = None, pad: int = 2, upscale: int | None = None) -> Path:
    """An animated GIF: each frame shown `duration_ms`, the last one held `hold_last_ms`; loop=0 repeats forever.

    frames: a list of PIL images, or a (T, B, C, H, W) tensor / list of (B, C, H, W) tensors, each drawn as a
    grid (nrow, pad, upscale as in `save_grid`, one upscale for all frames). Note that GIF merges identical
    consecutive frames into one longer frame.
    """
    if isinstance(frames, (list, tuple)) and frames and all(isinstance(f, Image.Image) for f in frames):
        images = list(frames)
    else:
        v = _as_steps(frames)  # (T, B, H, W, C)
        ncol = nrow or math.ceil(math.sqrt(v.shape[1]))
        s = upscale if upscale is not None else _auto_upscale(v.shape[3], min(ncol, v.shape[1]), pad)
        images = [_grid(f, ncol, pad, _check_upscale(s)) for f in v]
    if not images:
        raise ValueError("save_gif: no frames")
    durations = [int(duration_ms)] * (len(images) - 1) + [int(max(hold_last_ms, duration_ms))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=loop)
    return path


# ---- helpers --------------------------------------------------------------------------------------------------


def _as_images(x, what: str) -> np.ndarray:
    """(B, C, H, W) or (C, H, W) floats in [-1, 1] -> uint8 (B, H, W, C), C in {1, 3}."""
    t = torch.as_tensor(x)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise ValueError(f"{what}: expected images (B, C, H, W); got shape {tuple(t.shape)}")
    if t.shape[1] not in (1, 3):
        raise ValueError(f"{what}: images must have 1 (grayscale) or 3 (RGB) channels; got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{what}: no images (shape {tuple(t.shape)})")
    return to_uint8(t)


def _as_steps(rows) -> np.ndarray:
    """(steps, B, C, H, W) tensor or a list of (B, C, H, W) / (C, H, W) -> uint8 (steps, B, H, W, C)."""
    if isinstance(rows, (list, tuple)):
        if not rows:
            raise ValueError("expected at least one step")
        parts = [torch.as_tensor(r) for r in rows]
        parts = [p.unsqueeze(0) if p.ndim == 3 else p for p in parts]
        shapes = {tuple(p.shape) for p in parts}
        if len(shapes) != 1:
            raise ValueError(f"every step must have the same shape (B, C, H, W); got {sorted(shapes)}")
        t = torch.stack(parts)
    else:
        t = torch.as_tensor(rows)
    if t.ndim != 5:
        raise ValueError(f"expected (steps, B, C, H, W) images; got shape {tuple(t.shape)}")
    return np.stack([_as_images(f, "process images") for f in t])


def _grid(v: np.ndarray, ncol: int, pad: int, s: int) -> Image.Image:
    b, h, w, c = v.shape
    ncol = max(1, min(ncol, b))
    nrow = math.ceil(b / ncol)
    hs, ws = h * s, w * s
    canvas = np.full((nrow * (hs + pad) + pad, ncol * (ws + pad) + pad, c), BACKGROUND, np.uint8)
    for k in range(b):
        r, q = divmod(k, ncol)
        y0, x0 = pad + r * (hs + pad), pad + q * (ws + pad)
        canvas[y0 : y0 + hs, x0 : x0 + ws] = _enlarge(v[k], s)
    return _to_pil(canvas)


def _enlarge(img: np.ndarray, s: int) -> np.ndarray:
    """(H, W, C) -> (H*s, W*s, C), nearest neighbour."""
    return img if s == 1 else img.repeat(s, axis=0).repeat(s, axis=1)


def _to_pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a[..., 0], "L") if a.shape[-1] == 1 else Image.fromarray(a, "RGB")


def _auto_upscale(w: int, ncol: int, pad: int) -> int:
    return max(1, math.ceil((MIN_GRID_WIDTH - pad * (ncol + 1)) / (ncol * w)))


def _check_upscale(s) -> int:
    if not isinstance(s, int) or s < 1:
        raise ValueError(f"upscale must be a positive int; got {s!r}")
    return s


__all__ = ["to_uint8", "image_grid", "save_grid", "process_strip", "save_strip", "save_gif"]
