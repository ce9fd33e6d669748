"""Reconstruction metrics on (B, C, *spatial) tensors, one value per image: PSNR and SSIM.

Images are in diffusekit's [-1, 1] range, so data_range defaults to 2. SSIM is the Gaussian-window SSIM of Wang et
al. 2004 (sec. III-B: an 11 x 11 circular-symmetric Gaussian of std 1.5, K1 = 0.01, K2 = 0.03), computed over the
'valid' part of the image where the window fits and averaged over channels; this equals scikit-image's
`structural_similarity(a, b, data_range=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`
(tested to 1e-6 when scikit-image is installed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(x: torch.Tensor, ref: torch.Tensor):
    if x.shape != ref.shape:
        raise ValueError(f"images and references differ in shape: {tuple(x.shape)} vs {tuple(ref.shape)}")
    if x.ndim < 3:
        raise ValueError(f"expected (B, C, *spatial), got shape {tuple(x.shape)}")


def mse(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, (B,)."""
    _check_pair(x, ref)
    return (x.double() - ref.double()).pow(2).flatten(1).mean(1)


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, 10 log10(data_range^2 / MSE) in dB, (B,) float64 (inf if equal)."""
    return 10 * torch.log10(data_range**2 / mse(x, ref))


def _gaussian_window(sigma: float, truncate: float, dtype, device) -> torch.Tensor:
    """scipy.ndimage's Gaussian: radius int(truncate * sigma + 0.5), normalized to sum 1."""
    r = int(truncate * sigma + 0.5)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def _filter_valid(t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' correlation of (N, *spatial) with the 1-D window along every spatial dimension."""
    for d in range(1, t.ndim):
        tt = t.movedim(d, -1)
        shape = tt.shape
        out = F.conv1d(tt.reshape(-1, 1, shape[-1]), w.reshape(1, 1, -1))
        t = out.reshape(*shape[:-1], out.shape[-1]).movedim(-1, d)
    return t


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 2.0, sigma: float = 1.5, truncate: float = 3.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004, eq. 13 with Gaussian-weighted statistics), (B,) float64.

    The window's radius is int(truncate * sigma + 0.5) (5 for the defaults: an 11-tap window, as the paper), and
    every spatial side must be at least as long as the window."""
    _check_pair(x, ref)
    B, C, *spatial = x.shape
    w = _gaussian_window(sigma, truncate, torch.float64, x.device)
    if min(spatial) < w.numel():
        raise ValueError(f"SSIM's {w.numel()}-pixel window does not fit images of spatial shape {tuple(spatial)}")
    a = x.detach().double().reshape(B * C, *spatial)
    b = ref.detach().double().reshape(B * C, *spatial)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, w), _filter_valid(b, w)
    var_a = _filter_valid(a * a, w) - mu_a**2
    var_b = _filter_valid(b * b, w) - mu_b**2
    cov = _filter_valid(a * b, w) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.reshape(B, C, -1).mean(dim=(1, 2))


__all__ = ["mse", "psnr", "ssim"]
