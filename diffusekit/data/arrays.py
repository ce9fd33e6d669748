"""`.npy` / `.npz` arrays of shape (N, C, *spatial) -> one tensor in [-1, 1]. Loaded without pickle.

Which array:   .npy holds it; .npz: key "x", else "images", else the one array that is not labels.
Labels:        .npz key "labels" or "y": integers >= 0, shape (N,). num_classes = max + 1.
Scaling rule (the whole array at once, so relative levels between samples are kept):
    uint8                      v / 127.5 - 1            (0..255 -> [-1, 1])
    uint16                     v / 32767.5 - 1          (0..65535 -> [-1, 1])
    bool                       False -> -1, True -> 1
    other numbers, if 0 <= x <= 1    2x - 1             (checked first: [0, 1] data is taken as [0, 1])
                   elif -1 <= x <= 1 kept as is
                   else              2 (x - min) / (max - min) - 1 over the whole array (a constant array -> 0)
    The rule applied is recorded in `notes`. NaN or inf anywhere is an error, never silently scaled.
"""

from __future__ import annotations

import os
import warnings
import zipfile
import zlib
from pathlib import Path
from tokenize import TokenError

import numpy as np
import torch

from .dataset import DataError, InMemoryDataset
from .files import check_file, check_fits

X_KEYS = ("x", "images")
LABEL_KEYS = ("labels", "y")
ZIP_BOMB_RATIO, ZIP_BOMB_BYTES = 200, 64 << 20  # real arrays deflate 2-20x; zeros deflate ~1000x
MAX_CLASSES = 1_000_000  # labels are class indices: a larger one is a corrupt file, and an embedding table too big
EXPECTED = "expected (N, C, *spatial): (N, C, L) signals, (N, C, H, W) images or (N, C, T, H, W) video"


def load_array(path: str | os.PathLike) -> InMemoryDataset:
    """Load a .npy or .npz file (see the module docstring for the rules)."""
    path = Path(path)
    x, labels, key = _read(path)
    where = f"{path}" + (f" (array '{key}')" if key else "")
    if x.ndim < 3:
        hint = " (add a channel axis: x[:, None])" if x.ndim == 2 else ""
        raise DataError(f"{where}: array has shape {x.shape} (rank {x.ndim}); {EXPECTED}{hint}")
    if x.size == 0:
        raise DataError(f"{where}: array has shape {x.shape}: it is empty")
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        warnings.warn(
            f"{where}: shape {x.shape} looks channels-last (N, H, W, C); it is read as (N, C, H, W) with "
            f"C={x.shape[1]}. If that is wrong, save x.transpose(0, 3, 1, 2) instead.",
            stacklevel=3,
        )
    t, note = scale_to_unit(x, where)
    if labels is not None:
        labels = _check_labels(labels, x.shape[0], where)
    return InMemoryDataset(t, labels, None, name=path.stem, source=str(path), notes=[note])


def check_npy_header(f, size: int, where: str) -> int:
    """Refuse an .npy stream whose header declares more data than the `size` bytes that hold it (before numpy
    allocates what the header asks: a header can declare terabytes in a few bytes). Returns the number of elements."""
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f, max_header_size=10_000)
    except (ValueError, OSError, EOFError, SyntaxError, TokenError) as e:  # TokenError: numpy's header tokenizer
        raise DataError(f"{where}: not a valid .npy array header ({e})") from e
    declared = int(np.prod(shape, dtype=np.float64) * dtype.itemsize) if not dtype.hasobject else 0
    if declared > size - f.tell():
        raise DataError(f"{where}: its header declares shape {tuple(shape)} of {dtype} ({declared:,} bytes), but the "
                        f"file holds only {max(size - f.tell(), 0):,}: truncated or corrupt")
    return int(np.prod(shape, dtype=np.float64))


