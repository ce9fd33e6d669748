"""Memorisation check: are samples closer to the training images than fresh real images are?

For each sample, d_s = distance to its nearest training image. The baseline is the same distance for real images
the model never saw, d_h (a held-out split), or, when the model trained on every image, the leave-one-out distance
of real training images to their nearest *other* training image (what a fresh draw from the data would see, up to
the one missing image). A model that generalises gives samples about as far from the training set as held-out
images are; copies give d_s ~ 0. Reported:

    ratio_of_medians   median(d_s) / median(d_h): ~1 is healthy, << 1 flags copying (> 1: samples off the data,
                       which FD and precision catch)
    frac_below_p1      fraction of samples with d_s below the 1st percentile of d_h: ~0.01 expected, larger means
                       a subset of samples is near-copies even if the median looks fine
    closest            the closest (sample, training image) pairs, to look at

Pixel space catches literal copies; feature space (the classifier's) also catches copies up to small shifts/noise.
"""

from __future__ import annotations

import numpy as np

from .neighbours import nn_dist

EXPECTED_FRAC = 0.01  # by definition of the 1st percentile, for samples distributed like held-out images


def memorisation(samples, train, heldout=None, max_baseline: int = 2000, n_closest: int = 5, seed: int = 0) -> dict:
    """Nearest-training-image distances of `samples` (N, ...) against those of `heldout` (or leave-one-out).

    All three are arrays of the same trailing shape (pixels or features), compared in Euclidean distance.
    heldout=None: leave-one-out on up to `max_baseline` training images drawn with `seed`.
    """
    samples, train = np.asarray(samples, np.float64), np.asarray(train, np.float64)
    d_s, nn_s = nn_dist(samples, train)
    if heldout is not None:
        d_h, _ = nn_dist(heldout, train)
        baseline, n_base = "held-out", len(heldout)
    else:
        if len(train) < 2:
            raise ValueError("leave-one-out needs at least 2 training images")
        pick = np.sort(np.random.default_rng(seed).permutation(len(train))[:max_baseline])
        d_h, _ = nn_dist(train[pick], train, exclude=pick)
        baseline, n_base = "leave-one-out", len(pick)
    med_s, med_h = float(np.median(d_s)), float(np.median(d_h))
    p1 = float(np.percentile(d_h, 1))
    order = np.argsort(d_s, kind="stable")[:n_closest]
    return {
        "n_samples": len(samples),
        "n_train": len(train),
        "n_baseline": n_base,
        "baseline": baseline,
        "median_sample_nn": med_s,
        "median_baseline_nn": med_h,
        "ratio_of_medians": med_s / med_h if med_h > 0 else float("inf"),
        "p1_baseline_nn": p1,
        "frac_below_p1": float(np.mean(d_s < p1)),
        "expected_frac_below_p1": EXPECTED_FRAC,
        "closest": [{"sample": int(i), "train": int(nn_s[i]), "distance": float(d_s[i])} for i in order],
    }
