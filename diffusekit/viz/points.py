"""Pictures of point clouds: one cloud as shaded discs, grids, rotating GIFs, process strips. numpy + Pillow only.

A batch of clouds is (N, 3, P), one cloud (3, P), as torch tensors or numpy arrays, values roughly in [-1, 1].

View (`render_cloud`):
    axes      y is up (ShapeNet's and PointFlow's convention; up="z" or "x" picks another, keeping the frame
              right-handed). At azim=0, elev=0 the camera looks along -z: x to the right, y up, +z towards you.
    azim      degrees the cloud turns about the up axis; positive brings its +x side towards the camera.
    elev      degrees the camera rises above the horizon (looking down: the top of the cloud shows).
    scale     orthographic and fixed: `extent` data units from the centre to the edge of the cell (less MARGIN px).
              The default sqrt(3) holds the whole [-1, 1] cube at every angle, so every cloud in a grid, and every
              frame of a GIF, shares one scale; extent=1 zooms onto clouds inside the unit sphere.
    shading   each point is a disc (radius 1.5 px at size 128, in proportion at other sizes) and the nearest
              point wins each pixel (a z-buffer: painter's far-to-near order, ties settled by point order); dark blue
              (near) to pale blue (far) over the fixed depth range [-1, 1] (the data's nominal range; nearer or
              farther points keep the end colours), the same for every cloud and every frame of a GIF.
              Drawn at SUPERSAMPLE times the size and box-filtered down, for soft disc edges.
NaN or inf points are skipped; a cloud without finite points is a blank (white) cell.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .draw import caption_font, draw_text, save_image
from .grids import CAPTION_H, save_gif

SUPERSAMPLE = 2
MARGIN = 2  # px: a point at the edge of the extent still shows its whole disc
NEAR, FAR = np.array([20, 60, 140.0]), np.array([190, 210, 235.0])  # RGB at the near and far end of the depth
BACKGROUND = 255
UP = {"y": np.eye(3), "z": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
      "x": np.array([[0, 1.0, 0], [1, 0, 0], [0, 0, -1]])}  # rows: the new (x, y, z) in old coordinates


def render_cloud(points, size: int = 128, azim: float = 30.0, elev: float = 20.0, radius: float | None = None,
                 extent: float = math.sqrt(3), up: str = "y") -> np.ndarray:
    """uint8 (size, size, 3): the cloud (3, P) seen from (azim, elev) degrees, on white (module docstring)."""
    p = _as_cloud(points)  # (P, 3), finite points only
    if up not in UP:
        raise ValueError(f"render_cloud: up must be one of {sorted(UP)}; got {up!r}")
    if not (isinstance(size, int) and size >= 8 and extent > 0 and (radius is None or radius > 0)):
        raise ValueError(f"render_cloud: need an int size >= 8, extent > 0 and radius > 0; got size={size!r}, "
                         f"extent={extent!r}, radius={radius!r}")
    n = size * SUPERSAMPLE
    canvas = np.full((n * n, 3), BACKGROUND, np.uint8)
    if len(p):
        sx, sy, depth = project(p @ UP[up].T, azim, elev)
        scale = (size / 2 - MARGIN) * SUPERSAMPLE / extent  # supersampled px per data unit
        r = (1.5 * size / 128 if radius is None else radius) * SUPERSAMPLE
        pix, who = _discs(n / 2 + sx * scale, n / 2 - sy * scale, depth, r, n)
        t = np.clip((depth[who] + 1) / 2, 0, 1)[:, None]  # 1 = nearest
        canvas[pix] = np.round(t * NEAR + (1 - t) * FAR).astype(np.uint8)
    return np.asarray(Image.fromarray(canvas.reshape(n, n, 3)).reduce(SUPERSAMPLE))


def project(p: np.ndarray, azim: float, elev: float):
    """(P, 3) y-up coordinates -> screen x, screen y (up) and depth (towards the camera), each (P,)."""
    a, e = math.radians(azim), math.radians(elev)
    x = p[:, 0] * math.cos(a) - p[:, 2] * math.sin(a)  # turn about y: +x comes forward for azim > 0
    z = p[:, 0] * math.sin(a) + p[:, 2] * math.cos(a)
    y = p[:, 1] * math.cos(e) - z * math.sin(e)  # raise the camera: the front drops, the top faces it
    depth = p[:, 1] * math.sin(e) + z * math.cos(e)
    return x, y, depth


def _discs(u: np.ndarray, v: np.ndarray, depth: np.ndarray, r: float, n: int):
    """Pixels covered by discs of radius r at (u, v) (pixel k spans [k, k+1)), each won by its nearest point.

    Returns flat pixel indices into the (n, n) canvas and, for each, the index of the point that colours it.
    """
    k = int(math.ceil(r))
    u, v = np.clip(u, -n, 2 * n), np.clip(v, -n, 2 * n)  # far off the canvas stays off it, without int overflow
    dy, dx = np.mgrid[-k : k + 1, -k : k + 1].reshape(2, 1, -1)
    col = np.floor(u).astype(np.int64)[:, None] + dx  # (P, window) candidate pixels around each centre
    row = np.floor(v).astype(np.int64)[:, None] + dy
    inside = ((col + 0.5 - u[:, None]) ** 2 + (row + 0.5 - v[:, None]) ** 2 <= r * r)
    inside &= (col >= 0) & (col < n) & (row >= 0) & (row < n)
    who = np.broadcast_to(np.arange(len(u))[:, None], col.shape)[inside]
    flat = (row * n + col)[inside]
    order = np.lexsort((depth[who], flat))  # by pixel, then far to near: the last of each pixel is the nearest
    flat, who = flat[order], who[order]
    if not len(flat):  # every point off the canvas
        return flat, who
    last = np.append(flat[1:] != flat[:-1], True)
    return flat[last], who[last]


def cloud_grid(clouds, ncol: int | None = None, size: int = 128, labels: Sequence[str] | None = None,
               pad: int = 2, **view) -> Image.Image:
    """The clouds (N, 3, P) rendered side by side, `ncol` a row (default ceil(sqrt(N))), each with an optional
    caption above it. view: azim, elev, radius, extent, up as in `render_cloud`."""
    c = _as_batch(clouds, "cloud_grid")
    if labels is not None and len(labels) != len(c):
        raise ValueError(f"cloud_grid: {len(labels)} labels for {len(c)} clouds; give one per cloud")
    cells = [render_cloud(x, size, **view) for x in c]
    return tile_cells(cells, ncol or math.ceil(math.sqrt(len(c))), pad, cell_labels=labels)


def save_cloud_grid(clouds, path: str | os.PathLike, ncol: int | None = None, size: int = 128,
                    labels: Sequence[str] | None = None, **view) -> Path:
    """`cloud_grid` saved as a PNG (or any format from the suffix) at `path`."""
    return save_image(cloud_grid(clouds, ncol, size, labels, **view), path)


def save_rotating_gif(clouds, path: str | os.PathLike, frames: int = 36, size: int = 128, ncol: int | None = None,
                      duration_ms: int = 80, labels: Sequence[str] | None = None, azim: float = 0.0,
                      **view) -> Path:
    """An animated GIF of one full turn, looping forever: frame k is the grid of all clouds (N, 3, P) at azimuth
    azim + 360 k / frames. 36 frames of 80 ms: a turn in about 3 s. GIF merges identical consecutive frames, so a
    cloud that looks the same from every side (a sphere, an empty cloud) can give fewer frames."""
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"save_rotating_gif: frames must be a positive int; got {frames!r}")
    c = _as_batch(clouds, "save_rotating_gif")
    images = [cloud_grid(c, ncol, size, labels, azim=azim + 360.0 * k / frames, **view) for k in range(frames)]
    return save_gif(images, path, duration_ms=duration_ms, loop=0, hold_last_ms=duration_ms)


def save_cloud_strip(clouds_over_time, path: str | os.PathLike, titles: Sequence[str] | None = None,
                  size: int = 128, pad: int = 2, **view) -> Path:
    """A PNG of the forward or reverse process: column j shows step j, row i cloud i.

    clouds_over_time: a list of T tensors (N, 3, P), one per step (x_t at the chosen t), or a (T, N, 3, P)
    tensor; titles: one caption per column, e.g. "t=1000". Unlike `viz.grids.process_strip` (images, returns a
    picture) this one writes the file. view: azim, elev, radius, extent, up as in `render_cloud`.
    """
    steps = list(clouds_over_time)
    if not steps:
        raise ValueError("save_cloud_strip: no steps; give a list of (N, 3, P) clouds, one per step")
    batches = [_as_batch(s, "save_cloud_strip") for s in steps]
    if len({b.shape[0] for b in batches}) != 1:
        raise ValueError(f"save_cloud_strip: every step needs the same number of clouds; got {[len(b) for b in batches]}")
    if titles is not None and len(titles) != len(steps):
        raise ValueError(f"save_cloud_strip: {len(titles)} titles for {len(steps)} steps; give one per step")
    cells = [render_cloud(b[i], size, **view) for i in range(len(batches[0])) for b in batches]  # row-major
    return save_image(tile_cells(cells, len(steps), pad, col_labels=titles), path)


def tile_cells(cells: list, ncol: int, pad: int, cell_labels=None, col_labels=None) -> Image.Image:
    """Equal (s, s, 3) cells on white, row-major; a caption band above every row (cell_labels) or the first one."""
    s = cells[0].shape[0]
    ncol = max(1, min(ncol, len(cells)))
    nrow = math.ceil(len(cells) / ncol)
    band = CAPTION_H if cell_labels is not None else 0  # above every row
    top = CAPTION_H if col_labels is not None else 0  # above the first row only
    pitch_x, pitch_y = s + pad, s + pad + band
    canvas = Image.new("RGB", (ncol * pitch_x + pad, top + nrow * pitch_y + pad), (BACKGROUND,) * 3)
    draw, font = ImageDraw.Draw(canvas), caption_font()
    for k, cell in enumerate(cells):
        r, q = divmod(k, ncol)
        x0, y0 = pad + q * pitch_x, top + pad + r * pitch_y
        canvas.paste(Image.fromarray(cell), (x0, y0 + band))
        if cell_labels is not None:
            draw_text(draw, (x0 + s / 2, y0 + band / 2), str(cell_labels[k]), font, 3, anchor="mm")
    for q, text in enumerate(col_labels or []):
        draw_text(draw, (pad + q * pitch_x + s / 2, top / 2 + 1), str(text), font, 3, anchor="mm")
    return canvas


def _as_cloud(points) -> np.ndarray:
    """(3, P) tensor or array -> float64 (P', 3) of its finite points."""
    p = torch.as_tensor(points).detach().to("cpu", torch.float64).numpy()
    if p.ndim != 2 or p.shape[0] != 3:
        raise ValueError(f"render_cloud: expected one cloud (3, P); got shape {p.shape}")
    p = p.T
    return p[np.isfinite(p).all(axis=1)]


def _as_batch(clouds, what: str) -> torch.Tensor:
    t = torch.as_tensor(clouds).detach().to("cpu")
    if t.ndim != 3 or t.shape[1] != 3 or t.shape[0] == 0:
        raise ValueError(f"{what}: expected point clouds (N, 3, P) with N >= 1; got shape {tuple(t.shape)}")
    return t


__all__ = ["render_cloud", "project", "tile_cells", "cloud_grid", "save_cloud_grid", "save_rotating_gif", "save_cloud_strip"]
