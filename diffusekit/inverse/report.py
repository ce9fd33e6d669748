"""The pictures and files of a reconstruction (what `diffusekit reconstruct` writes).

    side_by_side         labelled panels (Pillow), one row per image
    save_reconstruction  measurement.png, reconstruction.png, baseline.png, truth.png, side_by_side.png, metrics.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.dataset import to_uint8
from ..viz.draw import caption_font, draw_text, text_width
from ..viz.grids import save_grid
from .tasks import TASKS

LABELS = {"harmonic_fill": "harmonic fill", "bicubic": "bicubic", "zero_filled": "zero-filled", "tv": "TV",
          "truth": "truth"}


def _as_panels(columns: list[tuple[str, torch.Tensor]]) -> list[np.ndarray]:
    """Each column's images as uint8 RGB (B, H, W, 3), checked to be of one shape."""
    ims = []
    for title, x in columns:
        x = torch.as_tensor(x)
        x = x.unsqueeze(0) if x.ndim == 3 else x
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"side_by_side: column {title!r} must be (B, C, H, W) with C = 1 or 3, got "
                             f"{tuple(x.shape)}")
        ims.append(to_uint8(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x))  # (B, H, W, 3)
    shapes = {a.shape for a in ims}
    if len(shapes) != 1:
        raise ValueError(f"side_by_side: every column must have the same (B, C, H, W) shape, got {sorted(shapes)}")
    return ims


def side_by_side(columns: list[tuple[str, torch.Tensor]], path=None, captions: dict[str, list[str]] | None = None,
                 min_cell: int = 96, pad: int = 4) -> Image.Image:
    """Panels in columns with a title above each and an optional caption line under each cell (e.g. PSNR), one row
    per image: columns = [(title, images (B, C, H, W) in [-1, 1]), ...], all of one size; captions = {title:
    [one string per row]}. Small images are enlarged (nearest neighbour) to at least min_cell pixels wide.
    Returns the RGB picture and saves it when `path` is given."""
    if not columns:
        raise ValueError("side_by_side needs at least one column")
    ims = _as_panels(columns)
    b, h, w, _ = ims[0].shape
    font = caption_font()
    captions = captions or {}
    texts = [t for t, _ in columns] + [c for cs in captions.values() for c in cs]
    widest = max(text_width(font, t) for t in texts)
    s = max(1, math.ceil(max(min_cell, widest + 4) / w))
    cw, ch = w * s + pad, h * s + pad
    line = 14  # px per text line (10 px font + margins)
    row_h = ch + (line if captions else 0)
    canvas = Image.new("RGB", (len(columns) * cw + pad, line + b * row_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, ((title, _), a) in enumerate(zip(columns, ims)):
        x0 = pad + j * cw
        draw_text(draw, (x0 + w * s / 2, line / 2 + 1), title, font, 3, anchor="mm")
        for i in range(b):
            y0 = line + i * row_h
            canvas.paste(Image.fromarray(a[i].repeat(s, 0).repeat(s, 1), "RGB"), (x0, y0))
            cap = captions.get(title)
            if cap:
                draw_text(draw, (x0 + w * s / 2, y0 + h * s + line / 2 + 1), cap[i], font, 3, anchor="mm")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        canvas.save(path)
    return canvas


def _score_caption(per_image: dict, name: str, i: int) -> str:
    p = per_image[name]["psnr"][i]
    s = per_image[name]["ssim"]
    return f"{p:.1f} dB" + ("" if s is None else f", SSIM {s[i]:.2f}")


def _save_png(x: torch.Tensor, path: Path) -> Path:
    # one image: its own pixels at its own size (pad 0, no enlarging); several: a grid
    return save_grid(x, path, nrow=None, pad=0 if x.shape[0] == 1 else 2, upscale=1)


def save_grid_rows(draws: torch.Tensor, path: Path) -> Path:
    """(B, K, C, H, W) -> a grid of B rows of K images."""
    return save_grid(draws.flatten(0, 1), path, nrow=draws.shape[1], pad=2, upscale=1)


def _save_images(result: dict, out: Path) -> dict[str, Path]:
    """measurement.png, reconstruction.png, truth.png, samples.png (several samples), baseline*.png."""
    paths = {"measurement": _save_png(result["measurement"], out / "measurement.png"),
             "reconstruction": _save_png(result["reconstruction"], out / "reconstruction.png"),
             "truth": _save_png(result["truth"], out / "truth.png")}
    if "samples" in result:
        paths["samples"] = save_grid_rows(result["samples"], out / "samples.png")
    main = TASKS[result["settings"]["task"]].main_baseline
    for name, x in result["baselines"].items():
        file = "baseline.png" if name == main else f"baseline-{name.replace('_', '-')}.png"
        paths["baseline" if name == main else f"baseline-{name}"] = _save_png(x, out / file)
    return paths


def _panels(result: dict) -> tuple[list, dict]:
    """side_by_side.png's columns and captions: truth, the measurement, the baselines, (one sample,) the result."""
    s, per, base = result["settings"], result["per_image"], result["baselines"]
    b = result["truth"].shape[0]
    measured, shown, what = TASKS[s["task"]].panel(result)
    columns = [("truth", result["truth"]), (measured, shown)]
    columns += [(LABELS.get(n, n), x) for n, x in base.items()]
    captions = {LABELS.get(n, n): [_score_caption(per, n, i) for i in range(b)] for n in base}
    title = s["method"]
    if "samples" in result:  # one sample beside the mean of K
        columns.append((f"{title}, 1 sample", result["samples"][:, 0]))
        captions[f"{title}, 1 sample"] = [_score_caption(per, "single_sample", i) for i in range(b)]
        title = f"{title}, mean of {s['samples']}"
    columns.append((title, result["reconstruction"]))
    captions[title] = [_score_caption(per, "reconstruction", i) for i in range(b)]
    captions["truth"] = [""] * b
    noise = f", sigma_y {s['sigma_y']:g}" if s["sigma_y"] > 0 else ""
    captions[measured] = [what + noise] * b
    return columns, captions


def save_reconstruction(result: dict, out_dir, extra: dict | None = None) -> dict[str, Path]:
    """Write a `reconstruct_image` result to out_dir: measurement.png (the measured image; for MRI the log k-space
    magnitude), reconstruction.png, baseline.png (harmonic fill / bicubic / TV) and baseline-<name>.png for any
    other baseline (MRI: zero-filled), truth.png, side_by_side.png (labelled panels with PSNR/SSIM) and
    metrics.json (metrics, settings, seconds, notes, plus `extra`). With samples > 1, reconstruction.png is the
    mean of the samples and samples.png holds them all (one row per image). Returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = result["settings"]
    paths = _save_images(result, out)
    paths["side_by_side"] = out / "side_by_side.png"
    columns, captions = _panels(result)
    side_by_side(columns, paths["side_by_side"], captions)
    record = {**(extra or {}), "task": s["task"], "method": s["method"], "metrics": result["metrics"],
              "consistency": result["consistency"], "settings": s, "seconds": result["seconds"],
              "notes": result["notes"], "files": {k: p.name for k, p in paths.items()}}
    if result["truth"].shape[0] > 1:
        record["per_image"] = result["per_image"]
    paths["metrics"] = out / "metrics.json"
    paths["metrics"].write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    return paths


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


__all__ = ["LABELS", "side_by_side", "save_grid_rows", "save_reconstruction"]
