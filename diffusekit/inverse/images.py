"""The inputs of `diffusekit reconstruct`: the true image and the inpainting mask, read at the model's size.

    load_image   a PNG/JPEG/WebP/BMP or .npy -> (1, C, H, W) in [-1, 1] at the model's size, with notes on what was
                 changed (files are read by `diffusekit.data.folder.read_image`, as image folders are for training)
    load_mask    a PNG mask, white = known pixel, black = missing -> (H, W) bool
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.arrays import check_array_file, scale_to_unit
from ..data.dataset import DataError, convert_channels
from ..data.files import check_file
from ..data.folder import IMAGE_EXTENSIONS, PIL_FORMATS, crop_to_aspect, read_image

IMAGE_SUFFIXES = IMAGE_EXTENSIONS  # the files load_image reads with Pillow (.npy besides)


def check_image_model(shape) -> tuple[int, int, int]:
    """The model's sample shape, checked to be a 2-D grayscale or RGB image: (C, H, W)."""
    shape = tuple(shape)
    if len(shape) != 3:
        kind = {2: "1-D signals", 4: "video / 3-D volumes"}.get(len(shape), "data")
        raise ValueError(f"reconstruct works on 2-D images (C, H, W); this model makes {kind} of shape {shape}: "
                         "train a model on images (e.g. --data phantoms or mnist5k)")
    if shape[0] not in (1, 3):
        raise ValueError(f"reconstruct works on grayscale or RGB images; this model makes {shape[0]} channels")
    return shape  # type: ignore[return-value]


def load_image(path, shape) -> tuple[torch.Tensor, list[str]]:
    """Read an image file as the model's (1, C, H, W) in [-1, 1]; returns (image, notes on what was changed).

    PNG/JPEG/WebP/BMP: EXIF orientation applied, transparency composited on white, converted to grayscale (BT.601
    luma) or RGB as the model needs, 16-bit grey scaled to 8 bits; another size is centre-cropped to the model's
    aspect ratio and resized (Lanczos), as image folders are read for training. .npy: (H, W), (C, H, W) or (1, C, H, W),
    scaled by the rule of `diffusekit.data.arrays` (uint8 0..255, floats in [0, 1] or [-1, 1]), resized bilinearly
    with antialiasing."""
    C, H, W = check_image_model(shape)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input image {path} does not exist")
    if path.is_dir():
        raise ValueError(f"--input must be one image file, got the folder {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path, C, H, W)
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"{path}: unsupported image type {suffix or '(none)'!r}; give a "
                         f"{', '.join(IMAGE_SUFFIXES)} or .npy file")
    try:
        v, info = read_image(path, (H, W), C)
    except DataError:
        raise
    except Exception as e:  # Pillow raises many types for a corrupt file (OSError, SyntaxError, EOFError, ...)
        raise ValueError(f"cannot read {path} as an image ({type(e).__name__}: {_one_line(e)})") from e
    v = v[None] if v.ndim == 2 else v.transpose(2, 0, 1)  # (C, H, W)
    x = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) / 127.5 - 1
    return x.unsqueeze(0), _notes(info, C, H, W)


def _notes(info: dict, C: int, H: int, W: int) -> list[str]:
    """What `read_image` changed, for the user."""
    notes = ["transparency composited on white"] if info["alpha"] else []
    if C == 1 and not info["gray"]:
        notes.append(f"colour ({info['mode']}) converted to grayscale (BT.601 luma)")
    elif C == 3 and info["gray"]:
        notes.append("grayscale repeated to 3 channels")
    w, h = info["size"]
    if (w, h) != (W, H):
        notes.append(f"resized {w}x{h} -> {W}x{H}" + (" (centre crop)" if info["cropped"] else "") +
                     " to fit the model")
    return notes


def _load_npy(path: Path, C: int, H: int, W: int) -> tuple[torch.Tensor, list[str]]:
    check_array_file(path)  # not a regular file, a header that declares terabytes
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a plain numeric .npy array ({_one_line(e)}); pickled data is refused") from e
    if not isinstance(a, np.ndarray):
        a.close()
        raise ValueError(f"{path}: an .npz archive named .npy; give one array saved with np.save")
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[0] != 1:
        raise ValueError(f"{path}: expected one image, (H, W), (C, H, W) or (1, C, H, W); got shape {a.shape}")
    x, note = scale_to_unit(a, str(path))
    notes = [note]
    x, ch_note = convert_channels(x, C, path.name)
    notes += [ch_note] if ch_note else []
    h, w = x.shape[-2:]
    if (h, w) != (H, W):
        left, top, right, bottom = (int(round(v)) for v in crop_to_aspect(w, h, W, H))
        x = x[..., top:bottom, left:right]
        x = F.interpolate(x, size=(H, W), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)
        notes.append(f"resized {w}x{h} -> {W}x{H} to fit the model")
    return x.float().contiguous(), notes


def load_mask(path, spatial) -> tuple[torch.Tensor, list[str]]:
    """A mask image (PNG or any format Pillow reads) -> (H, W) bool, True = known. White (>= 128 after converting
    to grayscale) is a known pixel, black a missing one. It must have the model's size exactly: a resized mask
    would blur the border between known and missing."""
    H, W = spatial
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mask {path} does not exist")
    check_file(path)  # a folder, a FIFO (it would block), /dev/zero
    try:
        with Image.open(path, formats=PIL_FORMATS) as im:
            if im.size != (W, H):  # from the header: a mask that declares 100k x 100k is never decoded
                raise DataError(f"the mask {path} is {im.size[0]}x{im.size[1]} but the model's images are {W}x{H}: "
                                f"make the mask {W}x{H} (white = known pixels, black = missing)")
            im.load()
            v = np.asarray(im.convert("L"), dtype=np.uint8)
    except DataError:
        raise
    except Exception as e:  # as in load_image: any of Pillow's error types for a corrupt file
        raise ValueError(f"cannot read the mask {path} as an image ({type(e).__name__}: {_one_line(e)})") from e
    notes = []
    grey = int(((v > 32) & (v < 224)).sum())
    if grey:
        notes.append(f"mask has {grey} grey pixels; thresholded at 128 (white = known)")
    m = torch.from_numpy(v >= 128)
    if m.all():
        notes.append("the mask marks every pixel known: nothing to fill")
    elif not m.any():
        notes.append("the mask marks every pixel missing: the reconstruction is an unconditional sample")
    return m, notes


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


__all__ = ["check_image_model", "load_image", "load_mask"]
