"""Pictures of conformers: ball-and-stick renders, grids and process strips. numpy + Pillow only.

A conformer is coordinates (3, A) in model units (x Å / scale, as the model makes them; a batch (N, 3, A)) with
its graph: atoms (A,) (0 = padding, i = ATOM_TYPES[i - 1]) and bonds (A, A) (`diffusekit.data.molgraph`).

View: `viz.points`' conventions (`project`: y up, azim turns about it, elev raises the camera; orthographic at a
fixed `extent` in data units from the centre to the edge of the cell, so every cell of a grid and every column of a
strip shares one scale). Default extent 3: the default data has std ~1 per coordinate and 99% of its atoms lie
within |x| < 3 (its largest molecules reach ~4 at their ends, which may leave the cell); the view is turned (azim 30, elev 20) so planar rings are not seen edge-on.
Drawing: bonds as grey lines between atom centres (double and aromatic ones thicker), drawn first; then atoms as
discs far to near (the nearest on top), coloured by element (CPK: H white, C dark grey, N blue, O red, F green),
hydrogens smaller; each disc darkened with depth, so the front reads as front. Drawn at SUPERSAMPLE times the size
and box-filtered down. Padding atoms and non-finite coordinates are not drawn.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from .draw import save_image
from .points import project, tile_cells

SUPERSAMPLE = 2
# CPK colours by atom index (0 padding unused): H, C, N, O, F (the order of molgraph.ATOM_TYPES)
COLOURS = np.array([[0, 0, 0], [235, 235, 235], [70, 70, 70], [48, 80, 248], [230, 30, 30], [60, 200, 60.0]])
RADII = np.array([0.0, 0.55, 1.0, 1.0, 1.0, 0.9])  # relative disc radius: hydrogens small
OUTLINE = (60, 60, 60)
BOND = (130, 130, 130)


def render_molecule(coords, atoms, bonds, size: int = 128, azim: float = 30.0, elev: float = 20.0,
                    extent: float = 3.0) -> np.ndarray:
    """uint8 (size, size, 3): one conformer (3, A) with its graph, seen from (azim, elev), on white."""
    x = torch.as_tensor(coords).detach().to("cpu", torch.float64).numpy()
    a, b = np.asarray(torch.as_tensor(atoms).cpu()), np.asarray(torch.as_tensor(bonds).cpu())
    if x.ndim != 2 or x.shape[0] != 3 or a.shape != (x.shape[1],) or b.shape != (len(a), len(a)):
        raise ValueError(f"render_molecule: expected coords (3, A), atoms (A,), bonds (A, A); got {x.shape}, "
                         f"{a.shape}, {b.shape}")
    n = size * SUPERSAMPLE
    img = Image.new("RGB", (n, n), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    show = (a > 0) & np.isfinite(x).all(0)
    sx, sy, depth = project(np.nan_to_num(x.T), azim, elev)
    scale = n / 2 / extent  # supersampled px per data unit
    u, v = n / 2 + sx * scale, n / 2 - sy * scale
    r0 = 0.15 * scale  # a carbon's disc: 0.27 Å at scale 1.8 (ball-and-stick: bonds of ~1.5 Å stay visible)
    for i, j in zip(*np.nonzero(np.triu(b, 1))):
        if show[i] and show[j]:
            width = max(1, round((2.2 if b[i, j] in (2, 4) else 1.2) * SUPERSAMPLE * size / 128))
            draw.line([(u[i], v[i]), (u[j], v[j])], fill=BOND, width=width)
    near = np.clip((depth + 2) / 4, 0, 1)  # 1 = nearest, over the fixed depth range [-2, 2]
    for i in np.flatnonzero(show)[np.argsort(depth[show], kind="stable")]:  # far to near
        r = r0 * RADII[a[i]]
        colour = tuple(int(c) for c in np.round(COLOURS[a[i]] * (0.7 + 0.3 * near[i])))
        draw.ellipse([u[i] - r, v[i] - r, u[i] + r, v[i] + r], fill=colour, outline=OUTLINE,
                     width=max(1, SUPERSAMPLE // 2))
    return np.asarray(img.reduce(SUPERSAMPLE))


def molecule_grid(coords, atoms, bonds, ncol: int | None = None, size: int = 128,
                  labels: Sequence[str] | None = None, pad: int = 2, **view) -> Image.Image:
    """Conformers (N, 3, A) with their graphs (N, A), (N, A, A) side by side, `ncol` a row (default
    ceil(sqrt(N))), each with an optional caption. view: azim, elev, extent as in `render_molecule`."""
    x = torch.as_tensor(coords)
    if x.ndim != 3 or len(x) == 0 or len(atoms) != len(x) or len(bonds) != len(x):
        raise ValueError(f"molecule_grid: expected conformers (N, 3, A) and N graphs; got {tuple(x.shape)}, "
                         f"{len(atoms)} atoms rows, {len(bonds)} bonds rows")
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"molecule_grid: {len(labels)} labels for {len(x)} conformers; give one per conformer")
    cells = [render_molecule(x[i], atoms[i], bonds[i], size, **view) for i in range(len(x))]
    return tile_cells(cells, ncol or math.ceil(math.sqrt(len(x))), pad, cell_labels=labels)


def save_molecule_grid(coords, atoms, bonds, path: str | os.PathLike, ncol: int | None = None, size: int = 128,
                       labels: Sequence[str] | None = None, **view) -> Path:
    """`molecule_grid` saved as a PNG (or any format from the suffix) at `path`."""
    return save_image(molecule_grid(coords, atoms, bonds, ncol, size, labels, **view), path)


def save_molecule_strip(steps, atoms, bonds, path: str | os.PathLike, titles: Sequence[str] | None = None,
                        size: int = 128, pad: int = 2, **view) -> Path:
    """A PNG of the forward or reverse process: column j shows step j, row i conformer i. steps: a list of T
    tensors (N, 3, A); atoms (N, A), bonds (N, A, A): the graph of each row; titles: one per column."""
    steps = [torch.as_tensor(s) for s in steps]
    if not steps or len({s.shape for s in steps}) != 1:
        raise ValueError(f"save_molecule_strip: give T >= 1 steps of one shape (N, 3, A); got "
                         f"{[tuple(s.shape) for s in steps]}")
    if titles is not None and len(titles) != len(steps):
        raise ValueError(f"save_molecule_strip: {len(titles)} titles for {len(steps)} steps; give one per step")
    cells = [render_molecule(s[i], atoms[i], bonds[i], size, **view) for i in range(len(steps[0])) for s in steps]
    return save_image(tile_cells(cells, len(steps), pad, col_labels=titles), path)


__all__ = ["molecule_grid", "render_molecule", "save_molecule_grid", "save_molecule_strip"]
