"""`moving-digits`: short clips (N, 1, T, 32, 32) of MNIST digits gliding and bouncing off the walls.

    from diffusekit.data.video import make_moving_digits
    ds = make_moving_digits(2000, seed=0)     # GeneratedDataset: x (2000, 1, 8, 32, 32) in [-1, 1]
    ds = make_moving_digits(500, frames=16, num_digits=(1, 1))   # one digit per clip: labels = its class

Made offline from the 5,000 `mnist5k` digits (load_data("mnist5k"), or `digits=` any (M, 1, h, w) data set in
[-1, 1] with labels), with numpy default_rng(seed): the same arguments give the same tensor. For each clip:
    digits      K uniform in num_digits (default 1 or 2), each a uniformly drawn source image, shrunk to
                16 x 16 (DIGIT_SIZE; bilinear with antialiasing) so it has room to move in a 32 x 32 frame
    start       top-left corner uniform in [0, 32 - 16] in both axes (real-valued)
    velocity    constant: speed uniform in [1, 3] px per frame, direction uniform in [0, 2 pi)
    bouncing    a coordinate leaving [0, 16] is reflected back (the closed form p -> R - |R - (p mod 2R)|, R = 16),
                which is the same as reversing that velocity component at the wall
    drawing     each digit at its position rounded to whole pixels (so its pixels are copied, never blurred);
                digits combine by pixel-wise max of intensity (x + 1) / 2, background black (x = -1)
    labels      the digit class when every clip has one digit (num_digits=(1, 1)), else None; the classes of
                all digits are in params["digits"] either way
params (per clip): "n_digits" (N,), "digits" (N, 2) classes and "source_index" (N, 2) rows of the source
(-1 where a clip has fewer digits), "position" (N, T, 2, 2) top-left (y, x) in px before rounding (0 for a
missing digit), "velocity" (N, 2, 2) (y, x) px per frame at the start.
T defaults to 8 frames (FRAMES): a 3-D UNet on 8 x 32 x 32 trains on a 2-core CPU; 8..16 keeps the motion
readable in a GIF. At the default speeds a digit crosses the frame in 5..16 frames.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import DataError, GeneratedDataset, InMemoryDataset
from .builtin import load_mnist5k
from .files import check_file, folder_labels, list_files, memory_budget, tally
from .folder import IMAGE_EXTENSIONS, check_pixels
from .signals import WAV_EXTENSIONS

CLIP_EXTENSIONS = (".gif",)

VIDEO_N = 2000  # 66 MB at 8 x 32 x 32 float32; enough distinct clips for a CPU-sized 3-D UNet
FRAMES = 8
FRAME_SIZE = 32
DIGIT_SIZE = 16
SPEED = (1.0, 3.0)  # px per frame
MAX_DIGITS = 2


def make_moving_digits(n: int = VIDEO_N, seed: int = 0, *, frames: int = FRAMES, size: int = FRAME_SIZE,
                       digit_size: int = DIGIT_SIZE, num_digits: tuple[int, int] = (1, 2),
                       speed: tuple[float, float] = SPEED, digits: InMemoryDataset | None = None) -> GeneratedDataset:
    """Clips (n, 1, frames, size, size) of 1-2 bouncing digits (see the module docstring)."""
    lo, hi = num_digits
    if not (n >= 1 and frames >= 2 and 1 <= lo <= hi <= MAX_DIGITS and 1 <= digit_size < size):
        raise DataError(f"moving-digits: need n >= 1, frames >= 2, 1 <= num_digits <= {MAX_DIGITS}, "
                        f"digit_size < size; got n={n}, frames={frames}, num_digits={num_digits}, "
                        f"digit_size={digit_size}, size={size}")
    src = digits if digits is not None else load_mnist5k()
    if src.x.ndim != 4 or src.x.shape[1] != 1 or src.labels is None:
        raise DataError(f"moving-digits: digits must be labelled grayscale images (M, 1, h, w); got {src.describe()}")
    glyphs = F.interpolate((src.x + 1) / 2, size=(digit_size, digit_size), mode="bilinear", antialias=True,
                           align_corners=False).clamp(0, 1)[:, 0].numpy()  # (M, d, d) intensity in [0, 1]

    rng = np.random.default_rng(seed)
    r = size - digit_size  # room to move
    k = rng.integers(lo, hi + 1, size=n)  # (N,)
    index = rng.integers(0, len(glyphs), size=(n, MAX_DIGITS))
    start = rng.uniform(0, r, size=(n, MAX_DIGITS, 2))  # (N, D, 2) (y, x)
    angle = rng.uniform(0, 2 * np.pi, size=(n, MAX_DIGITS))
    v = rng.uniform(*speed, size=(n, MAX_DIGITS))[..., None] * np.stack([np.sin(angle), np.cos(angle)], -1)
    present = np.arange(MAX_DIGITS)[None] < k[:, None]  # (N, D)
    t = np.arange(frames)[None, :, None, None]
    q = np.mod(start[:, None] + v[:, None] * t, 2 * r)  # (N, T, D, 2) unreflected path, folded into [0, 2r)
    pos = r - np.abs(r - q)  # reflected into [0, r]
    pos *= present[:, None, :, None]
    ij = np.rint(pos).astype(np.int64)

    canvas = np.zeros((n, frames, size, size), np.float32)
    for c in range(n):
        for d in range(k[c]):
            g = glyphs[index[c, d]]
            for f in range(frames):
                y, x = ij[c, f, d]
                win = canvas[c, f, y : y + digit_size, x : x + digit_size]
                np.maximum(win, g, out=win)
    classes = src.labels.numpy()[index]
    digit_cls = np.where(present, classes, -1)
    source_index = np.where(present, index, -1)
    labels = torch.from_numpy(digit_cls[:, 0].copy()) if lo == hi == 1 else None
    return GeneratedDataset(
        torch.from_numpy(canvas * 2 - 1).unsqueeze(1), labels, src.class_names if labels is not None else None,
        name="moving-digits",
        source=f"diffusekit.data.video.make_moving_digits(n={n}, seed={seed}, frames={frames}, "
               f"num_digits={tuple(num_digits)}) from {src.name}",
        notes=[f"{lo}-{hi} digits of {digit_size}x{digit_size} px bouncing in {size}x{size}, {frames} frames"],
        params={"n_digits": torch.from_numpy(k.astype(np.int64)), "digits": torch.from_numpy(digit_cls),
                "source_index": torch.from_numpy(source_index), "position": torch.from_numpy(pos.astype(np.float32)),
                "velocity": torch.from_numpy((v * present[..., None]).astype(np.float32))},
    )


def load_moving_digits() -> GeneratedDataset:
    """The built-in `moving-digits`: make_moving_digits() with its defaults (2,000 x 1 x 8 x 32 x 32, seed 0)."""
    return make_moving_digits()


def is_clip_folder(folder: str | os.PathLike) -> bool:
    """True when `folder` holds animated GIFs and no images or WAVs: what `load_data` sends to `load_clip_folder`."""
    suffixes = {p.suffix.lower() for p in list_files(Path(folder))}
    return bool(suffixes & set(CLIP_EXTENSIONS)) and not suffixes & set(IMAGE_EXTENSIONS + WAV_EXTENSIONS)


def load_clip_folder(folder: str | os.PathLike, fit: str = "error") -> GeneratedDataset:
    """Every GIF under `folder`, one clip each: x (N, C, T, H, W) in [-1, 1] (uint8 v -> v / 127.5 - 1), C = 1
    when every frame of every clip is gray, else 3. Labels from one sub-folder per class, as for images.
    All clips need one frame size; for different frame counts fit='crop' keeps the first frames of each up to the
    shortest clip's count, fit='error' (default) refuses and says which files differ."""
    from PIL import Image, ImageSequence

    folder = Path(folder)
    if fit not in ("error", "crop"):
        raise DataError(f"{folder}: fit must be 'error' or 'crop'; got {fit!r}")
    files = [p for p in list_files(folder) if p.suffix.lower() in CLIP_EXTENSIONS]
    if not files:
        raise DataError(f"folder {folder} has no clips ({', '.join(CLIP_EXTENSIONS)} files)")
    clips, held, budget = [], 0, memory_budget()
    for f in files:
        check_file(f)  # a FIFO would block Image.open forever
        try:
            with Image.open(f, formats=("GIF",)) as im:
                check_pixels(f, im.size)
                frames = []
                for fr in ImageSequence.Iterator(im):
                    # ~7x the frames' bytes by the end (stacked, transposed, float32); a GIF of many 1-pixel frames
                    # on a big screen is a bomb that only counting finds: each frame is composited full-screen
                    held += 3 * im.size[0] * im.size[1]
                    if 7 * held > budget:
                        raise DataError(f"{f}: {len(frames) + 1} frames of {im.size[0]} x {im.size[1]} (and the "
                                        f"clips before it) need more memory than this process can have")
                    frames.append(np.asarray(fr.convert("RGB")))  # (H, W, 3)
        except (OSError, EOFError, IndexError, ValueError, SyntaxError, struct.error,
                Image.DecompressionBombError) as e:
            if isinstance(e, DataError):
                raise
            # a truncated GIF can fail deep inside Pillow's decoder with any of these
            raise DataError(f"{f}: not a readable GIF ({type(e).__name__}: {e}); it may be truncated") from e
        if not frames:
            raise DataError(f"{f}: a GIF with no frames")
        if len({fr.shape for fr in frames}) > 1:  # a corrupt frame descriptor can change the size mid-clip
            sizes = sorted({f"{fr.shape[1]}x{fr.shape[0]}" for fr in frames})
            raise DataError(f"{f}: frames of different sizes ({', '.join(sizes)}); the GIF is corrupt")
        clips.append(np.stack(frames))  # (T, H, W, 3)
    rel = lambda p: p.relative_to(folder).as_posix()  # noqa: E731
    sizes = [f"{c.shape[2]}x{c.shape[1]}" for c in clips]
    if len(set(sizes)) > 1:
        raise DataError(f"{folder}: clips have different frame sizes ({tally(sizes, files, rel, 'px')}); resize "
                        f"them to one size first")
    lengths = [len(c) for c in clips]
    notes = []
    if len(set(lengths)) > 1:
        if fit == "error":
            raise DataError(f"{folder}: clips have different lengths ({tally(lengths, files, rel, 'frames')}); "
                            f"pass fit='crop' (keep the first {min(lengths)} frames of each) or cut them to one "
                            f"length first")
        notes.append(f"{sum(n != min(lengths) for n in lengths)} clips cropped to their first {min(lengths)} frames")
        clips = [c[: min(lengths)] for c in clips]
    x = np.stack(clips).transpose(0, 4, 1, 2, 3)  # (N, 3, T, H, W)
    gray = bool((x[:, :1] == x).all())
    x = torch.from_numpy(np.ascontiguousarray(x[:, :1] if gray else x)).float() / 127.5 - 1
    labels, class_names = folder_labels(folder, files, files)
    return GeneratedDataset(x, labels, class_names, name=folder.name or str(folder), source=str(folder),
                            notes=notes + [f"{len(files)} GIF clips, {'gray' if gray else 'RGB'}"])


__all__ = ["CLIP_EXTENSIONS", "FRAMES", "is_clip_folder", "load_clip_folder", "load_moving_digits",
           "make_moving_digits"]
