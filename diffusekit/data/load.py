"""`load_data`: one entry point from a name or path to an `InMemoryDataset` (see the package docstring)."""

from __future__ import annotations

import os
from pathlib import Path

from .arrays import load_array
from .builtin import BUILTIN_NAMES, OPTIONS, REGISTRY
from .dataset import DataError, InMemoryDataset, convert_channels, resize_square
from .folder import IMAGE_EXTENSIONS, load_folder
from .points import CLOUD_EXTENSIONS, is_cloud_folder, load_cloud_folder
from .signals import WAV_EXTENSIONS, is_wav_folder, load_signals
from .video import is_clip_folder, load_clip_folder

DEFAULT_DATA = "digits"  # embedded, 1,797 real images, loads in about a second


def load_data(spec: str | os.PathLike = DEFAULT_DATA, image_size: int | None = None,
              channels: int | None = None, options: dict | None = None) -> InMemoryDataset:
    """Load a data set by built-in name, folder path, or .npy/.npz path.

    A bare name that is a built-in (`BUILTIN_NAMES`) wins over a folder of that name; write "./digits" for the
    folder. `image_size` resizes 2-D images to image_size x image_size (shorter side, then centre crop);
    `channels` (1 or 3) converts between grayscale and RGB. For a folder both default to values chosen from
    the images (see `folder`); for built-ins and arrays the default keeps the data as stored.
    `options`: settings of a built-in that takes some (`builtin.OPTIONS`: the molecules' recipe).
    Raises DataError (a ValueError) with a message naming the file or folder.
    """
    text = os.fspath(spec)
    if options and text not in OPTIONS:
        raise DataError(f"data options {sorted(options)} given, but {text!r} takes none (only "
                        f"{', '.join(OPTIONS)} do)")
    if text in REGISTRY:
        ds = REGISTRY[text][1](**(options or {}))
    else:
        path = Path(text).expanduser()
        if path.is_dir() and is_wav_folder(path):  # .wav files and no images: one signal per file
            ds = load_signals(path)
        elif path.is_dir() and is_clip_folder(path):  # animated GIFs and no images: one clip per file
            ds = load_clip_folder(path)
        elif path.is_dir() and is_cloud_folder(path):  # .ply / .npy / .xyz and no images: one point cloud each
            ds = load_cloud_folder(path)
        elif path.is_dir():
            return load_folder(path, image_size, channels)  # sizes and channels are handled while reading
        elif not path.exists():
            raise DataError(f"{text!r} is neither a built-in data set ({_names()}) nor an existing file or folder")
        elif path.suffix.lower() in WAV_EXTENSIONS:
            ds = load_signals(path)  # one WAV cut into windows of 2048 samples
        elif path.suffix.lower() not in (".npy", ".npz"):
            raise DataError(
                f"{path}: unsupported file type {path.suffix or '(none)'!r}; give a folder of images "
                f"({', '.join(IMAGE_EXTENSIONS)}), of .wav files, of GIF clips or of point clouds "
                f"({', '.join(CLOUD_EXTENSIONS)}), a .wav, a .npy/.npz array, or a "
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


__all__ = ["DEFAULT_DATA", "load_data"]
