"""1-D signals (N, C, L) in [-1, 1]: `waves` (procedural tones), `mnist1d`, and a user's WAV or .npy files.

    from diffusekit.data.signals import make_waves, load_mnist1d, load_signals
    ds = make_waves(5000, seed=0)      # GeneratedDataset: x (5000, 1, 2048), ds.rate == 16000, ds.params
    ds = load_mnist1d()                # x (4000, 1, 40), labels 0..9
    ds = load_signals("clips/")        # every .wav under clips/, one example each (all the same length)
    ds = load_signals("talk.wav", length=2048)  # one long WAV cut into windows of 2048 samples
    ds = load_signals("signals.npy")   # (N, C, L) through `load_array` and its scaling rule

waves (procedural, numpy default_rng(seed): the same arguments give the same tensor). Each signal is
    x(t) = peak * s(t) / max|s|,  s(t) = env(t) * sum_i a_i sin(2 pi f_i t + phi_i),  t = n / rate, n < length
    components   K uniform in {1, 2, 3}; labels = K - 1 (class names "1 tone", "2 tones", "3 tones")
    frequencies  f_i log-uniform in [50, 2000] Hz (even coverage per octave, as hearing and music are laid out)
    amplitudes   a_1 = 1, a_i uniform in [0.1, 0.6] for i > 1: the first tone is always the loudest (by a factor
                 >= 1.67), so the dominant frequency is well defined and recoverable from an FFT peak
    phases       phi_i uniform in [0, 2 pi)
    envelope     linear attack over A ~ uniform [1, 20] ms, then exponential decay exp(-(t - A) / tau) with tau
                 log-uniform in [20, 200] ms (a plucked or struck note; 2,048 samples at 16 kHz are 128 ms)
    peak         the signal's max |x|, uniform in [0.3, 0.95]: loudness varies, and nothing clips
    `ds.params` holds, per signal: "dominant_freq" (N,) = f_1 in Hz, "freqs", "amps", "phases" (N, 3) with zeros
    for missing components ("amps" are the a_i after the peak scaling, so they are in x's units), "n_tones" (N,),
    "attack", "decay" (N,) in seconds, "peak" (N,) (= x.abs().amax(-1) exactly, up to float32 rounding).

mnist1d (Greydanus 2020, the `mnist1d` package, built offline by `make_dataset(get_dataset_args())` with the
    package's defaults: 5,000 signals of length 40, seed 42, standardised to mean 0 and std 1 over the whole
    set, split 4,000 train / 1,000 test). Scaled x = s / max|s| with the max over all 5,000 signals (about 5.48
    for the defaults, recorded in notes and params["scale"]), so 0 stays 0 and both splits share one scale;
    std is then about 0.18. The package seeds numpy's and Python's global RNGs; their states are restored after.
    Its `__init__` imports matplotlib for a plot helper: when matplotlib is missing it is replaced by a stub
    for the duration of the import, so matplotlib is not needed (install: MNIST1D_INSTALL).

User files (`load_signals`):
    .npy / .npz  through `load_array` (its scaling rule), and the array must be (N, C, L).
    one .wav     cut into windows of `length` samples (default 2048) every `hop` samples (default `length`: no
                 overlap); a tail shorter than `length` is dropped (noted). Shorter than one window: DataError.
    a folder     every .wav under it (any depth, sorted, hidden files ignored), one example each. Sub-folders
                 become classes as for image folders (>= 2 first-level sub-folders, every file inside one).
                 All files must share the sample rate and channel count (no resampling; `channels=1` averages
                 stereo to mono, `channels=2` repeats mono). Lengths must agree, unless `fit` says otherwise:
                 fit="error" (default) names the lengths found; "crop" cuts every clip to the shortest (keeping
                 the start); "pad" pads every clip with zeros (silence) at the end to the longest.
    WAV samples are scaled as `read_wav` does (v / 2^(bits-1)), never normalised. Silent clips (all samples 0)
    are kept and counted in the notes; a folder of nothing but silence is a DataError. A bad WAV is an error naming
    the file (see `diffusekit.data.wav`), also inside a folder: a folder's WAVs are meant to be used, not skipped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import sys
import types
from pathlib import Path

import numpy as np
import torch

from .arrays import load_array
from .dataset import DataError, GeneratedDataset, InMemoryDataset
from .files import folder_labels, list_files, tally
from .folder import IMAGE_EXTENSIONS
from .wav import read_wav

MNIST1D_INSTALL = "pip install --no-deps mnist1d==0.0.2.post1"  # needs numpy, scipy and requests (all present)
WAV_EXTENSIONS = (".wav", ".wave")
DEFAULT_WINDOW = 2048  # samples per example cut from one long WAV: the `waves` length, 128 ms at 16 kHz

WAVES_N = 5000  # enough distinct tones to learn the distribution; 41 MB as float32
WAVES_LENGTH = 2048  # 2^11: divisible by every UNet downsampling factor
WAVES_RATE = 16_000  # Hz: speech-like; 2 kHz, the highest tone, still has 8 samples per period
WAVES_FREQ = (50.0, 2000.0)  # Hz, log-uniform
WAVES_MAX_TONES = 3
WAVES_OTHER_AMP = (0.1, 0.6)  # relative to the first (dominant) tone's 1
WAVES_ATTACK = (0.001, 0.020)  # s, uniform
WAVES_DECAY = (0.020, 0.200)  # s, log-uniform
WAVES_PEAK = (0.3, 0.95)  # max |x|, uniform


# ---- waves ----------------------------------------------------------------------------------------------------


def make_waves(n: int = WAVES_N, seed: int = 0, *, length: int = WAVES_LENGTH, rate: int = WAVES_RATE,
               freq_range: tuple[float, float] = WAVES_FREQ) -> GeneratedDataset:
    """Procedural tones (N, 1, length) in [-1, 1] with their generating parameters (see the module docstring)."""
    if n < 1 or length < 2 or rate < 1:
        raise DataError(f"waves: need n >= 1, length >= 2, rate >= 1; got n={n}, length={length}, rate={rate}")
    lo, hi = freq_range
    if not 0 < lo <= hi <= rate / 2:
        raise DataError(f"waves: freq_range {freq_range} must lie in (0, rate/2 = {rate / 2}] Hz")
    rng = np.random.default_rng(seed)
    k = WAVES_MAX_TONES
    n_tones = rng.integers(1, k + 1, size=n)  # (N,)
    freqs = np.exp(rng.uniform(np.log(lo), np.log(hi), size=(n, k)))  # (N, K)
    amps = np.concatenate([np.ones((n, 1)), rng.uniform(*WAVES_OTHER_AMP, size=(n, k - 1))], axis=1)
    phases = rng.uniform(0, 2 * np.pi, size=(n, k))
    attack = rng.uniform(*WAVES_ATTACK, size=n)
    decay = np.exp(rng.uniform(*np.log(WAVES_DECAY), size=n))
    peak = rng.uniform(*WAVES_PEAK, size=n)
    present = np.arange(k)[None] < n_tones[:, None]  # (N, K): tones beyond K_n are absent
    freqs, amps, phases = freqs * present, amps * present, phases * present

    t = np.arange(length) / rate  # (L,) seconds
    env = np.where(t[None] < attack[:, None], t[None] / attack[:, None],
                   np.exp(-(t[None] - attack[:, None]) / decay[:, None]))  # (N, L)
    s = np.zeros((n, length))
    for i in range(k):  # K small: a loop over tones keeps memory at (N, L) rather than (N, K, L)
        s += amps[:, i, None] * np.sin(2 * np.pi * freqs[:, i, None] * t[None] + phases[:, i, None])
    s *= env
    scale = peak / np.abs(s).max(axis=1)  # (N,): every signal gets exactly its drawn peak
    x = s * scale[:, None]

    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    params = {
        "dominant_freq": f32(freqs[:, 0]),
        "freqs": f32(freqs),
        "amps": f32(amps * scale[:, None]),
        "phases": f32(phases),
        "n_tones": torch.from_numpy(n_tones.astype(np.int64)),
        "attack": f32(attack),
        "decay": f32(decay),
        "peak": f32(peak),
    }
    return GeneratedDataset(
        f32(x[:, None]), torch.from_numpy(n_tones - 1), ["1 tone", "2 tones", "3 tones"], name="waves",
        source=f"diffusekit.data.signals.make_waves(n={n}, seed={seed}, length={length}, rate={rate})",
        notes=[f"procedural tones {lo:g}-{hi:g} Hz at {rate} Hz, peak |x| in {list(WAVES_PEAK)}"],
        params=params, rate=rate,
    )


def load_waves() -> GeneratedDataset:
    """The built-in `waves`: make_waves() with its defaults (5,000 x 1 x 2,048 at 16 kHz, seed 0)."""
    return make_waves()


# ---- mnist1d --------------------------------------------------------------------------------------------------


def load_mnist1d(split: str = "train", seed: int = 42) -> GeneratedDataset:
    """MNIST-1D (see the module docstring): split "train" (4,000), "test" (1,000) or "all" (5,000), labels 0..9."""
    if split not in ("train", "test", "all"):
        raise DataError(f"mnist1d: split must be 'train', 'test' or 'all'; got {split!r}")
    make_dataset, get_dataset_args, version = _import_mnist1d()
    args = get_dataset_args()
    args.seed = seed
    with _global_rng_restored():
        d = make_dataset(args)
    s = np.concatenate([d["x"], d["x_test"]])  # (5000, 40) float64, mean 0, std 1
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    scale = float(np.abs(s).max())
    n_train = len(d["y"])
    keep = {"train": slice(0, n_train), "test": slice(n_train, None), "all": slice(None)}[split]
    x = torch.from_numpy((s[keep] / scale).astype(np.float32)).unsqueeze(1)  # (N, 1, 40)
    return GeneratedDataset(
        x, torch.from_numpy(y[keep]), [str(i) for i in range(10)], name="mnist1d",
        source=f"mnist1d {version}: make_dataset(get_dataset_args()) with seed {seed}, split {split!r}",
        notes=[f"x = s / {scale:.6g} (max |s| over both splits; s has mean 0, std 1)"],
        params={"scale": scale},
    )


def _import_mnist1d():
    if importlib.util.find_spec("mnist1d") is None:
        raise DataError(f"the built-in data set 'mnist1d' needs the mnist1d package: {MNIST1D_INSTALL}")
    with _matplotlib_stub():
        from mnist1d.data import get_dataset_args, make_dataset  # make_dataset builds offline; get_dataset downloads
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("mnist1d")
    except PackageNotFoundError:
        v = "(version unknown)"
    return make_dataset, get_dataset_args, v


@contextlib.contextmanager
def _matplotlib_stub():
    """mnist1d's __init__ imports matplotlib.pyplot for a plot helper we never call. If matplotlib is not
    installed, stand a stub in for it during the import (any use raises ImportError), then take it away again."""
    if importlib.util.find_spec("matplotlib") is not None or "mnist1d" in sys.modules:
        yield
        return

    def missing(name):
        raise ImportError(f"matplotlib is not installed (stub used while importing mnist1d): {name}")

    stubs = {n: types.ModuleType(n) for n in ("matplotlib", "matplotlib.pyplot")}
    for m in stubs.values():
        m.__getattr__ = missing
    stubs["matplotlib"].__dict__["pyplot"] = stubs["matplotlib.pyplot"]
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for n, m in stubs.items():
            if sys.modules.get(n) is m:
                del sys.modules[n]


@contextlib.contextmanager
def _global_rng_restored():
    """mnist1d seeds numpy's and Python's global RNGs; put them back so loading data changes no one's stream."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


