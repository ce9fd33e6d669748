"""The table of BENCHMARKS.md section 5 from the `sampling.json` files of `benchmarks/sampling_fd.py` runs.

    python benchmarks/fd_table.py benchmarks/results/5-sampling/fd10-m5k6000/*/sampling.json --baseline heun

One row per (sampler spec, steps): FD per seed (in seed order), mean +- standard error over seeds, the ratio of
means to the reference (default: DDPM at 1000 steps) and, with --baseline SPEC, the paired difference to that
spec at the same steps on the seeds both ran (mean +- se, and on how many seeds the row's FD is lower).
"""

import argparse
import json
import math
import statistics
from pathlib import Path


def mean_se(values) -> tuple[float, float]:
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return statistics.mean(values), se


def table(files, reference=("ddpm", 1000), baseline=None) -> list[str]:
    fd: dict[tuple[str, int], dict[int, float]] = {}
    for f in files:
        for r in json.loads(Path(f).read_text())["quality"]:
            fd.setdefault((r["sampler"], r["steps"]), {})[r["seed"]] = r["fd"]
    ref = mean_se(list(fd[reference].values()))[0] if reference in fd else None
    lines = ["| sampler | steps | FD per seed | mean +- se | vs reference | paired vs baseline (lower in) |",
             "|---|---|---|---|---|---|"]
    for (spec, steps), by_seed in sorted(fd.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        seeds = sorted(by_seed)
        m, se = mean_se([by_seed[s] for s in seeds])
        vs = "" if ref is None or (spec, steps) == reference else f"{100 * (m / ref - 1):+.0f}%"
        pair = ""
        base = fd.get((baseline, steps))
        if base and spec != baseline:
            d = [by_seed[s] - base[s] for s in seeds if s in base]
            if d:
                dm, dse = mean_se(d)
                pair = f"{dm:+.2f} +- {dse:.2f} ({sum(x < 0 for x in d)} of {len(d)})"
        per_seed = " / ".join(f"{by_seed[s]:.1f}" for s in seeds)
        lines.append(f"| {spec} | {steps} | {per_seed} (seeds {seeds[0]}-{seeds[-1]}) | {m:.1f} +- {se:.1f} | "
                     f"{vs} | {pair} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path, help="sampling.json files of benchmarks/sampling_fd.py")
    ap.add_argument("--reference", default="ddpm@1000", help="SPEC@STEPS the ratios are taken to")
    ap.add_argument("--baseline", help="a sampler spec for the paired column (at each row's steps)")
    args = ap.parse_args()
    spec, _, steps = args.reference.rpartition("@")
    if not spec or not steps.isdigit():
        raise SystemExit(f"--reference must be SPEC@STEPS (e.g. ddpm@1000), got {args.reference!r}")
    print("\n".join(table(args.files, (spec, int(steps)), args.baseline)))


if __name__ == "__main__":
    main()
