"""Frechet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, "GANs trained by a two
time-scale update rule...", eq. 6; FID when the features are Inception-v3 pool3):

    FD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

tr((S1 S2)^(1/2)) is computed without a non-symmetric matrix square root: S1 S2 is similar to the symmetric PSD
matrix M = S1^(1/2) S2 S1^(1/2), so tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(M)). Two symmetric eigendecompositions
in float64, eigenvalues clipped at 0 (they are >= 0 in exact arithmetic; rounding makes tiny ones negative). This
is real by construction, so there is no imaginary part to discard, and it is stable for singular covariances
(n < feature dim), where `scipy.linalg.sqrtm` needs the eps-on-the-diagonal retry of the reference code.

FD is biased upwards at small n (the bias falls roughly like 1/n), so it is only comparable at equal n: report the
real-vs-real floor at the same n beside it.
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) of features (N, D) in float64; sigma is the unbiased sample covariance."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2; got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """FD between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape}, {mu2.shape}; sigma {s1.shape}, {s2.shape}")
    s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2  # symmetrise away rounding from accumulation
    r1 = _sqrt_psd(s1)
    m = r1 @ s2 @ r1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    fd = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    return float(max(fd, 0.0))  # >= 0 in exact arithmetic; clip rounding at identical inputs


def frechet_distance_from_features(feats1, feats2) -> float:
    return frechet_distance(*gaussian_stats(feats1), *gaussian_stats(feats2))