# ---- a user's files -------------------------------------------------------------------------------------------


def load_signals(path: str | os.PathLike, length: int | None = None, hop: int | None = None,
                 fit: str = "error", channels: int | None = None) -> GeneratedDataset | InMemoryDataset:
    """A .wav file (cut into windows), a folder of WAVs (one example each) or a .npy/.npz (N, C, L) array.

    length/hop apply to one WAV file; fit and channels to a folder (see the module docstring).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return load_wav_folder(path, fit=fit, channels=channels)
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in WAV_EXTENSIONS:
        return load_wav_windows(path, length or DEFAULT_WINDOW, hop, channels=channels)
    if suffix in (".npy", ".npz"):
        ds = load_array(path)
        if ds.x.ndim != 3:
            raise DataError(f"{path}: signals must be (N, C, L); got shape {tuple(ds.x.shape)}")
        return ds
    raise DataError(f"{path}: unsupported signal file {suffix or '(no suffix)'!r}; give a .wav, a folder of "
                    f".wav files, or a .npy/.npz array (N, C, L)")


def is_wav_folder(folder: str | os.PathLike) -> bool:
    """True when `folder` holds .wav files and no images: what `load_data` should send to `load_wav_folder`."""
    files = list_files(Path(folder))
    return any(p.suffix.lower() in WAV_EXTENSIONS for p in files) and not any(
        p.suffix.lower() in IMAGE_EXTENSIONS for p in files
    )


def load_wav_windows(path: str | os.PathLike, length: int = DEFAULT_WINDOW, hop: int | None = None,
                     channels: int | None = None) -> GeneratedDataset:
    """One WAV cut into windows x[i] = wav[:, i*hop : i*hop + length]; a shorter tail is dropped."""
    path = Path(path)
    hop = length if hop is None else hop
    if not (isinstance(length, int) and length >= 1 and isinstance(hop, int) and hop >= 1):
        raise DataError(f"{path}: length and hop must be positive ints; got length={length!r}, hop={hop!r}")
    wav, rate = read_wav(path)
    wav = _convert_channels(wav, channels, path)
    total = wav.shape[1]
    if total < length:
        raise DataError(f"{path}: {total} samples ({total / rate:.3g} s) is shorter than one window of {length}")
    count = (total - length) // hop + 1
    idx = np.arange(count)[:, None] * hop + np.arange(length)[None]  # (N, length) sample indices
    x = torch.from_numpy(np.ascontiguousarray(wav[:, idx].transpose(1, 0, 2)))  # (C, N, L) -> (N, C, L)
    tail = total - ((count - 1) * hop + length)
    notes = [f"cut into {count} windows of {length} samples every {hop}" + (f"; last {tail} samples dropped"
                                                                            if tail else "")]
    return GeneratedDataset(x, None, None, name=path.stem, source=str(path), notes=notes,
                            params={"start": torch.arange(count, dtype=torch.int64) * hop}, rate=rate)


def load_wav_folder(folder: str | os.PathLike, fit: str = "error",
                    channels: int | None = None) -> GeneratedDataset:
    """Every .wav under `folder`, one example each (see the module docstring for labels, rates, lengths)."""
    folder = Path(folder)
    if fit not in ("error", "crop", "pad"):
        raise DataError(f"{folder}: fit must be 'error', 'crop' or 'pad'; got {fit!r}")
    files = [p for p in list_files(folder) if p.suffix.lower() in WAV_EXTENSIONS]
    if not files:
        raise DataError(f"folder {folder} has no .wav files")
    clips, rates = [], []
    for p in files:
        wav, rate = read_wav(p)
        if wav.shape[1] == 0:
            raise DataError(f"{p}: the WAV has no samples")
        clips.append(wav)
        rates.append(rate)
    rel = lambda p: p.relative_to(folder).as_posix()  # noqa: E731
    if len(set(rates)) > 1:
        raise DataError(f"{folder}: WAVs have different sample rates ({tally(rates, files, rel, 'Hz')}); "
                        f"resample them to one rate first")
    counts = [c.shape[0] for c in clips]
    if channels is None and len(set(counts)) > 1:
        raise DataError(f"{folder}: WAVs have different channel counts ({tally(counts, files, rel, 'ch')}); "
                        f"pass channels=1 (mix to mono) or channels=2")
    clips = [_convert_channels(c, channels, p) for c, p in zip(clips, files)]
    lengths = [c.shape[1] for c in clips]
    notes = []
    if len(set(lengths)) > 1:
        if fit == "error":
            raise DataError(f"{folder}: WAVs have different lengths ({tally(lengths, files, rel, 'samples')}); "
                            f"pass fit='crop' (cut to the shortest) or fit='pad' (zero-pad to the longest)")
        target = min(lengths) if fit == "crop" else max(lengths)
        changed = sum(n != target for n in lengths)
        clips = [c[:, :target] if fit == "crop" else np.pad(c, ((0, 0), (0, target - c.shape[1]))) for c in clips]
        notes.append(f"{changed} clips {'cropped' if fit == 'crop' else 'zero-padded'} to {target} samples")
    silent = [rel(p) for p, c in zip(files, clips) if not np.any(c)]
    if len(silent) == len(clips):
        raise DataError(f"{folder}: every WAV is silence (all samples 0): nothing to learn from")
    if silent:  # kept (silence may be meant: a class of its own), but said
        notes.append(f"{len(silent)} clips are silence (all samples 0): {', '.join(silent[:5])}"
                     + (" ..." if len(silent) > 5 else ""))
    x = torch.from_numpy(np.stack(clips))  # (N, C, L)
    labels, class_names = folder_labels(folder, files, files)
    return GeneratedDataset(x, labels, class_names, name=folder.name or str(folder), source=str(folder),
                            notes=notes, params={"length": torch.tensor(lengths, dtype=torch.int64)},
                            rate=rates[0])


def _convert_channels(wav: np.ndarray, channels: int | None, path: Path) -> np.ndarray:
    c = wav.shape[0]
    if channels is None or channels == c:
        return wav
    if channels == 1:
        return wav.mean(0, keepdims=True)  # a mix of channels stays within [-1, 1]
    if channels == 2 and c == 1:
        return np.repeat(wav, 2, axis=0)
    raise DataError(f"{path}: cannot convert {c} channels to {channels}; channels=1 mixes to mono, "
                    f"channels=2 repeats mono")


__all__ = [
    "is_wav_folder",
    "load_mnist1d",
    "load_signals",
    "load_wav_folder",
    "load_wav_windows",
    "load_waves",
    "make_waves",
]
