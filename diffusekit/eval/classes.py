"""Class histogram of samples as the data set's classifier sees them: mode dropping / class imbalance.

    entropy            H(p) of the predicted-class frequencies p, in nats; log(K) when all K classes are equal
    kl_from_data       KL(p || q) with q the data set's label frequencies: 0 when samples match the data's mix
    kl_from_uniform    KL(p || uniform) = log(K) - H(p)
    mean_confidence    mean max-softmax probability: low values mean samples the classifier cannot place

KL of a finite-sample histogram is biased upwards (about (K - 1) / (2 n) nats), so `kl_floor` gives the same KL for n
real images classified by the same network: compare against it, at the same n.
"""

from __future__ import annotations

import numpy as np
import torch


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    nz = p > 0  # 0 log 0 = 0; q > 0 wherever the data has that class
    return float(np.sum(p[nz] * np.log(p[nz] / q[nz])))


def _entropy(p: np.ndarray) -> float:
    nz = p > 0
    return float(-np.sum(p[nz] * np.log(p[nz])))


def class_histogram(logits, data_freq, real_logits=None) -> dict:
    """Histogram statistics of predicted classes from logits (N, K); data_freq (K,) the data's label frequencies.

    real_logits: logits of n real images (n = len(logits) for a fair floor) -> adds "kl_floor".
    """
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    q = np.asarray(data_freq, np.float64)
    k = logits.shape[1]
    if q.shape != (k,):
        raise ValueError(f"data_freq must have {k} entries; got {q.shape}")
    probs = logits.softmax(1)
    counts = np.bincount(probs.argmax(1).numpy(), minlength=k)
    p = counts / counts.sum()
    out = {
        "n": int(counts.sum()),
        "counts": counts.tolist(),
        "freq": p.tolist(),
        "data_freq": q.tolist(),
        "entropy": _entropy(p),
        "max_entropy": float(np.log(k)),
        "kl_from_data": _kl(p, q),
        "kl_from_uniform": _kl(p, np.full(k, 1 / k)),
        "missing_classes": [int(c) for c in np.flatnonzero(counts == 0)],
        "mean_confidence": float(probs.max(1).values.mean()),
    }
    if real_logits is not None:
        rc = np.bincount(torch.as_tensor(np.asarray(real_logits)).argmax(1).numpy(), minlength=k)
        out["kl_floor"] = _kl(rc / rc.sum(), q)
        out["n_floor"] = int(rc.sum())
    return out
