"""Point-cloud generation metrics: Chamfer and Earth Mover's distances, and MMD, COV, 1-NNA over them.

The protocol of PointFlow (Yang et al. 2019, "PointFlow: 3D point cloud generation with continuous normalizing
flows": the evaluation metrics of its experiments, as its code's `metrics/evaluation_metrics.py` computes them),
used unchanged by PVD (Zhou et al. 2021) and LION (Zeng et al. 2022). With S_g the generated set, S_r the reference
set and D a distance between two clouds:

    MMD   = mean over Y in S_r of  min over X in S_g  D(X, Y)          (lower is better: fidelity)
    COV   = |{argmin over Y in S_r D(X, Y) : X in S_g}| / |S_r|        (higher is better: coverage, up to 1)
    1-NNA = accuracy of the leave-one-out 1-nearest-neighbour classifier on S_g u S_r with labels gen / ref
            (0.5 is ideal: the two sets cannot be told apart; 1.0: every cloud's nearest neighbour is its own kind)

A batch of clouds is a float tensor or array (N, 3, P), channels first like every diffusekit tensor; internally
(N, P, 3). All metrics are scale-dependent: compare sets in one normalisation (PointFlow scales every shape into
the same box), and report the floor, a second real set against the reference, beside them.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

# Point-pair distances held at once by chamfer_matrix: 2**22 float32 = 16 MB, within this machine's 32 MB L3 cache.
# A middle ground, measured on 40x40 pairs of 1024 points: at 1 thread smaller blocks were faster (2**20: 1.7 s,
# 2**22: 2.3 s, 2**24: 2.9 s), at 2 threads on the loaded machine larger ones (19 s, 7.7 s, 5.9 s: every block pays
# a hand-off between the threads).
CHUNK = 2**22
EMD_ROWS = 32  # cost matrices built at once by emd_matrix: 32 x 256 x 256 float64 = 16 MB
DISTANCES = ("cd", "emd")


def chamfer_matrix(a, b=None, chunk: int = CHUNK) -> torch.Tensor:
    """Chamfer distances between every cloud of `a` (Na, 3, P) and every cloud of `b` (Nb, 3, Q): float64 (Na, Nb).

    PointFlow's definition, with squared distances and the SUM of the two means (no square root, no halving):

        CD(X, Y) = mean_{x in X} min_{y in Y} ||x - y||^2  +  mean_{y in Y} min_{x in X} ||x - y||^2

    b=None compares `a` with itself: only the upper triangle is computed, the result is exactly symmetric and its
    diagonal exactly 0. Squared distances come from one float32 matrix product per block,
    [x, 1, |x|^2] . [-2y, |y|^2, 1] = |x - y|^2, clamped at 0 (the rounding of |x|^2 + |y|^2 - 2 x.y can make it
    slightly negative); absolute error ~1e-6 for clouds in [-1, 1]. Blocks hold at most `chunk` point pairs
    (default 16 MB), so memory stays small for any N and P (500x500 pairs of 2048 points: under 100 MB in all).

    Cost: O(Na Nb P Q), about 1.4 ms of CPU a pair of 1024-point clouds (the product is most of it). Measured on
    this project's 2-core AMD EPYC while other jobs kept both cores busy, 200x200 pairs of 1024 points:
    79 s (54 s CPU) with torch.set_num_threads(1), 299 s (180 s CPU) with torch's default 2 threads, which lose
    their time waiting for each other on a busy machine. Pairs of 2048 points cost ~7 ms of CPU each, so the
    500x500 of a full ShapeNet-size evaluation is ~30 CPU-minutes: evaluate on fewer clouds or on a GPU.
    """
    return _chamfer(_as_points(a, "chamfer_matrix"), None if b is None else _as_points(b, "chamfer_matrix"), chunk)


def _chamfer(xa: torch.Tensor, xb: torch.Tensor | None = None, chunk: int = CHUNK) -> torch.Tensor:
    """chamfer_matrix on checked (N, P, 3) float32 clouds; xb=None: xa against itself."""
    symmetric = xb is None
    xb = xa if symmetric else xb
    na, p, nb, q = xa.shape[0], xa.shape[1], xb.shape[0], xb.shape[1]
    # Augmented coordinates: one GEMM with inner size 5 gives the squared distances directly.
    ua = torch.cat([xa, torch.ones_like(xa[..., :1]), (xa * xa).sum(-1, keepdim=True)], -1).reshape(-1, 5)
    ub = torch.cat([-2 * xb, (xb * xb).sum(-1, keepdim=True), torch.ones_like(xb[..., :1])], -1).reshape(-1, 5)
    pairs = max(1, int(chunk) // (p * q))  # cloud pairs per block
    rb = min(nb, pairs)
    ra = min(na, max(1, pairs // rb))
    if symmetric:
        ra = rb = min(ra, rb)  # square blocks, so the upper triangle is a set of whole blocks
    buf = torch.empty(ra * p * rb * q)  # reused: a fresh allocation per block costs more than the product itself
    out = torch.zeros(na, nb, dtype=torch.float64)
    for i in range(0, na, ra):
        r = min(ra, na - i)
        for j in range(i if symmetric else 0, nb, rb):
            s = min(rb, nb - j)
            d = buf[: r * p * s * q].view(r * p, s * q)
            torch.mm(ua[i * p : (i + r) * p], ub[j * q : (j + s) * q].T, out=d)
            d = d.view(r, p, s, q)
            to_b = d.amin(3).clamp_(min=0).double().mean(1)  # (r, s): each x to its nearest y
            to_a = d.amin(1).clamp_(min=0).double().mean(2)  # (r, s): each y to its nearest x
            out[i : i + r, j : j + s] = to_b + to_a
    if symmetric:  # keep the strict upper triangle (the diagonal blocks also hold a lower one) and mirror it
        upper = torch.triu(out, 1)
        out = upper + upper.T
    return out


def emd_matrix(a, b=None, points: int = 256, seed: int = 0) -> torch.Tensor:
    """Earth Mover's distances between every cloud of `a` (Na, 3, P) and of `b` (Nb, 3, Q): float64 (Na, Nb).

    EMD(X, Y) = min over bijections phi: X -> Y of mean_{x in X} ||x - phi(x)||  (Euclidean, NOT squared): the
    quantity PointFlow reports (`emd_approx`: the matched cost of sqrt distances divided by the point count).
    PointFlow approximates the matching on the GPU (the auction-like `approxmatch`); here it is exact, by
    scipy.optimize.linear_sum_assignment, on m = min(points, P, Q) points of each cloud. The subset is one random
    choice of m indices per point count (numpy default_rng(seed)), shared by all clouds with that count, so
    identical arrays score exactly 0; clouds that differ only by a permutation score 0 only when m = P = Q.

    Cost: O(m^3) per pair (the assignment) and a Python loop over the pairs. Measured on this project's CPU (one
    core of an AMD EPYC), per pair: m = 128: 1.3 ms, m = 256: 3.6 ms, m = 512: 16 ms; so at m = 256 the full
    protocol for 100 generated and 100 reference clouds (20,000 pairs with the two self-matrices) takes ~70 s.
    b=None compares `a` with itself (upper triangle only, exactly symmetric, zero diagonal).
    """
    if int(points) < 1:
        raise ValueError(f"emd_matrix: points must be >= 1; got {points}")
    return _emd(_as_points(a, "emd_matrix"), None if b is None else _as_points(b, "emd_matrix"), points, seed)


def _emd(xa: torch.Tensor, xb: torch.Tensor | None, points: int, seed: int) -> torch.Tensor:
    """emd_matrix on checked (N, P, 3) clouds; xb=None: xa against itself."""
    symmetric = xb is None
    xb = xa if symmetric else xb
    m = min(int(points), xa.shape[1], xb.shape[1])
    sa, sb = _subset(xa, m, seed), _subset(xb, m, seed)
    out = torch.zeros(len(sa), len(sb), dtype=torch.float64)
    for i in range(len(sa)):
        for j0 in range(i + 1 if symmetric else 0, len(sb), EMD_ROWS):
            others = sb[j0 : j0 + EMD_ROWS]
            # exact differences, not the |x|^2 + |y|^2 - 2x.y shortcut, so identical points cost exactly 0
            costs = torch.cdist(sa[i].expand(len(others), m, 3), others, compute_mode="donot_use_mm_for_euclid_dist")
            for k, c in enumerate(costs.numpy()):  # c: (m, m) Euclidean distances
                rows, cols = linear_sum_assignment(c)
                out[i, j0 + k] = c[rows, cols].mean()
    return out + out.T if symmetric else out


def _subset(x: torch.Tensor, m: int, seed: int) -> torch.Tensor:
    """(N, P, 3) -> (N, m, 3) float64: the same m random point indices of every cloud (all of them when m = P)."""
    idx = np.random.default_rng(seed).choice(x.shape[1], m, replace=False) if m < x.shape[1] else np.arange(m)
    return x[:, torch.from_numpy(idx)].double()


def nn_metrics(d_gr, d_gg, d_rr) -> dict:
    """{"mmd", "cov", "1nna"} from the distances generated-reference (Ng, Nr), generated (Ng, Ng), reference (Nr, Nr).

    PointFlow's `lgan_mmd_cov` and `knn(k=1)`: MMD and COV as in the module docstring (COV counts the distinct
    reference clouds that are some generated cloud's nearest); 1-NNA ranks, for every cloud of S_r u S_g, all the
    others (itself excluded) by distance and predicts the label of the nearest. Ties go to the lowest index in the
    order [reference..., generated...] (PointFlow's order; torch.argmin returns the first minimum), so an exact
    duplicate across the sets counts as a miss for the generated cloud. MMD and COV ties: the first reference.
    """
    d_gr, d_gg, d_rr = (torch.as_tensor(d, dtype=torch.float64) for d in (d_gr, d_gg, d_rr))
    if d_gr.ndim != 2 or 0 in d_gr.shape:
        raise ValueError(f"nn_metrics: d_gr must be a non-empty (Ng, Nr) matrix; got shape {tuple(d_gr.shape)}")
    ng, nr = d_gr.shape
    if d_gg.shape != (ng, ng) or d_rr.shape != (nr, nr):
        raise ValueError(f"nn_metrics: with d_gr {ng}x{nr}, d_gg must be {ng}x{ng} and d_rr {nr}x{nr}; got "
                         f"{tuple(d_gg.shape)} and {tuple(d_rr.shape)}")
    if not all(torch.isfinite(d).all() for d in (d_gr, d_gg, d_rr)):
        raise ValueError("nn_metrics: the distance matrices hold NaN or inf values")
    if ng + nr < 3:
        raise ValueError("nn_metrics: 1-NNA needs at least 3 clouds in all (each one's neighbour is another)")
    mmd = d_gr.min(dim=0).values.mean()  # each reference to its nearest generated
    cov = d_gr.argmin(dim=1).unique().numel() / nr  # reference clouds that some generated cloud picks
    m = torch.cat([torch.cat([d_rr, d_gr.T], 1), torch.cat([d_gr, d_gg], 1)], 0)  # order [ref, gen]
    m.fill_diagonal_(float("inf"))  # leave one out
    label = torch.cat([torch.ones(nr), torch.zeros(ng)])  # 1 = reference, as in PointFlow
    pred = label[m.argmin(dim=1)]
    return {"mmd": float(mmd), "cov": float(cov), "1nna": float((pred == label).double().mean())}


def point_cloud_metrics(generated, reference, floor=None, distances=("cd",), emd_points: int = 256,
                        seed: int = 0) -> dict:
    """The full report, JSON-able: {"n_generated", "n_reference", "points", "cd": {"mmd", "cov", "1nna"}, ...}.

    generated (Ng, 3, P) and reference (Nr, 3, Q) may differ in N and in point count. distances: any of "cd"
    (chamfer_matrix) and "emd" (emd_matrix on emd_points points, seeded by `seed`; reported as "emd_points").
    floor: a second real set (Ng, 3, P'), held out from `reference`: the same metrics of floor-vs-reference under
    "floor", the best a generator can expect at this n (1-NNA near 0.5, MMD and COV at their sampling limit).
    """
    unknown = [d for d in distances if d not in DISTANCES]
    if unknown or not distances:
        raise ValueError(f"point_cloud_metrics: distances must be some of {DISTANCES}; got {tuple(distances)}")
    gen = _as_points(generated, "generated")
    ref = _as_points(reference, "reference")
    sets = {"generated": gen, "reference": ref}
    if floor is not None:
        sets["floor"] = _as_points(floor, "floor")
        if len(sets["floor"]) != len(gen):
            raise ValueError(f"point_cloud_metrics: floor has {len(sets['floor'])} clouds, generated {len(gen)}; "
                             "the floor must have the same n")
    report = {"n_generated": len(gen), "n_reference": len(ref),
              "points": {k: int(v.shape[1]) for k, v in sets.items()}}
    if "emd" in distances:
        report["emd_points"] = min(emd_points, *(int(v.shape[1]) for v in sets.values()))
    fns = {"cd": _chamfer, "emd": lambda x, y=None: _emd(x, y, report["emd_points"], seed)}
    for name in distances:
        d = fns[name]
        d_rr = d(ref)
        report[name] = nn_metrics(d(gen, ref), d(gen), d_rr)
        if floor is not None:
            report.setdefault("floor", {})[name] = nn_metrics(d(sets["floor"], ref), d(sets["floor"]), d_rr)
    return report


def _as_points(x, what: str) -> torch.Tensor:
    """(N, 3, P) float tensor or array -> float32 (N, P, 3), checked: 3 channels, non-empty, every value finite."""
    t = torch.as_tensor(x).detach().to("cpu")
    if t.ndim != 3 or t.shape[1] != 3:
        raise ValueError(f"{what}: expected point clouds (N, 3, P); got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[2] == 0:
        raise ValueError(f"{what}: no clouds or no points (shape {tuple(t.shape)})")
    t = t.to(torch.float32)
    bad = int((~torch.isfinite(t)).flatten(1).any(1).sum())
    if bad:
        raise ValueError(f"{what}: {bad} of {t.shape[0]} clouds hold NaN or inf values")
    return t.transpose(1, 2).contiguous()


__all__ = ["chamfer_matrix", "emd_matrix", "nn_metrics", "point_cloud_metrics", "DISTANCES"]


def reference_clouds(data: str, n: int, seed: int = 0):
    """(reference, floor, note) for judging samples of a model trained on `data`: for the built-in `shapes3d` the
    first n clouds of its held-out test split (5 classes in turn) and, as the floor, the first n of its training
    split; for a user's data (no held-out split known) two disjoint random halves of it, said in the note."""
    from ..data import load_data
    from ..data.points import load_shapes3d

    if data == "shapes3d":
        return load_shapes3d("test").x[:n], load_shapes3d("train").x[:n], "reference: shapes3d test split (held out)"
    x = load_data(data).x
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    if len(x) < 2 * n:
        raise ValueError(f"{data}: {len(x)} clouds; judging n={n} samples needs 2n (a reference and a floor); pass "
                         f"a smaller --n")
    return x[perm[:n]], x[perm[n:2 * n]], f"reference and floor: two random halves of {data} (the training data)"


def evaluate_clouds(samples, data: str, n: int = 200, distances=("cd",), seed: int = 0) -> dict:
    """`point_cloud_metrics` of the first n samples against n reference clouds of `data`, with the real-vs-real
    floor at the same n (`reference_clouds`)."""
    samples = torch.as_tensor(samples)
    if len(samples) < n:
        raise ValueError(f"{len(samples)} samples for n={n}: draw at least n (or pass a smaller --n)")
    reference, floor, note = reference_clouds(data, n, seed)
    report = point_cloud_metrics(samples[:n], reference, floor=floor, distances=distances, seed=seed)
    return {"data": data, "note": note, **report}


def format_clouds(report: dict) -> str:
    """The report as the lines `diffusekit eval` prints: one row per distance, the floor beside each figure."""
    rows = [f"point clouds: {report['n_generated']} generated vs {report['n_reference']} reference ({report['note']})",
            f"{'metric':10s} {'model':>10s} {'floor':>10s}   (1-NNA: 50% is perfect; COV: higher is better)"]
    for d in DISTANCES:
        if d not in report:
            continue
        for k, fmt in (("mmd", "{:.5f}"), ("cov", "{:.1%}"), ("1nna", "{:.1%}")):
            floor = report.get("floor", {}).get(d, {}).get(k)
            rows.append(f"{d.upper() + ' ' + k.upper():10s} {fmt.format(report[d][k]):>10s} "
                        f"{fmt.format(floor) if floor is not None else '-':>10s}")
    return "\n".join(rows)
