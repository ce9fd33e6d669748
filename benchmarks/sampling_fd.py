"""Sampling benchmarks on a trained run: quality against steps for every sampler, sampling speed beside diffusers'
DPMSolverMultistepScheduler loop on the same network, and peak memory of training and sampling.

    python benchmarks/sampling_fd.py RUN_DIR [--n 300] [--out DIR]
    python benchmarks/sampling_fd.py RUN_DIR --n 1000 --steps 10 --samplers ddpm,heun,heun:s_churn=1 --skip-speed

1. Quality vs steps: Frechet distance (classifier features, n samples vs n real, with the real-vs-real floor at the
   same n) of each sampler at 1000 (DDPM), 250, 100, 50, 20, 10 and 5 steps; a plot (quality_vs_steps.png).
2. Sampling images/s: 20-step DPM-Solver++(2M), ours (`TrainedModel.sample`) vs a diffusers scheduler loop around
   the same network, each in fp32 and in bf16 autocast, batch 64, median of repeats.
3. Peak memory (max RSS of a fresh process): one training run of a few steps, and sampling 64 images.
"""

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import diffusekit as dk
import machine  # benchmarks/machine.py (python puts this script's folder first on sys.path)
from diffusekit.eval import evaluate
from diffusekit.model import TrainedModel

STEPS = (250, 100, 50, 20, 10, 5)


def parse_sampler(spec: str) -> tuple[str, dict]:
    """'heun' -> ('heun', {}); 'heun:s_churn=1:s_tmin=0.05' -> ('heun', {'s_churn': 1.0, 's_tmin': 0.05});
    values are numbers except spacing=NAME (the sigma ladder); sigma_min / sigma_max move the ladder's ends."""
    name, *opts = spec.split(":")
    options = {}
    for o in opts:
        k, _, v = o.partition("=")
        if not v:
            raise SystemExit(f"sampler option {o!r} in {spec!r} is not KEY=VALUE")
        options[k] = v if k == "spacing" else float(v)
    ladder = ("spacing", "sigma_min", "sigma_max")
    dk.SamplerConfig(name, 10, options.get("spacing"), {k: v for k, v in options.items() if k not in ladder},
                     options.get("sigma_min"), options.get("sigma_max"))
    return name, options


def quality_vs_steps(model, data, n, samplers, steps_list=STEPS, seeds=(2,)):
    """FD of each sampler spec at each step count (DDPM also at 1000), one row per seed."""
    rows = []
    for spec in samplers:
        sampler, options = parse_sampler(spec)
        for steps in ((1000,) + tuple(steps_list) if spec == "ddpm" else steps_list):
            for seed in seeds:
                t0 = time.perf_counter()
                x = model.sample(n, sampler=sampler, steps=steps, seed=seed, batch=250, **options)
                res = evaluate(x, data, metrics=("fd",), n=n, progress=False)
                rows.append({"sampler": spec, "steps": steps, "seed": seed, "fd": res["fd"]["value"],
                             "floor": res["fd"]["floor"], "seconds": time.perf_counter() - t0})
                print(f"  {spec:16s} {steps:5d} steps, seed {seed}: FD {rows[-1]['fd']:.3f} "
                      f"({rows[-1]['seconds']:.0f} s)", flush=True)
    return rows


def sampling_speed(model, repeats=5, batch=64, steps=20):
    from diffusers import DPMSolverMultistepScheduler

    net = model.net
    shape = (batch, *model.shape)
    out = {}
    for precision in ("fp32", "bf16"):
        amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
        mine = TrainedModel(model.info, net, model.step, precision="auto" if precision == "bf16" else "fp32")

        def ours():
            mine.sample(batch, sampler="dpmpp-2m", steps=steps, spacing="linspace", batch=batch)

        def theirs():
            sched = DPMSolverMultistepScheduler(final_sigmas_type="zero")
            sched.set_timesteps(steps)
            x = torch.randn(shape)
            with torch.no_grad(), amp:
                for t in sched.timesteps:
                    eps = net(x, t.float().expand(batch)).float()
                    x = sched.step(eps, t, x).prev_sample

        for name, fn in (("diffusekit", ours), ("diffusers loop", theirs)):
            fn()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            out[f"{name} {precision}"] = batch / statistics.median(times)
    return out


