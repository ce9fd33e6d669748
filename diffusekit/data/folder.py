"""A user's folder of images -> one (N, C, S, S) tensor in [-1, 1].

Rules, in the order they are applied:
    files     every .png/.jpg/.jpeg/.webp/.bmp under the folder (any depth, sorted by path; case-insensitive
              extensions). Hidden files and folders (".name") and other extensions are ignored silently.
    labels    if every image sits inside a first-level sub-folder and there are at least two of them, the
              sub-folder names (sorted) are the classes: folder/cat/1.png -> class_names[label] == "cat".
              Otherwise the data is unlabelled.
    channels  `channels=` if given, else the majority: 1 if most images are grayscale (L, LA, 1, I;16, or a
              palette of greys), 3 otherwise (ties go to 3). Images of the other kind are converted (RGB -> L
              with BT.601 luma, L -> RGB by repetition) and counted in `notes`.
    alpha     transparency (RGBA, LA, palette transparency) is composited on white before anything else.
    size      `image_size=` if given, else the median shorter side, capped at 64 so that a folder of photos
              stays small enough to train on one machine (pass image_size to go bigger). Each image is
              resized so its shorter side is image_size (Lanczos) and centre-cropped to a square; images
              already of that size are kept pixel for pixel. EXIF orientation is applied first.
    errors    an unreadable file (corrupt, truncated, not really an image) is skipped with one warning for
              all of them and listed in `skipped`; no readable image at all is a DataError naming the folder.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .files import folder_labels, list_files
from .dataset import DataError, InMemoryDataset, check_channels, check_image_size, median_int, uint8_to_unit

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
DEFAULT_MAX_SIZE = 64  # cap for the automatic size: 64x64 keeps a photo folder trainable on a CPU
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def load_folder(
    folder: str | os.PathLike, image_size: int | None = None, channels: int | None = None
) -> InMemoryDataset:
    """Load every image under `folder` (see the module docstring for the rules)."""
    check_image_size(image_size)
    check_channels(channels)
    folder = Path(folder)
    files, others = list_images(folder)
    if not files:
        found = f"; it has {len(others)} other files, e.g. {others[0]}" if others else " and no other files"
        raise DataError(f"folder {folder} has no image files ({', '.join(IMAGE_EXTENSIONS)}){found}")

    # Pass 1 reads only headers (size, mode): enough to choose the size and channel count without decoding.
    failed: dict[Path, str] = {}  # path -> reason, from either pass
    headers: list[tuple[Path, tuple[int, int], bool]] = []  # (path, (w, h), is_gray)
    for path in files:
        try:
            with Image.open(path) as im:
                headers.append((path, im.size, _is_gray(im)))
        except Exception as e:  # Pillow raises many types for bad files; any of them means "skip this file"
            failed[path] = _reason(path, e)

    notes: list[str] = []
    n_gray = sum(g for _, _, g in headers)
    if channels is None and headers:
        channels = 1 if n_gray > len(headers) - n_gray else 3
        notes.append(f"channels={channels} by majority ({n_gray} grayscale, {len(headers) - n_gray} colour images)")
    if image_size is None and headers:
        median = median_int([min(size) for _, size, _ in headers])
        image_size = min(median, DEFAULT_MAX_SIZE)
        notes.append(f"image_size={image_size}: median shorter side {median}, capped at {DEFAULT_MAX_SIZE}")

    # Pass 2 decodes, converts and resizes; a file that is truncated fails only here.
    arrays: list[np.ndarray] = []
    kept: list[Path] = []
    counts = {"alpha": 0, "to_gray": 0, "to_rgb": 0}
    for path, _, _ in headers:
        try:
            arrays.append(_read(path, image_size, channels, counts))
            kept.append(path)
        except Exception as e:  # as above: a decoding failure of any kind skips the file
            failed[path] = _reason(path, e)
    skipped = [failed[p] for p in files if p in failed]  # in file order, whichever pass failed

    if not arrays:
        shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        raise DataError(f"folder {folder}: none of its {len(files)} image files could be read: {shown}")
    if skipped:
        warnings.warn(
            f"{folder}: skipped {len(skipped)} of {len(files)} image files that could not be read "
            f"(listed in .skipped): {skipped[0]}" + (" ..." if len(skipped) > 1 else ""),
            stacklevel=3,
        )
    if counts["alpha"]:
        notes.append(f"{counts['alpha']} image(s) with transparency composited on white")
    if counts["to_gray"]:
        notes.append(f"{counts['to_gray']} colour image(s) converted to grayscale (BT.601 luma)")
    if counts["to_rgb"]:
        notes.append(f"{counts['to_rgb']} grayscale image(s) repeated to 3 channels")

    v = np.stack(arrays)  # (N, S, S) or (N, S, S, 3) uint8
    v = v[:, None] if v.ndim == 3 else v.transpose(0, 3, 1, 2)  # (N, C, S, S)
    labels, class_names = folder_labels(folder, files, kept)
    return InMemoryDataset(
        uint8_to_unit(v), labels, class_names, name=folder.name or str(folder), source=str(folder),
        skipped=skipped, notes=notes,
    )


def _reason(path: Path, e: Exception) -> str:
    """"path: ErrorType: message", without Pillow's repetition of the path inside the message."""
    return f"{path}: {type(e).__name__}: {str(e).replace(f' {str(path)!r}', '')}"


def list_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under folder, sorted by relative path; hidden entries left out."""
    files = list_files(folder)
    return ([p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS],
            [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS])


def _is_gray(im: Image.Image) -> bool:
    if im.mode in GRAY_MODES:
        return True
    if im.mode in ("P", "PA"):
        pal = im.getpalette() or []
        return all(pal[i] == pal[i + 1] == pal[i + 2] for i in range(0, len(pal) - 2, 3))
    return False


def _read(path: Path, size: int, channels: int, counts: dict[str, int]) -> np.ndarray:
    """Decode one file -> uint8 (size, size) for channels=1 or (size, size, 3) for channels=3."""
    with Image.open(path) as im:
        im.load()  # raises here for a truncated file
        gray = _is_gray(im)
        im = ImageOps.exif_transpose(im)
        if im.mode in ALPHA_MODES or "transparency" in im.info:
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
            counts["alpha"] += 1
        elif im.mode.startswith("I") or im.mode == "F":
            a = np.asarray(im, dtype=np.float64)  # 16- or 32-bit grey
            a = a / 257 if a.max() > 255 else a  # 16-bit range 0..65535 -> 0..255
            im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
        im = im.convert("L") if gray else im.convert("RGB")  # L: exact for grey palettes and composited LA
        if channels == 1 and not gray:
            counts["to_gray"] += 1
        elif channels == 3 and gray:
            counts["to_rgb"] += 1
        im = im.convert("L" if channels == 1 else "RGB")
        w, h = im.size
        m = min(w, h)
        box = ((w - m) / 2, (h - m) / 2, (w + m) / 2, (h + m) / 2)  # centre square, then one resize
        im = im.resize((size, size), Image.Resampling.LANCZOS, box=box)
        return np.asarray(im, dtype=np.uint8)


