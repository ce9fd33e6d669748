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
from pathlib import Path

import numpy as np
import torch

from .dataset import DataError, InMemoryDataset

X_KEYS = ("x", "images")
LABEL_KEYS = ("labels", "y")
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


def check_npy_header(f, size: int, where: str) -> None:
    """Refuse an .npy stream whose header declares more data than the `size` bytes that hold it (before numpy
    allocates what the header asks: a header can declare terabytes in a few bytes)."""
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f, max_header_size=10_000)
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise DataError(f"{where}: not a valid .npy array header ({e})") from e
    declared = int(np.prod(shape, dtype=np.float64) * dtype.itemsize) if not dtype.hasobject else 0
    if declared > size - f.tell():
        raise DataError(f"{where}: its header declares shape {tuple(shape)} of {dtype} ({declared:,} bytes), but the "
                        f"file holds only {max(size - f.tell(), 0):,}: truncated or corrupt")


def check_array_file(path: Path) -> None:
    """The headers of an .npy, or of every array in an .npz, against the bytes that hold them."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if info.filename.endswith(".npy"):
                        with z.open(info) as f:
                            check_npy_header(f, info.file_size, f"{path} ({info.filename})")
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
        return
    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":
            f.seek(0)
            check_npy_header(f, path.stat().st_size, str(path))


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
    return x, labels, key


def scale_to_unit(x: np.ndarray, where: str) -> tuple[torch.Tensor, str]:
    """An array of any real or integer dtype as float32 in [-1, 1], and a note of the rule applied (the rule
    training arrays get, so an array means the same wherever it is read)."""
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
    else:
        y, note = 2 * (x - lo) / (hi - lo) - 1, f"values in [{lo:g}, {hi:g}] min/max-scaled to [-1, 1]"
    return torch.from_numpy(y.astype(np.float32)), note


def _check_labels(labels: np.ndarray, n: int, where: str) -> torch.Tensor:
    if labels.shape != (n,):
        raise DataError(f"{where}: labels have shape {labels.shape}; expected ({n},), one per sample")
    if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)  # integer-valued floats, as some tools save them
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers (class indices); got dtype {labels.dtype}")
    if labels.min() < 0:
        raise DataError(f"{where}: labels must be >= 0; got min {labels.min()}")
    return torch.from_numpy(labels.astype(np.int64))
