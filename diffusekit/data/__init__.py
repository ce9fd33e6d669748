"""Data: built-in data sets, a user's image folder, or arrays -> one `InMemoryDataset` in [-1, 1].

    from diffusekit.data import load_data
    ds = load_data("digits")                  # built-in (see BUILTINS); the default
    ds = load_data("photos/", image_size=32)  # a folder of PNG/JPEG/WebP; sub-folders become classes
    ds = load_data("signals.npz")             # (N, C, *spatial) arrays
    ds = load_data("clips/")                  # a folder of animated GIFs: video (N, C, T, H, W)
    ds.x        # float32 (N, C, *spatial) in [-1, 1]
    ds.labels   # int64 (N,) or None; ds.class_names, ds.num_classes
    ds.to_uint8(ds.x[:16])  # uint8 (16, *spatial, C) for saving

The rules for each source are in the docstrings of `builtin`, `folder` and `arrays`. Everything is deterministic:
the same input gives the same tensor. Nothing is downloaded and nothing is unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

from .arrays import load_array
from .builtin import BUILTIN_NAMES, BUILTINS, REGISTRY
from .dataset import DataError, InMemoryDataset, convert_channels, resize_square, to_uint8
from .folder import IMAGE_EXTENSIONS, load_folder
from .signals import WAV_EXTENSIONS, is_wav_folder, load_signals
from .video import is_clip_folder, load_clip_folder

DEFAULT_DATA = "digits"  # embedded, 1,797 real images, loads in about a second


def load_data(spec: str | os.PathLike = DEFAULT_DATA, image_size: int | None = None,
              channels: int | None = None) -> InMemoryDataset:
    """Load a data set by built-in name, folder path, or .npy/.npz path.

    A bare name that is a built-in (`BUILTIN_NAMES`) wins over a folder of that name; write "./digits" for the
    folder. `image_size` resizes 2-D images to image_size x image_size (shorter side, then centre crop);
    `channels` (1 or 3) converts between grayscale and RGB. For a folder both default to values chosen from
    the images (see `folder`); for built-ins and arrays the default keeps the data as stored.
    Raises DataError (a ValueError) with a message naming the file or folder.
    """
    text = os.fspath(spec)
    if text in REGISTRY:
        ds = REGISTRY[text][1]()
    else:
        path = Path(text).expanduser()
        if path.is_dir() and is_wav_folder(path):  # .wav files and no images: one signal per file
            ds = load_signals(path)
        elif path.is_dir() and is_clip_folder(path):  # animated GIFs and no images: one clip per file
            ds = load_clip_folder(path)
        elif path.is_dir():
            return load_folder(path, image_size, channels)  # sizes and channels are handled while reading
        elif not path.exists():
            raise DataError(f"{text!r} is neither a built-in data set ({_names()}) nor an existing file or folder")
        elif path.suffix.lower() in WAV_EXTENSIONS:
            ds = load_signals(path)  # one WAV cut into windows of 2048 samples
        elif path.suffix.lower() not in (".npy", ".npz"):
            raise DataError(
                f"{path}: unsupported file type {path.suffix or '(none)'!r}; give a folder of images "
                f"({', '.join(IMAGE_EXTENSIONS)}), of .wav files or of GIF clips, a .wav, a .npy/.npz array, or a "
                f"built-in name "
                f"({_names()})"
            )
        else:
            ds = load_array(path)
    x, size_note = resize_square(ds.x, image_size, ds.name)
    x, channel_note = convert_channels(x, channels, ds.name)
    ds.x = x
    ds.notes += [n for n in (size_note, channel_note) if n]
    return ds


def _names() -> str:
    return ", ".join(BUILTIN_NAMES)


__all__ = [
    "BUILTINS",
    "BUILTIN_NAMES",
    "DEFAULT_DATA",
    "DataError",
    "IMAGE_EXTENSIONS",
    "InMemoryDataset",
    "load_array",
    "load_data",
    "load_folder",
    "to_uint8",
]
