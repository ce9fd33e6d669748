"""`grf`: 2-D Gaussian random fields with a power-law spectrum, whose statistics are known exactly.

    from diffusekit.data.fields import make_grf, grf_power
    ds = make_grf(5000, seed=0)         # GeneratedDataset: x (5000, 1, 32, 32), params alpha, std, size
    P = grf_power(32, alpha=3.0)        # (32, 32) the exact expected P_hat on the fft2 grid (physics.py units)

How a field is made (numpy default_rng(seed); the same arguments give the same tensor):
    w  = white noise, S x S, independent N(0, 1) pixels
    f  = irfft2(rfft2(w) * sqrt(P_k))  with  P_k = c |k|^-alpha for k != 0 and P_0 = 0
    |k| in integer cycles per box (numpy fftfreq(S) * S, see `physics.wavenumbers`); the field is periodic.
    c  = std^2 S^2 / sum_{k != 0} |k|^-alpha, so every pixel is exactly N(0, std^2) over the ensemble
         (var f_x = sum_k P_k / S^2 by Parseval), and every field has spatial mean exactly 0 (P_0 = 0).
So x is a stationary Gaussian field: E[P_hat_k] = P_k, the per-band scatter is `physics.gaussian_binned_spectrum`.
Normalisation: analytic, over the ensemble, never per field (dividing each field by its own std would make it
non-Gaussian and its spectrum no longer exact). x is the unit-variance field times std = 0.25 (GRF_STD): the
package's data range is [-1, 1], and 4 standard deviations reach it, so |x| > 1 only in the Gaussian tail
(probability 6e-5 per pixel). Values are NOT clipped, which would bias the statistics; divide by params["std"]
to get the unit-variance field back.
alpha = 3 (the default) gives smooth, cloud-like fields whose power per octave falls as k^(2 - alpha) = 1/k.
"""

from __future__ import annotations

import numpy as np
import torch

from .dataset import DataError, GeneratedDataset

GRF_N = 5000  # 20 MB at 32x32 float32; measures every band's mean power to better than 1 % (1 sigma)
GRF_SIZE = 32
GRF_ALPHA = 3.0
GRF_STD = 0.25  # 4 standard deviations = the edge of the [-1, 1] data range


def wavenumbers(size: int) -> np.ndarray:
    """|k| on the fft2 grid of an S x S field, (S, S), in cycles per box."""
    k = np.fft.fftfreq(size) * size
    return np.hypot(k[:, None], k[None, :])


def grf_power(size: int = GRF_SIZE, alpha: float = GRF_ALPHA, std: float = GRF_STD) -> np.ndarray:
    """The exact per-mode spectrum P_k (S, S) on the fft2 grid: c |k|^-alpha, P_0 = 0, normalised so that
    sum_k P_k / S^2 = std^2 (the pixel variance)."""
    k = wavenumbers(size)
    p = np.zeros_like(k)
    p[k > 0] = k[k > 0] ** -float(alpha)
    return p * (std**2 * size**2 / p.sum())


def make_grf(n: int = GRF_N, seed: int = 0, *, size: int = GRF_SIZE, alpha: float = GRF_ALPHA,
             std: float = GRF_STD) -> GeneratedDataset:
    """n Gaussian random fields (n, 1, size, size) with P(k) proportional to k^-alpha (module docstring)."""
    if n < 1 or size < 4 or size % 2 or std <= 0:
        raise DataError(f"grf: need n >= 1, an even size >= 4 and std > 0; got n={n}, size={size}, std={std}")
    rng = np.random.default_rng(seed)
    amp = np.sqrt(grf_power(size, alpha, std))[:, : size // 2 + 1]  # the rfft2 half of the symmetric filter
    x = np.empty((n, size, size), np.float32)
    for i in range(0, n, 1000):  # chunks bound the float64 temporaries
        w = rng.standard_normal((min(1000, n - i), size, size))
        x[i : i + len(w)] = np.fft.irfft2(np.fft.rfft2(w) * amp, s=(size, size))
    return GeneratedDataset(
        torch.from_numpy(x).unsqueeze(1), None, None, name="grf",
        source=f"diffusekit.data.fields.make_grf(n={n}, seed={seed}, size={size}, alpha={alpha}, std={std})",
        notes=[f"Gaussian random field, P(k) ~ k^-{alpha:g}, pixel std {std:g} (not clipped)"],
        params={"alpha": float(alpha), "std": float(std), "size": int(size)},
    )


def load_grf() -> GeneratedDataset:
    """The built-in `grf`: make_grf() with its defaults (5,000 x 1 x 32 x 32, alpha 3, std 0.25, seed 0)."""
    return make_grf()


__all__ = ["wavenumbers", "GRF_ALPHA", "GRF_SIZE", "GRF_STD", "grf_power", "load_grf", "make_grf"]
