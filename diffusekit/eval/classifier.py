"""Small CNN classifiers whose penultimate layer is the feature space for Frechet distance and precision/recall.

Inception-v3 features are the standard for natural images, but on 8x8 or 28x28 digits they mostly measure how
bilinear upsampling looks; a classifier trained on the data set itself sees what matters there (the "LeNet FID" of
many MNIST papers). One classifier ships per labelled built-in data set, in `weights/`:

    <data>.safetensors   float32 weights (no pickle, no code)
    <data>.json          the `ClassifierConfig`, the split rule, the training recipe and command, test accuracy,
                         and the sha256 of the safetensors file

Shipped: see `CLASSIFIERS`. Re-train with `python -m diffusekit.eval.train_classifier --data <name>`.
The held-out split is a rule, not a random draw: image i of `load_data(name)` is held out iff i % 5 == 0 (20%).
`spoken-digits` ships `AudioClassifier` (record arch kind "audio"; `eval.audio` judges with it): trained on the
train voices, its accuracy measured on the test split's held-out voices; `load_classifier` builds whichever network
the record describes.

AudioClassifier: |STFT|^2 with a periodic Hann window of n_fft = 256 (32 ms at 8 kHz), hop 80 (10 ms), centred
frames (101 a second), summed into 40 triangular mel bands (HTK mel scale 2595 log10(1 + f/700), 20 Hz .. 4 kHz,
each triangle peaking at 1), log(power + 1e-6) and a fixed affine (mel_mean, mel_std: the train clips' mean and std,
kept in the config). The front end is part of the module, so it sees exactly the waveform it is given: loudness
counts. Then Conv1d over time with the 40 bands as channels, stages of two 3-tap convs + ReLU and max-pool 2
(101 -> 50 -> 25 frames), the mean and the max over time concatenated, Linear -> ReLU (the features) -> Linear
(10 logits). Pooling over time makes it indifferent to where in the second the word falls.
"""

from __future__ import annotations

import json

import numpy as np
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from ..rundir import sha256_of

WEIGHTS_DIR = Path(__file__).parent / "weights"
CLASSIFIERS = ("digits", "mnist5k")  # image data names with a shipped classifier (`evaluate`'s metrics)
AUDIO_CLASSIFIERS = ("spoken-digits",)  # audio ones (`eval.audio.judge_speech`)
HELDOUT_EVERY = 5  # image i is held out iff i % HELDOUT_EVERY == 0
# the audio front end (see the module docstring): 32-ms windows every 10 ms, 40 mel bands from 20 Hz
N_FFT, HOP, N_MELS, F_MIN = 256, 80, 40, 20.0


def heldout_mask(n: int) -> torch.Tensor:
    """(n,) bool: True for the classifiers' held-out images (i % 5 == 0). Both data sets are ordered by class or
    cycle through the classes, so this split is stratified to within one image per class."""
    return torch.arange(n) % HELDOUT_EVERY == 0


@dataclass
class ClassifierConfig:
    data: str = "digits"
    in_channels: int = 1
    image_size: int = 8
    channels: tuple[int, ...] = (32, 64)  # one stage per entry: two 3x3 convs + ReLU, then 2x2 max-pool
    feature_dim: int = 128  # the penultimate layer: the features
    num_classes: int = 10

    @property
    def flat_dim(self) -> int:
        s = self.image_size
        for _ in self.channels:
            s //= 2  # max-pool floors odd sizes (28 -> 14 -> 7 -> 3)
        return self.channels[-1] * s * s