def check_array_file(path: Path) -> None:
    """The headers of an .npy, or of every array in an .npz, against the bytes that hold them and against the
    memory that reading them takes (the data, its float64 copy and the scaled float32 result: ~32 bytes an
    element); a deflated member that expands over ZIP_BOMB_RATIO times is refused as a zip bomb."""
    size = check_file(path)
    elements = 0
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if info.file_size > ZIP_BOMB_BYTES and info.file_size > ZIP_BOMB_RATIO * info.compress_size:
                        raise DataError(f"{path} ({info.filename}): {info.compress_size:,} bytes that expand to "
                                        f"{info.file_size:,}: refused as a zip bomb (save real data with np.savez, "
                                        f"uncompressed)")
                    if info.filename.endswith(".npy"):
                        with z.open(info) as f:
                            elements += check_npy_header(f, info.file_size, f"{path} ({info.filename})")
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as e:  # zlib: a corrupt deflate
            if isinstance(e, DataError):
                raise
            raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
    else:
        with open(path, "rb") as f:
            if f.read(6) == b"\x93NUMPY":
                f.seek(0)
                elements = check_npy_header(f, size, str(path))
    check_fits(path, max(elements * 32, size), "reading this array")


def _read(path: Path) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    check_array_file(path)
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as e:  # not a .npy/.npz, or object arrays, which need pickle (refused)
        raise DataError(f"{path}: not a plain numeric .npy/.npz array; pickled data is refused ({e})") from e
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npy/.npz file ({type(e).__name__}: {e})") from e
    if isinstance(data, np.ndarray):
        return data, None, None
    with data:
        keys = list(data.files)
        candidates = [k for k in keys if k not in LABEL_KEYS]
        key = next((k for k in X_KEYS if k in keys), None)
        if key is None and len(candidates) == 1:
            key = candidates[0]
        if key is None:
            raise DataError(
                f"{path}: cannot tell which array holds the data; keys are {keys}, expected 'x' or 'images' "
                f"(or a single array, plus optional 'labels' / 'y')"
            )
        label_key = next((k for k in LABEL_KEYS if k in keys), None)
        try:
            x = data[key]
            labels = data[label_key] if label_key else None
        except ValueError as e:
            raise DataError(f"{path}: cannot load without pickle ({e}); save plain numeric arrays") from e
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # members are inflated only here
            raise DataError(f"{path}: a corrupt member in the .npz ({type(e).__name__}: {e})") from e
    return x, labels, key


def scale_to_unit(x: np.ndarray, where: str) -> tuple[torch.Tensor, str]:
    """An array of any real or integer dtype as float32 in [-1, 1], and a note of the rule applied (the rule
    training arrays get, so an array means the same wherever it is read)."""
    if x.size == 0:
        raise DataError(f"{where}: array has shape {x.shape}: it is empty")
    if x.dtype == np.uint8:
        return torch.from_numpy(x.astype(np.float32) / 127.5 - 1), "uint8 0..255 scaled to [-1, 1]"
    if x.dtype == np.uint16:
        return torch.from_numpy((x.astype(np.float64) / 32767.5 - 1).astype(np.float32)), "uint16 scaled to [-1, 1]"
    if x.dtype == np.bool_:
        return torch.from_numpy(x.astype(np.float32) * 2 - 1), "bool mapped to -1 / 1"
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"{where}: dtype {x.dtype} is not supported; expected integers or real floats")
    x = x.astype(np.float64)  # scale in float64, store float32
    bad_nan, bad_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
    if bad_nan or bad_inf:
        raise DataError(f"{where}: array contains {bad_nan} NaN and {bad_inf} inf values; clean the data first")
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0 and hi <= 1:
        y, note = 2 * x - 1, "values in [0, 1] mapped to [-1, 1]"
    elif lo >= -1 and hi <= 1:
        y, note = x, "values already in [-1, 1], kept"
    elif hi == lo:
        y, note = np.zeros_like(x), f"constant array ({lo:g}) mapped to 0"
    else:  # halves first: x - lo and hi - lo overflow to inf for values near +-1.8e308
        mid, half = hi / 2 + lo / 2, hi / 2 - lo / 2
        y, note = np.clip(x / half - mid / half, -1, 1), f"values in [{lo:g}, {hi:g}] min/max-scaled to [-1, 1]"
    return torch.from_numpy(y.astype(np.float32)), note


def _check_labels(labels: np.ndarray, n: int, where: str) -> torch.Tensor:
    if labels.shape != (n,):
        raise DataError(f"{where}: labels have shape {labels.shape}; expected ({n},), one per sample")
    if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)  # integer-valued floats, as some tools save them
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers (class indices); got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= MAX_CLASSES:
        raise DataError(f"{where}: labels must be class indices in 0..{MAX_CLASSES - 1}; got {labels.min()}.."
                        f"{labels.max()}")
    return torch.from_numpy(labels.astype(np.int64))
