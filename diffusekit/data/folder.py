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
from PIL import Image, ImageOps

from .files import check_file, check_fits, folder_labels, list_files
from .dataset import DataError, InMemoryDataset, check_channels, check_image_size, median_int, uint8_to_unit

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# The decoders a file may reach, whatever its extension says (a .jpg is often a PNG; camera MPOs open through JPEG);
# the rest of Pillow's ~40 formats stay out of reach of a hostile file.
PIL_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "DIB", "GIF")
# Pillow only warns below twice its limit: up to ~179 M pixels, ~0.7 GB as RGBA before compositing. Refused from the
# header instead, so a small file that declares a huge image (a decompression bomb) is never decoded.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # ~89 M pixels: a 9,459 x 9,459 photo
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
            # a FIFO named a.png would block Image.open forever; WebP reads the whole file (a sparse one: gigabytes)
            check_fits(path, check_file(path), "reading this image")
            with Image.open(path, formats=PIL_FORMATS) as im:
                check_pixels(path, im.size)
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
    for path, _, gray in headers:
        try:
            pixels, info = read_image(path, image_size, channels)
        except Exception as e:  # as above: a decoding failure of any kind skips the file
            failed[path] = _reason(path, e)
            continue
        arrays.append(pixels)
        kept.append(path)
        counts["alpha"] += info["alpha"]
        # converted images are counted by the header's grey (`_is_gray`: by mode or palette), as the majority was
        counts["to_gray"] += channels == 1 and not gray
        counts["to_rgb"] += channels == 3 and gray
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
    msg = str(e).replace(f" {str(path)!r}", "").removeprefix(f"{path}: ")
    return f"{path}: {type(e).__name__}: {msg}"


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


def check_pixels(path, size: tuple[int, int]) -> None:
    """Refuse an image whose header declares more than MAX_PIXELS, before any of it is decoded."""
    w, h = size
    if w * h > MAX_PIXELS:
        raise DataError(f"{path}: the header declares {w} x {h} = {w * h:,} pixels, over the {MAX_PIXELS:,} "
                        f"allowed (a decompression bomb, or an image to downscale first)")


def crop_to_aspect(w: int, h: int, W: int, H: int) -> tuple[float, float, float, float]:
    """The centred box of a w x h image with the aspect ratio W / H: (left, top, right, bottom)."""
    if w * H > h * W:  # too wide
        cw = h * W / H
        return (w - cw) / 2, 0.0, (w + cw) / 2, float(h)
    ch = w * H / W
    return 0.0, (h - ch) / 2, float(w), (h + ch) / 2


def read_image(path: str | os.PathLike, size: int | tuple[int, int], channels: int) -> tuple[np.ndarray, dict]:
    """Decode one image file -> uint8 (H, W) for channels=1 or (H, W, 3) for channels=3, the one image reader of the
    package (image folders, `diffusekit reconstruct`'s input).

    In order: EXIF orientation applied; transparency (RGBA, LA, palette transparency) composited on white; 16- or
    32-bit grey scaled to 8 bits; converted to grayscale (BT.601 luma) or RGB; centre-cropped to the aspect ratio of
    size = (H, W) (an int S: (S, S)) and resized to it (Lanczos), or kept pixel for pixel when already that size.
    Returns (pixels, info), info = {"mode": the file's mode, "size": its (width, height), "alpha": whether
    transparency was composited, "gray": whether it was grey before the conversion (mode 1 or L, or RGB with three
    equal channels), "cropped": whether the crop cut anything off}. Pillow's errors for a file it cannot decode
    (unknown format, truncated) pass through; a file that is not a regular one, or whose header declares over
    MAX_PIXELS, is a DataError before anything is decoded."""
    H, W = (size, size) if isinstance(size, int) else size
    check_fits(path, check_file(path), "reading this image")  # as in load_folder's first pass
    with Image.open(path, formats=PIL_FORMATS) as im:
        check_pixels(path, im.size)
        im.load()  # raises here for a truncated file
        im = ImageOps.exif_transpose(im)
        info = {"mode": im.mode, "size": im.size, "alpha": False, "cropped": False}
        if im.mode in ALPHA_MODES or "transparency" in im.info:
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
            info["alpha"] = True
        elif im.mode.startswith("I") or im.mode == "F":
            a = np.asarray(im, dtype=np.float64)  # 16- or 32-bit grey
            a = a / 257 if a.max() > 255 else a  # 16-bit range 0..65535 -> 0..255
            im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
        info["gray"] = im.mode in ("1", "L") or (im.mode == "RGB" and _equal_channels(im))
        im = im.convert("L" if channels == 1 else "RGB")
        if im.size != (W, H):
            w, h = im.size
            box = crop_to_aspect(w, h, W, H)
            info["cropped"] = (box[2] - box[0], box[3] - box[1]) != (w, h)
            im = im.resize((W, H), Image.Resampling.LANCZOS, box=box)
        return np.asarray(im, dtype=np.uint8), info


def _equal_channels(im: Image.Image) -> bool:
    a = np.asarray(im)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())
