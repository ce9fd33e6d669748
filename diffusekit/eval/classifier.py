"""Small CNN classifiers whose penultimate layer is the feature space for Frechet distance and precision/recall.

Inception-v3 features are the standard for natural images, but on 8x8 or 28x28 digits they mostly measure how
bilinear upsampling looks; a classifier trained on the data set itself sees what matters there (the "LeNet FID" of
many MNIST papers). One classifier ships per labelled built-in data set, in `weights/`:

    <data>.safetensors   float32 weights (no pickle, no code)
    <data>.json          the `ClassifierConfig`, the split rule, the training recipe and command, test accuracy,
                         and the sha256 of the safetensors file

Shipped: see `CLASSIFIERS`. Re-train with `python -m diffusekit.eval.train_classifier --data <name>`.
The held-out split is a rule, not a random draw: image i of `load_data(name)` is held out iff i % 5 == 0 (20%).
`spoken-digits` ships a log-mel audio classifier (`eval.audio`, record arch kind "audio"): trained on the train
voices, its accuracy measured on the test split's held-out voices; `load_classifier` builds whichever the record
describes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

WEIGHTS_DIR = Path(__file__).parent / "weights"
CLASSIFIERS = ("digits", "mnist5k")  # image data names with a shipped classifier (`evaluate`'s metrics)
AUDIO_CLASSIFIERS = ("spoken-digits",)  # audio ones (`eval.audio.judge_speech`)
HELDOUT_EVERY = 5  # image i is held out iff i % HELDOUT_EVERY == 0


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
        from .audio import AudioClassifier, audio_config_from_arch

        model = AudioClassifier(audio_config_from_arch(record["arch"]))
    else:
        model = FeatureClassifier(config_from_record(record))
    model.load_state_dict(load_file(st_path))  # strict: a mismatch between JSON and weights is an error
    return LoadedClassifier(model.eval().requires_grad_(False), record)


def file_sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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
