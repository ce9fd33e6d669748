"""Data: built-in data sets, a user's image folder, or arrays -> one `InMemoryDataset` in [-1, 1].

    from diffusekit.data import load_data
    ds = load_data("digits")                  # built-in (see BUILTINS); the default
    ds = load_data("photos/", image_size=32)  # a folder of PNG/JPEG/WebP; sub-folders become classes
    ds = load_data("signals.npz")             # (N, C, *spatial) arrays
    ds = load_data("clips/")                  # a folder of animated GIFs: video (N, C, T, H, W)
    ds = load_data("molecules", options={"max_molecules": 50})  # conformers (N, 3, A) + graphs (`molecules`)
    ds = load_data("spoken-digits")           # 1-s eSpeak NG digits (N, 1, 8000) at ds.rate = 8000 (`speech`)
    ds.x        # float32 (N, C, *spatial) in [-1, 1]
    ds.labels   # int64 (N,) or None; ds.class_names, ds.num_classes
    ds.to_uint8(ds.x[:16])  # uint8 (16, *spatial, C) for saving

The rules for each source are in the docstrings of `builtin`, `folder` and `arrays`. Everything is deterministic:
the same input gives the same tensor. Nothing is downloaded and nothing is unpickled.
"""

from __future__ import annotations

from .arrays import load_array
from .builtin import BUILTIN_NAMES, BUILTINS, REGISTRY
from .dataset import CaptionedDataset, DataError, GeneratedDataset, InMemoryDataset, to_uint8
from .folder import IMAGE_EXTENSIONS, load_folder
from .load import DEFAULT_DATA, load_data

__all__ = [
    "BUILTINS",
    "BUILTIN_NAMES",
    "DEFAULT_DATA",
    "DataError",
    "IMAGE_EXTENSIONS",
    "CaptionedDataset",
    "GeneratedDataset",
    "InMemoryDataset",
    "load_array",
    "load_data",
    "load_folder",
    "to_uint8",
]