class FeatureClassifier(nn.Module):
    """conv stages -> flatten -> Linear(feature_dim) -> ReLU (features) -> Linear(num_classes) (logits)."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        self.cfg = cfg
        layers, c_in = [], cfg.in_channels
        for c in cfg.channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU()]
            layers += [nn.MaxPool2d(2)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(cfg.flat_dim, cfg.feature_dim)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W) in [-1, 1] -> (B, feature_dim), non-negative (post-ReLU)
        return F.relu(self.fc(self.body(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes) logits


@dataclass
class AudioClassifierConfig:
    data: str = "spoken-digits"
    kind: str = "audio"  # tells `classifier.load_classifier` which network the record describes
    rate: int = 8000
    length: int = 8000
    n_fft: int = N_FFT
    hop: int = HOP
    n_mels: int = N_MELS
    f_min: float = F_MIN
    mel_mean: float = 0.0  # the fixed affine of the log-mel input: (log mel - mel_mean) / mel_std
    mel_std: float = 1.0
    channels: tuple[int, ...] = (32, 64, 96)  # one stage per entry: two 3-tap convs + ReLU, then max-pool 2
    feature_dim: int = 128
    num_classes: int = 10


def mel_filters(rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters, peak 1, centres equally spaced on the HTK mel scale."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = hz(np.linspace(mel(f_min), mel(f_max), n_mels + 2))  # (n_mels + 2,) Hz
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft  # (F,) Hz
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    w = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return torch.from_numpy(w.astype(np.float32))


class AudioClassifier(nn.Module):
    """log-mel front end -> Conv1d stages -> [mean, max] over time -> Linear -> ReLU (features) -> Linear (logits)."""

    def __init__(self, cfg: AudioClassifierConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        self.register_buffer("mel", mel_filters(cfg.rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.rate / 2),
                             persistent=False)
        layers, c_in = [], cfg.n_mels
        for c in cfg.channels:
            layers += [nn.Conv1d(c_in, c, 3, padding=1), nn.ReLU(), nn.Conv1d(c, c, 3, padding=1), nn.ReLU()]
            layers += [nn.MaxPool1d(2)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(2 * c_in, cfg.feature_dim)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, 1, L) waveform in [-1, 1] -> (B, n_mels, frames) log mel power, fixed-affine normalised
        spec = torch.stft(x.flatten(1), self.cfg.n_fft, self.cfg.hop, window=self.window.to(x.dtype), center=True,
                          return_complex=True).abs() ** 2  # (B, F, frames); centre padding reflects
        m = torch.einsum("mf,bft->bmt", self.mel.to(x.dtype), spec)
        return (torch.log(m + 1e-6) - self.cfg.mel_mean) / self.cfg.mel_std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.log_mel(x))  # (B, C, frames / 2^stages)
        return F.relu(self.fc(torch.cat([h.mean(-1), h.amax(-1)], 1)))  # (B, feature_dim), non-negative

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes) logits


def audio_config_from_arch(arch: dict) -> AudioClassifierConfig:
    return AudioClassifierConfig(**{**arch, "channels": tuple(arch["channels"])})


@dataclass
class LoadedClassifier:
    """A shipped classifier with its JSON record (split, recipe, accuracy, sha256)."""

    model: nn.Module  # a FeatureClassifier, or an eval.audio.AudioClassifier for audio data
    record: dict = field(default_factory=dict)

    @property
    def cfg(self):
        return self.model.cfg

    @property
    def name(self) -> str:
        return f"classifier-{self.cfg.data}-{self.record.get('sha256', 'unknown')[:10]}"


def weights_paths(data: str, weights_dir: Path | str = WEIGHTS_DIR) -> tuple[Path, Path]:
    return Path(weights_dir) / f"{data}.safetensors", Path(weights_dir) / f"{data}.json"


def config_from_record(record: dict) -> ClassifierConfig:
    arch = dict(record["arch"])
    arch["channels"] = tuple(arch["channels"])
    return ClassifierConfig(**arch)


def load_classifier(data: str, weights_dir: Path | str = WEIGHTS_DIR) -> LoadedClassifier:
    """The shipped classifier for `data`, in eval mode on the CPU. Reads safetensors + JSON only (never unpickles)."""
    st_path, json_path = weights_paths(data, weights_dir)
    if not st_path.is_file() or not json_path.is_file():
        have = sorted(p.stem for p in Path(weights_dir).glob("*.safetensors"))
        raise ValueError(
            f"no feature classifier for data {data!r} in {weights_dir}; classifiers ship for: {', '.join(have)}. "
            "Other data sets can use Inception features (inception=True) and pixel-space memorisation."
        )
    record = json.loads(json_path.read_text())
    if record["arch"].get("kind") == "audio":
        model = AudioClassifier(audio_config_from_arch(record["arch"]))
    else:
        model = FeatureClassifier(config_from_record(record))
    model.load_state_dict(load_file(st_path))  # strict: a mismatch between JSON and weights is an error
    return LoadedClassifier(model.eval().requires_grad_(False), record)


def file_sha256(path: Path | str) -> str:
    return sha256_of(Path(path))  # the one file hash of the project (packed models' cards use it too)


def config_dict(cfg: ClassifierConfig) -> dict:
    d = asdict(cfg)
    d["channels"] = list(d["channels"])
    return d


@torch.no_grad()
def classifier_outputs(
    clf: LoadedClassifier | FeatureClassifier, x: torch.Tensor, batch_size: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, feature_dim), logits (N, num_classes)) in float32, batched."""
    model = clf.model if isinstance(clf, LoadedClassifier) else clf
    feats, logits = [], []
    for i in range(0, x.shape[0], batch_size):
        f = model.features(x[i : i + batch_size].float())
        feats.append(f)
        logits.append(model.head(f))
    return torch.cat(feats), torch.cat(logits)
