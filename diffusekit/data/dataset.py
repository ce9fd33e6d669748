"""The in-memory data set every loader returns, and the conversions shared by the loaders.

Conventions (the whole package follows them):
    x       float32 tensor (N, C, *spatial), values in [-1, 1]; spatial is (L,) for signals, (H, W) for images,
            (T, H, W) for video.
    labels  int64 tensor (N,) of class indices >= 0, or None for unlabelled data.
Pixel <-> model scale: x = v / 127.5 - 1 for 8-bit pixels v in 0..255, and back with `to_uint8`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn.functional as F

# ITU-R BT.601 luma, the weights Pillow uses for RGB -> L, so arrays and image folders agree.
LUMA = (0.299, 0.587, 0.114)


class DataError(ValueError):
    """Bad input to a data loader: the message names the file or folder and says what was expected."""


def cached_arrays(path: Path, build) -> tuple[dict, dict]:
    """(arrays: numpy, meta) of a generated data set cached at path.safetensors and path.json: read back when both are
    readable, else `build()` -> (arrays, meta), written atomically (arrays first: a meta file always has its
    arrays), so a build interrupted by the machine is built again, never read half-written."""
    from safetensors.numpy import load_file, save_file  # numpy arrays: what the builders make

    meta_path, arrays_path = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if meta_path.is_file() and arrays_path.is_file():
        try:
            return load_file(str(arrays_path)), json.loads(meta_path.read_text())
        except (OSError, ValueError):
            pass  # unreadable: build again
    arrays, meta = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = f".{os.getpid()}.tmp"
    save_file(arrays, str(arrays_path) + tmp)
    Path(str(meta_path) + tmp).write_text(json.dumps(meta, indent=1))
    os.replace(str(arrays_path) + tmp, arrays_path)
    os.replace(str(meta_path) + tmp, meta_path)
    return arrays, meta


def recipe_from_options(recipe_class, data_name: str, options: dict):
    """A generated data set's recipe (a dataclass) from a run's `data_options`: JSON lists become tuples (ranges),
    and an unknown setting is a one-line DataError that lists the known ones."""
    known = {f.name for f in fields(recipe_class)}
    if set(options) - known:
        raise DataError(f"{data_name}: unknown data option(s) {sorted(set(options) - known)}; the recipe takes "
                        f"{', '.join(sorted(known))}")
    return recipe_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})


@dataclass
class InMemoryDataset:
    """A whole data set held as one tensor; indexing works like `torch.utils.data.TensorDataset`.

    `ds[i]` is `(x[i], labels[i])` when labelled, `(x[i],)` otherwise, so a DataLoader can batch it directly.
    """

    x: torch.Tensor  # (N, C, *spatial) float32 in [-1, 1]
    labels: torch.Tensor | None = None  # (N,) int64, or None
    class_names: list[str] | None = None  # index -> name, where the source names its classes
    name: str = ""  # short name: the built-in name or the file/folder name
    source: str = ""  # where the data came from (a path or a library call)
    skipped: list[str] = field(default_factory=list)  # files that could not be read, "path: reason"
    notes: list[str] = field(default_factory=list)  # conversions made while loading (scaling, channels, size)

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or self.x.dtype != torch.float32 or self.x.ndim < 3:
            raise DataError(f"{self.name}: x must be a float32 tensor (N, C, *spatial); got {_describe(self.x)}")
        if self.x.shape[0] == 0:
            raise DataError(f"{self.name}: the data set is empty")
        if self.labels is not None:
            if self.labels.dtype != torch.int64 or self.labels.shape != (self.x.shape[0],):
                raise DataError(
                    f"{self.name}: labels must be int64 of shape ({self.x.shape[0]},); got {_describe(self.labels)}"
                )
            if int(self.labels.min()) < 0:
                raise DataError(f"{self.name}: labels must be >= 0; got min {int(self.labels.min())}")
        if self.class_names is not None and self.labels is not None:
            if int(self.labels.max()) >= len(self.class_names):
                raise DataError(f"{self.name}: label {int(self.labels.max())} has no entry in class_names")

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i):
        if self.labels is None:
            return (self.x[i],)
        return self.x[i], self.labels[i]

    @property
    def channels(self) -> int:
        return self.x.shape[1]

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.x.shape[2:])

    @property
    def num_classes(self) -> int | None:
        """len(class_names) where known, else max(label) + 1, else None (unlabelled)."""
        if self.class_names is not None:
            return len(self.class_names)
        if self.labels is not None:
            return int(self.labels.max()) + 1
        return None

    def to_uint8(self, x: torch.Tensor | None = None) -> np.ndarray:
        """uint8 (N, *spatial, C) of `x` (default: the whole data set), for saving as images."""
        return to_uint8(self.x if x is None else x)

    def describe(self) -> str:
        """One line for logs: name, size, shape, classes, source, and what was skipped."""
        shape = " x ".join(str(s) for s in self.x.shape[1:])
        classes = f", {self.num_classes} classes" if self.num_classes is not None else ", unlabelled"
        skipped = f", {len(self.skipped)} files skipped" if self.skipped else ""
        return f"{self.name}: {len(self)} x {shape}{classes}{skipped} (from {self.source})"

    def __repr__(self) -> str:
        return f"InMemoryDataset({self.describe()})"


def to_uint8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """[-1, 1] floats (N, C, *spatial) -> uint8 (N, *spatial, C): v = round(clamp((x + 1) * 127.5, 0, 255)).

    NaN is shown as mid-grey and +-inf as white/black, so a diverged sample still renders instead of crashing.
    """
    x = torch.as_tensor(x).detach().to("cpu", torch.float32)
    if x.ndim < 3:
        raise ValueError(f"to_uint8 expects (N, C, *spatial); got shape {tuple(x.shape)}")
    x = torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    v = ((x + 1) * 127.5).clamp(0, 255).round().to(torch.uint8)
    return v.movedim(1, -1).contiguous().numpy()


def uint8_to_unit(v: np.ndarray) -> torch.Tensor:
    """uint8 0..255 (any shape) -> float32 in [-1, 1], the inverse of `to_uint8` on the grid v / 127.5 - 1."""
    return torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) / 127.5 - 1


def convert_channels(x: torch.Tensor, channels: int | None, name: str) -> tuple[torch.Tensor, str | None]:
    """Convert (N, C, *spatial) to `channels`: 1 -> 3 repeats, 3 -> 1 takes BT.601 luma. Returns (x, note)."""
    c = x.shape[1]
    if channels is None or channels == c:
        return x, None
    check_channels(channels)
    if c == 1 and channels == 3:
        return x.expand(-1, 3, *x.shape[2:]).contiguous(), "grayscale repeated to 3 channels"
    if c == 3 and channels == 1:
        w = torch.tensor(LUMA, dtype=x.dtype).view(1, 3, *([1] * (x.ndim - 2)))
        return (x * w).sum(1, keepdim=True), "RGB converted to 1 channel (BT.601 luma)"
    raise DataError(f"{name}: cannot convert {c} channels to {channels}; only 1 <-> 3 is supported")


def resize_square(x: torch.Tensor, image_size: int | None, name: str) -> tuple[torch.Tensor, str | None]:
    """Resize (N, C, H, W) so the shorter side is `image_size`, then centre-crop to a square. Returns (x, note).

    For arrays and built-ins; image folders are resized with Pillow while reading. Bilinear with antialiasing:
    it never overshoots, so values stay in [-1, 1].
    """
    if image_size is None:
        return x, None
    check_image_size(image_size)
    if x.ndim != 4:
        raise DataError(
            f"{name}: image_size applies to 2-D images (N, C, H, W); this data has shape {tuple(x.shape)}"
        )
    h, w = x.shape[2:]
    if (h, w) == (image_size, image_size):
        return x, None
    m = min(h, w)  # centre square of the source, then one resize: same result as resize-then-crop
    top, left = (h - m) // 2, (w - m) // 2
    x = x[:, :, top : top + m, left : left + m]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(-1, 1).contiguous(), f"resized {h}x{w} -> {image_size}x{image_size} (centre crop)"


def check_channels(channels: int | None) -> None:
    if channels is not None and channels not in (1, 3):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB); got {channels!r}")


def check_image_size(image_size: int | None) -> None:
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"image_size must be a positive int; got {image_size!r}")


def median_int(values: list[int]) -> int:
    """Median rounded down to an int (the lower middle for an even count), deterministic."""
    s = sorted(values)
    return s[(len(s) - 1) // 2] if s else 0


def _describe(t) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} tensor of shape {tuple(t.shape)}"
    return type(t).__name__


@dataclass(repr=False)
class GeneratedDataset(InMemoryDataset):
    """An InMemoryDataset that also carries how it was made: per-example parameters and, for audio, the rate.

    params: name -> tensor with N rows (per example) or a 0-d tensor / number (one value for the whole set), so
    benchmarks can compare a model's samples with the true distribution of a generating parameter.
    """

    params: dict = field(default_factory=dict)
    rate: int | None = None  # samples per second for audio-like signals; None where time has no unit

    def __post_init__(self) -> None:
        super().__post_init__()
        n = self.x.shape[0]
        for k, v in self.params.items():
            if isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] != n:
                raise DataError(f"{self.name}: params[{k!r}] has {v.shape[0]} rows for {n} examples")


@dataclass(repr=False)
class CaptionedDataset(InMemoryDataset):
    """An InMemoryDataset with one caption per image (and, for `shapes`, the attributes each caption describes).

    Indexing is unchanged (`ds[i]` is `(x[i], labels[i])` or `(x[i],)`): captions are looked up by index, e.g.
    through `diffusekit.text.encode_captions(ds.captions).lookup(i)`.
    """

    captions: list[str] = field(default_factory=list)  # (N,) one per image
    attributes: list | None = None  # (N,) per-image structured description where the data has one (shapes)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.captions) != self.x.shape[0]:
            raise DataError(f"{self.name}: {len(self.captions)} captions for {self.x.shape[0]} images")
        if self.attributes is not None and len(self.attributes) != self.x.shape[0]:
            raise DataError(f"{self.name}: {len(self.attributes)} attribute lists for {self.x.shape[0]} images")

    def subset(self, keep) -> CaptionedDataset:
        """The images at indices `keep` (a list or an int64/bool tensor), in that order, with their captions."""
        idx = torch.as_tensor(keep)
        idx = idx.nonzero().flatten() if idx.dtype == torch.bool else idx.long()
        rows = idx.tolist()
        return CaptionedDataset(
            self.x[idx], None if self.labels is None else self.labels[idx], self.class_names, self.name,
            self.source, list(self.skipped), list(self.notes), [self.captions[i] for i in rows],
            None if self.attributes is None else [self.attributes[i] for i in rows],
        )

    def describe(self) -> str:
        return f"{super().describe()}, {len(set(self.captions))} distinct captions"

    def __repr__(self) -> str:
        return f"CaptionedDataset({self.describe()})"


__all__ = [
    "DataError",
    "InMemoryDataset",
    "GeneratedDataset",
    "CaptionedDataset",
    "to_uint8",
    "uint8_to_unit",
    "convert_channels",
    "resize_square",
]
