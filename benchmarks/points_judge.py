"""Point-cloud generation judged by PointFlow's protocol (BENCHMARKS.md section 12): every kept checkpoint of a
`shapes3d` run, MMD / COV / 1-NNA under the Chamfer distance, n generated against the first n clouds of the held-out
test split, and the real-vs-real floor (the first n training clouds against the same reference).

    python benchmarks/points_judge.py RUN [RUN ...] --n 200 --out benchmarks/results/12-points/judged.json

Samples: the EMA weights, DPM-Solver++(2M), `--steps` steps (default 20), seed 1, as many points per cloud as the
data (1,024), whatever the run trained on per step (`points_per_step`); `--points` samples with another count and
compares at it (the reference clouds are then random subsets of that many points). The goal of issue 25 is
1-NNA-CD <= 60% (50% is perfect).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import machine  # benchmarks/machine.py: the machine and the commit
from diffusekit.data.points import load_shapes3d
from diffusekit.eval.points import chamfer_matrix, nn_metrics, point_cloud_metrics
from diffusekit.model import TrainedModel
from diffusekit.rundir import list_checkpoints


def subset(x: torch.Tensor, points: int | None, seed: int = 0) -> torch.Tensor:
    """(N, 3, P) -> (N, 3, points): a seeded random subset of each cloud's points (all of them for None)."""
    if points is None or points == x.shape[-1]:
        return x
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(x.shape[0], x.shape[-1], generator=g).argsort(1)[:, None, :points].expand(-1, 3, -1)
    return x.gather(2, keep)


def judge(args) -> dict:
    reference = subset(load_shapes3d("test").x[:args.n], args.points, seed=1)
    floor = subset(load_shapes3d("train").x[:args.n], args.points, seed=2)
    t0 = time.perf_counter()
    base = point_cloud_metrics(floor, reference)  # floor as "generated": the real-vs-real figures
    d_rr = chamfer_matrix(reference)  # the same for every checkpoint: computed once
    out = {"machine": machine.record(), "n": args.n, "steps": args.steps,
           "points": args.points or int(reference.shape[-1]), "floor": base["cd"],
           "floor_seconds": time.perf_counter() - t0, "runs": []}
    print(f"floor (train vs test, n={args.n}): {fmt(base['cd'])}", file=sys.stderr, flush=True)
    for run in map(Path, args.runs):
        row = {"run": str(run), "train": json.loads((run / "run.json").read_text())["train"], "evals": []}
        ckpts = list_checkpoints(run / "checkpoints")
        for ckpt in ckpts[-1:] if args.last_only else ckpts:
            state = json.loads((ckpt / "state.json").read_text())
            model = TrainedModel.load(run, checkpoint=ckpt)
            if args.points:
                model.shape = (3, args.points)  # a set network draws any number of points
            t1 = time.perf_counter()
            gen = model.sample(args.n, sampler="dpmpp-2m", steps=args.steps, seed=1, batch=50)
            sample_s = time.perf_counter() - t1
            cd = nn_metrics(chamfer_matrix(gen, reference), chamfer_matrix(gen), d_rr)
            row["evals"].append({"step": state["step"], "elapsed_s": state["elapsed_s"], "cd": cd,
                                 "sample_seconds": sample_s})
            print(f"{run} step {state['step']} ({state['elapsed_s'] / 60:.1f} min): {fmt(cd)}", file=sys.stderr,
                  flush=True)
        out["runs"].append(row)
    return out


def fmt(m: dict) -> str:
    return f"1-NNA {m['1nna']:.1%}  COV {m['cov']:.1%}  MMD {m['mmd']:.5f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--points", type=int, help="sample and compare at this many points per cloud")
    p.add_argument("--last-only", action="store_true", help="judge only each run's newest checkpoint")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    res = judge(args)
    text = json.dumps(res, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
