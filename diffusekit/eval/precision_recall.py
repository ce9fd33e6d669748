"""Improved precision and recall (Kynkaanniemi et al. 2019, "Improved precision and recall metric for assessing
generative models", sec. 2, eq. 1-2).

Each set's manifold is approximated by the union of balls around its points, each ball reaching to that point's k-th
nearest neighbour within its own set (k = 3, the paper's choice). Then

    precision = fraction of generated points inside the real manifold   (are samples realistic?)
    recall    = fraction of real points inside the generated manifold   (is the data's variety covered?)

Both depend on n (more points -> larger manifolds), so compare at equal n and report the real-vs-real floor.
"""

from __future__ import annotations

import numpy as np

from .neighbours import kth_nn_dist, within_any_ball


def precision_recall(real_feats, fake_feats, k: int = 3) -> dict:
    """{"precision", "recall", "k", "n_real", "n_fake"} for features real (N, D) and fake (M, D)."""
    real, fake = np.asarray(real_feats, np.float64), np.asarray(fake_feats, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features must be (N, D) and (M, D); got {real.shape} and {fake.shape}")
    r_real, r_fake = kth_nn_dist(real, k), kth_nn_dist(fake, k)
    precision = within_any_ball(fake, real, r_real).mean()
    recall = within_any_ball(real, fake, r_fake).mean()
    return {"precision": float(precision), "recall": float(recall), "k": k, "n_real": len(real), "n_fake": len(fake)}