PEAK = """
import resource, sys, torch
from diffusekit.model import TrainedModel
from diffusekit.train import TrainConfig, train
mode, arg = sys.argv[1], sys.argv[2]
if mode == "sample":
    TrainedModel.load(arg).sample(64, steps=20)
else:
    train(TrainConfig(data=arg, out=sys.argv[3], steps=5, checkpoint_every=1000, num_grid=4, sample_steps=2),
          progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_memory(run_dir, data, tmp):
    res = {}
    for mode, args in (("train", [data, str(tmp / "mem-run")]), ("sample", [str(run_dir)])):
        r = subprocess.run([sys.executable, "-c", PEAK, mode, *args], capture_output=True, text=True, check=True)
        res[mode] = float(r.stdout.strip().splitlines()[-1])
    return res


def plot(rows, floor, path):
    from PIL import Image, ImageDraw

    W, H, m = 700, 420, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    fds = [r["fd"] for r in rows] + [floor]
    lo, hi = math.log(min(fds)), math.log(max(fds))
    X = lambda s: m + (W - 2 * m) * (math.log(s) - math.log(5)) / (math.log(1000) - math.log(5))  # noqa: E731
    Y = lambda fd: H - m - (H - 2 * m) * (math.log(fd) - lo) / max(hi - lo, 1e-9)  # noqa: E731
    d.rectangle([m, m, W - m, H - m], outline="black")
    colours = [(200, 30, 30), (30, 30, 200), (30, 150, 30), (200, 120, 0), (120, 0, 160), (0, 150, 150),
               (100, 100, 100), (180, 0, 100)]
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    for i, s in enumerate(samplers):
        by_steps = {}  # steps -> FDs over seeds; the line goes through their means
        for r in rows:
            if r["sampler"] == s:
                by_steps.setdefault(r["steps"], []).append(r["fd"])
        pts = sorted((X(k), Y(statistics.mean(v))) for k, v in by_steps.items())
        d.line(pts, fill=colours[i % len(colours)], width=2)
        d.text((m + 6, m + 6 + 12 * i), s, fill=colours[i % len(colours)])
    d.line([(m, Y(floor)), (W - m, Y(floor))], fill=(160, 160, 160))
    d.text((W - m - 110, Y(floor) - 12), "real-vs-real floor", fill=(120, 120, 120))
    for s in (5, 10, 20, 50, 100, 250, 1000):
        d.text((X(s) - 8, H - m + 6), str(s), fill="black")
    d.text((m, H - 22), "sampler steps (log)", fill="black")
    d.text((m, 10), "Frechet distance (log), classifier features", fill="black")
    img.save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--samplers", default=",".join(dk.SAMPLERS),
                    help="comma-separated samplers, each with options as NAME:KEY=VALUE:... (e.g. heun:s_churn=1)")
    ap.add_argument("--seeds", default="2", help="comma-separated sampling seeds; one row per seed (default: 2)")
    ap.add_argument("--out", type=Path, help="default: RUN_DIR/bench")
    ap.add_argument("--steps", default=",".join(map(str, STEPS)), help="step counts (DDPM also runs 1000)")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-speed", action="store_true", help="skip the speed and memory parts")
    args = ap.parse_args()
    out = args.out or args.run_dir / "bench"
    out.mkdir(parents=True, exist_ok=True)
    model = TrainedModel.load(args.run_dir)
    data = model.info["train"]["data"]
    result = {"run": str(args.run_dir), "steps_trained": model.step, "machine": machine.record()}
    m = result["machine"]
    print(f"CPU: {m['cpu']} (avx512_bf16 {m['avx512_bf16']}, amx_bf16 {m['amx_bf16']}); threads {m['threads']}; "
          f"torch {m['torch']}")
    if not args.skip_speed:
        print("sampling speed (images/s, batch 64, 20-step DPM-Solver++(2M)):")
        result["speed"] = sampling_speed(model)
        for k, v in result["speed"].items():
            print(f"  {k:22s} {v:8.1f}")
        result["peak_rss_mib"] = peak_memory(args.run_dir, data, out)
        print(f"peak memory (MiB): {result['peak_rss_mib']}")
    if not args.skip_quality:
        print(f"quality vs steps (FD at n={args.n}):")
        rows = quality_vs_steps(model, data, args.n, args.samplers.split(","),
                                tuple(int(v) for v in args.steps.split(",")),
                                tuple(int(v) for v in args.seeds.split(",")))
        result["quality"] = rows
        plot(rows, rows[0]["floor"], out / "quality_vs_steps.png")
    (out / "sampling.json").write_text(json.dumps(result, indent=2))
    print(out / "sampling.json")


if __name__ == "__main__":
    main()
