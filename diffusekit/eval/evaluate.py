"""`evaluate`: every metric for a batch of samples against a data set, in one call; `format_table` to print it.

What is compared with what (n = min(len(samples), len(data) // 2) unless given):

    real halves     A, B = two disjoint random subsets of the data, n images each (numpy default_rng(seed))
    S               a random n of the samples (same seed), not the first n: samples may come sorted by class
    fd              FD(S, A) in the data's classifier features; floor = FD(B, A), same n, same reference
    fd_inception    the same in Inception-v3 pool3 features (inception=True); real statistics cached on disk
    pr              precision/recall (k=3) of S against A; floor = precision/recall of B against A
    memorisation    all samples vs the generator's training images (train_idx, default all of the data), in pixels
                    and classifier features; baseline = the held-out rest, or leave-one-out when there is none
    classes         predicted-class histogram of all samples; kl_floor from as many real images (up to the data size)

Every FD and precision/recall is reported with its n and its real-vs-real floor at that n: FD falls with n, so two
FDs are comparable only at equal n, and a model is good when its FD approaches the floor, not zero.

Data: anything `diffusekit.data.load_data` accepts: a built-in name (digits, mnist5k), an image folder, a .npy/.npz.
Classifier features exist for `classifier.CLASSIFIERS` = digits, mnist5k. For other data, "fd" needs inception=True
(it then reports only the Inception FD), "pr" and "classes" are errors, and memorisation runs in pixel space only.
Sample size: the classifier and pixel metrics need samples of exactly the data's (C, H, W); anything else is an
error rather than a silent resize, because resizing changes what is measured (resize yourself with
`F.interpolate(x, size, mode="bilinear", antialias=True)` if you mean to). Inception takes any size.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .cache import array_hash, load_stats, save_stats, stats_key
from .classes import class_histogram
from .classifier import CLASSIFIERS, classifier_outputs, load_classifier
from .frechet import frechet_distance, gaussian_stats
from .images import as_float_images
from .memorisation import memorisation
from .precision_recall import precision_recall
from .real import load_real

METRICS = ("fd", "pr", "memorisation", "classes")
K = 3  # precision/recall neighbourhood size, the paper's default
MIN_N = 10


def evaluate(
    samples: torch.Tensor | np.ndarray,
    data: str,
    metrics: Sequence[str] = METRICS,
    inception: bool = False,
    n: int | None = None,
    train_idx: Sequence[int] | np.ndarray | None = None,
    seed: int = 0,
    progress: bool = True,
    inception_features=None,
) -> dict:
    """Evaluate `samples` against data set `data`; returns a JSON-serialisable dict (see the module docstring).

    samples: float (N, C, H, W) in [-1, 1] or uint8 (N, H, W, C) pixels.
    metrics: any of "fd", "pr", "memorisation", "classes".
    inception: also the Inception FID ("fd_inception"); slow on CPU (~8 s / 100 images), real statistics cached.
    n: images per set for FD and precision/recall; default min(len(samples), len(data) // 2).
    train_idx: indices of the data the generator was trained on (default: all); the rest is the memorisation
        baseline.
    seed: draws the real halves A, B and the leave-one-out subset.
    inception_features: an `InceptionFeatures` to reuse across calls (default: loaded here when inception=True).
    """
    t0 = time.time()
    x_s = as_float_images(samples)
    x_r, labels = _load(data)
    has_clf = data in CLASSIFIERS
    _check_request(metrics, data, inception, has_clf, labels, x_s.shape[1:], x_r.shape[1:])
    n = _check_n(n, len(x_s), len(x_r), needed=inception or any(m in metrics for m in ("fd", "pr")))
    sets = _Sets.draw(n, len(x_s), len(x_r), seed)
    res: dict = {"data": data, "n_samples": len(x_s), "n_data": len(x_r), "n": n, "seed": seed,
                 "image_shape": list(x_s.shape[1:])}
    notes: list[str] = []
    feats = None  # (sample features, sample logits, real features, real logits, classifier)
    if has_clf and any(m in metrics for m in METRICS):  # memorisation uses the features too
        clf = load_classifier(data)
        res["classifier"] = {"name": clf.name, "feature_dim": clf.cfg.feature_dim,
                             "test_accuracy": clf.record.get("test_accuracy")}
        feats = (*(t.double().numpy() for t in classifier_outputs(clf, x_s)),
                 *(t.double().numpy() for t in classifier_outputs(clf, x_r)), clf)
    if "fd" in metrics and feats is not None:
        res["fd"] = _fd(feats, sets, n)
    if "pr" in metrics:
        res["pr"] = _pr(feats, sets, n)
    if "memorisation" in metrics:
        f = (feats[0], feats[2], feats[4].name) if feats is not None else None
        res["memorisation"] = _memorisation(x_s, x_r, f, train_idx, seed)
    if "classes" in metrics:
        res["classes"] = _classes(feats, labels, sets, len(x_s), len(x_r))
    if "fd" in metrics and feats is None:
        notes.append(f"no feature classifier for {data!r}: FD is reported in Inception features only")
    if inception:
        res["fd_inception"] = _inception_fd(x_s[sets.pick_s], x_r, data, sets.half_a, sets.half_b, seed,
                                            inception_features, progress)
        if n < 2048:
            notes.append(
                f"Inception FD at n = {n} < 2048 feature dims: covariances are rank-deficient and the FD carries a "
                "large small-n bias; it is comparable only to FDs at the same n, and to its floor"
            )
    res["notes"] = notes
    res["seconds"] = round(time.time() - t0, 2)
    return res


def _check_request(metrics, data, inception, has_clf, labels, sample_shape, data_shape) -> None:
    """Refuse, before any work, metrics that cannot be computed for this data and these samples."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; available: {', '.join(METRICS)} (and inception=True)")
    if not has_clf:
        bad = [m for m in metrics if m in ("pr", "classes") or (m == "fd" and not inception)]
        if bad:
            raise ValueError(
                f"metrics {bad} need a feature classifier, and {data!r} has none (classifiers: "
                f"{', '.join(CLASSIFIERS)}); use inception=True for FD, and 'memorisation' (pixel space)"
            )
    if "classes" in metrics and labels is None:
        raise ValueError(f"'classes' needs a labelled data set; {data!r} has no labels")
    exact_size = "memorisation" in metrics or (has_clf and any(m in metrics for m in ("fd", "pr", "classes")))
    if exact_size and sample_shape != data_shape:
        raise ValueError(
            f"samples are {tuple(sample_shape)} but {data!r} images are {tuple(data_shape)}: classifier and pixel "
            "metrics need the data's exact size (resizing would change what is measured). Resize explicitly with "
            "F.interpolate(x, size, mode='bilinear', antialias=True) if intended, or use "
            "metrics=() with inception=True, which takes any size"
        )


