"""Exact nearest-neighbour distances, chunked so memory stays O(chunk x M) for any N x M, in float64."""

from __future__ import annotations

import numpy as np
import torch


def _as64(a) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    return t.detach().to("cpu", torch.float64).reshape(t.shape[0], -1)


def _sq_dists(a: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, clamped: rounding can make it slightly negative for equal rows
    return ((a * a).sum(1, keepdim=True) + b_sq[None, :] - 2 * a @ b.T).clamp_(min=0)


def kth_nn_dist(x, k: int, chunk: int = 1024) -> np.ndarray:
    """(N,) distance from each row of x (N, D) to its k-th nearest other row (the row itself excluded)."""
    x = _as64(x)
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be in [1, N-1] = [1, {x.shape[0] - 1}]; got {k}")
    x_sq = (x * x).sum(1)
    out = []
    for i in range(0, x.shape[0], chunk):
        d = _sq_dists(x[i : i + chunk], x, x_sq)
        d[torch.arange(d.shape[0]), torch.arange(i, i + d.shape[0])] = float("inf")  # exclude self, not duplicates
        out.append(d.kthvalue(k, dim=1).values)
    return torch.cat(out).sqrt().numpy()


def nn_dist(x, ref, exclude=None, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(distance (N,), index (N,)) of the nearest row of ref (M, D) to each row of x (N, D).

    exclude: optional (N,) indices into ref; row i of x skips ref[exclude[i]] (leave-one-out when x is part of ref).
    """
    x, ref = _as64(x), _as64(ref)
    if x.shape[1] != ref.shape[1]:
        raise ValueError(f"dimension mismatch: {tuple(x.shape)} vs {tuple(ref.shape)}")
    if exclude is not None:
        exclude = torch.as_tensor(np.asarray(exclude), dtype=torch.int64)
    ref_sq = (ref * ref).sum(1)
    dists, idx = [], []
    for i in range(0, x.shape[0], chunk):
        d = _sq_dists(x[i : i + chunk], ref, ref_sq)
        if exclude is not None:
            d[torch.arange(d.shape[0]), exclude[i : i + chunk]] = float("inf")
        m = d.min(1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists).sqrt().numpy(), torch.cat(idx).numpy()


def within_any_ball(x, centres, radii, chunk: int = 1024) -> np.ndarray:
    """(N,) bool: row i of x lies in at least one closed ball (centres[j], radii[j])."""
    x, c = _as64(x), _as64(centres)
    r_sq = torch.as_tensor(np.asarray(radii, np.float64)) ** 2
    c_sq = (c * c).sum(1)
    out = []
    for i in range(0, x.shape[0], chunk):
        xi = x[i : i + chunk]
        # slack = the rounding error of the |a|^2 + |b|^2 - 2ab formula, so a point on a radius-0 ball (k+1
        # identical centres) still counts as inside, as it does in exact arithmetic
        slack = 1e-12 * ((xi * xi).sum(1, keepdim=True) + c_sq[None, :])
        out.append((_sq_dists(xi, c, c_sq) <= r_sq[None, :] + slack).any(1))
    return torch.cat(out).numpy()