def _check_n(n: int | None, n_s: int, n_r: int, needed: bool) -> int:
    """Images per set: default min(samples, data // 2), so two disjoint real halves of n exist for the floor."""
    n_max = min(n_s, n_r // 2)
    n = n_max if n is None else int(n)
    if needed and not MIN_N <= n <= n_max:
        raise ValueError(
            f"n = {n} images per set is not possible: need {MIN_N} <= n <= min(len(samples) = {n_s}, "
            f"len(data) // 2 = {n_r // 2}) so that two disjoint real halves of n exist for the floor"
        )
    return n


@dataclass
class _Sets:
    """Which images each metric compares: real halves A and B, a random n of the samples (module docstring)."""

    perm: np.ndarray  # a permutation of the data, whose first n are A and next n are B
    half_a: np.ndarray
    half_b: np.ndarray
    pick_s: np.ndarray

    @classmethod
    def draw(cls, n: int, n_s: int, n_r: int, seed: int) -> "_Sets":
        rng = np.random.default_rng(seed)
        perm = rng.permutation(n_r)
        # a random n of the samples, not the first n: class-conditional samples often come sorted by class
        pick_s = np.sort(rng.permutation(n_s)[:n])
        return cls(perm, np.sort(perm[:n]), np.sort(perm[n : 2 * n]), pick_s)


def _fd(feats, sets: _Sets, n: int) -> dict:
    f_s, _, f_r, _, clf = feats
    mu_a, sig_a = gaussian_stats(f_r[sets.half_a])
    return {"value": frechet_distance(*gaussian_stats(f_s[sets.pick_s]), mu_a, sig_a),
            "floor": frechet_distance(*gaussian_stats(f_r[sets.half_b]), mu_a, sig_a), "n": n, "features": clf.name}


def _pr(feats, sets: _Sets, n: int) -> dict:
    f_s, _, f_r, _, clf = feats
    pr = precision_recall(f_r[sets.half_a], f_s[sets.pick_s], k=K)
    floor = precision_recall(f_r[sets.half_a], f_r[sets.half_b], k=K)
    return {"precision": pr["precision"], "recall": pr["recall"],
            "floor": {"precision": floor["precision"], "recall": floor["recall"]}, "k": K, "n": n,
            "features": clf.name}


def _classes(feats, labels, sets: _Sets, n_s: int, n_r: int) -> dict:
    _, logits_s, _, logits_r, clf = feats
    counts = np.bincount(labels.numpy(), minlength=clf.cfg.num_classes)
    real_pick = np.sort(sets.perm[: min(n_s, n_r)])
    res = class_histogram(logits_s, counts / counts.sum(), real_logits=logits_r[real_pick])
    res["classifier"] = clf.name
    return res


def _load(data: str):
    try:
        x, labels = load_real(data)
    except (ValueError, OSError) as e:  # DataError is a ValueError; its message lists the built-in names
        raise ValueError(f"cannot load data {data!r}: {e}") from e
    if x.ndim != 4:
        raise ValueError(f"evaluation needs images (N, C, H, W); {data!r} has shape {tuple(x.shape)}")
    return x.float(), labels


def _memorisation(x_s, x_r, feats, train_idx, seed) -> dict:
    n_r = len(x_r)
    if train_idx is None:
        tr = np.arange(n_r)
    else:
        tr = np.unique(np.asarray(train_idx, dtype=np.int64))
        if len(tr) == 0 or tr.min() < 0 or tr.max() >= n_r:
            raise ValueError(f"train_idx must be indices in [0, {n_r}); got {len(tr)} values")
    ho = np.setdiff1d(np.arange(n_r), tr)
    ho_or_none = ho if len(ho) > 0 else None

    def one(s, r, space):
        m = memorisation(s, r[tr], None if ho_or_none is None else r[ho], seed=seed)
        for c in m["closest"]:
            c["train"] = int(tr[c["train"]])  # index into the data set, not into the training subset
        return {"space": space, **m}

    out = {"pixel": one(x_s.flatten(1).double().numpy(), x_r.flatten(1).double().numpy(), "pixels in [-1, 1]")}
    if feats is not None:
        out["features"] = one(feats[0], feats[1], feats[2])
    return out


def _inception_fd(x_s, x_r, data, half_a, half_b, seed, extractor, progress) -> dict:
    if extractor is None:
        from .inception import InceptionFeatures

        extractor = InceptionFeatures(progress=progress)
    n = len(half_a)
    data_hash = array_hash(x_r.numpy())
    stats = {}
    for part, idx in (("A", half_a), ("B", half_b)):
        key = stats_key(data, n, extractor.name, subset=f"seed{seed}{part}", data_hash=data_hash)
        hit = load_stats(key)
        if hit is None:
            mu, sigma = gaussian_stats(extractor(x_r[idx], desc=f"Inception: real {data} {part} (n={n})"))
            save_stats(key, mu, sigma, {"data": data, "n": n, "extractor": extractor.name, "subset": part})
        else:
            mu, sigma, _ = hit
        stats[part] = (mu, sigma)
    mu_s, sig_s = gaussian_stats(extractor(x_s, desc=f"Inception: samples (n={n})"))
    return {
        "value": frechet_distance(mu_s, sig_s, *stats["A"]),
        "floor": frechet_distance(*stats["B"], *stats["A"]),
        "n": n,
        "features": extractor.name,
    }


def format_table(results: dict) -> str:
    """A plain-text table of `evaluate`'s results: value, real-vs-real floor (or expectation), and n per row."""
    r = results
    rows: list[tuple[str, str, str, str]] = []

    def f(v, p=4):
        return f"{v:.{p}g}" if isinstance(v, float) else str(v)

    for key, label in (("fd", "FD, classifier features"), ("fd_inception", "FID, Inception-v3 pool3")):
        if key in r:
            rows.append((label, f(r[key]["value"]), f(r[key]["floor"]), str(r[key]["n"])))
    if "pr" in r:
        pr = r["pr"]
        rows.append((f"precision (k={pr['k']})", f(pr["precision"], 3), f(pr["floor"]["precision"], 3), str(pr["n"])))
        rows.append((f"recall (k={pr['k']})", f(pr["recall"], 3), f(pr["floor"]["recall"], 3), str(pr["n"])))
    for space, m in r.get("memorisation", {}).items():
        ns = f"{m['n_samples']} vs {m['n_baseline']} {m['baseline']}"
        rows.append((f"memorisation {space}: median NN ratio", f(m["ratio_of_medians"], 3), "1 (healthy)", ns))
        rows.append(
            (f"memorisation {space}: frac < 1st pct", f(m["frac_below_p1"], 3), f(m["expected_frac_below_p1"]), ns)
        )
    if "classes" in r:
        c = r["classes"]
        nf = f"{c['n']} (floor {c.get('n_floor', '-')})"
        rows.append(("classes: KL from data freq (nats)", f(c["kl_from_data"], 3), f(c.get("kl_floor", "-"), 3), nf))
        rows.append(("classes: entropy (nats)", f(c["entropy"], 4), f"max {c['max_entropy']:.4g}", str(c["n"])))
        rows.append(("classes: mean confidence", f(c["mean_confidence"], 3), "", str(c["n"])))

    head = ("metric", "value", "real-vs-real floor", "n")
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(4)]
    line = lambda x: "  ".join(s.ljust(w) for s, w in zip(x, widths)).rstrip()  # noqa: E731
    out = [
        f"{r['data']}: {r['n_samples']} samples vs {r['n_data']} real images, FD/PR at n = {r['n']} (seed {r['seed']})",
        line(head),
        line(tuple("-" * w for w in widths)),
        *map(line, rows),
    ]
    if "classes" in r:
        c = r["classes"]
        out.append("class counts: " + " ".join(f"{i}:{k}" for i, k in enumerate(c["counts"])))
        if c["missing_classes"]:
            out.append(f"missing classes: {c['missing_classes']}")
    out += [f"note: {s}" for s in r.get("notes", [])]
    return "\n".join(out)


def to_json(results: dict) -> str:
    return json.dumps(results, indent=2)
