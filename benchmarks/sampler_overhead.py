"""Per-step overhead of each sampler loop with a zero-cost network, ours vs diffusers' scheduler loop.

The network returns a preallocated tensor (no work), so what is timed is the loop: the scheduler's / sampler's own
arithmetic, the denoiser's preconditioning and the noise draws. Batch 64 of 1x28x28, float32, same steps on both
sides, median of `--repeats` timed runs (default 7) after one warm-up. Prints the table and writes it, with the
machine and the commit (benchmarks/machine.py), to `--out` (default
benchmarks/results/1-sampler-overhead/sampler_overhead.json; '' for nowhere).

    python benchmarks/sampler_overhead.py [--steps 50] [--repeats 7] [--threads 2] [--out FILE.json]
"""

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

import diffusekit as dk
import machine  # benchmarks/machine.py (python puts this script's folder first on sys.path)

RESULTS = Path(__file__).parent / "results" / "1-sampler-overhead" / "sampler_overhead.json"

PAIRS = [  # ours, diffusers scheduler, its settings
    ("ddpm", "DDPMScheduler", {"clip_sample": False}),
    ("ddim", "DDIMScheduler", {"clip_sample": False}),
    ("euler", "EulerDiscreteScheduler", {}),
    ("euler-ancestral", "EulerAncestralDiscreteScheduler", {}),
    ("heun", "HeunDiscreteScheduler", {"beta_start": 1e-4, "beta_end": 0.02}),
    ("dpmpp-2m", "DPMSolverMultistepScheduler", {"final_sigmas_type": "zero"}),
    ("dpmpp-2m-sde", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "final_sigmas_type": "zero"}),
    ("dpmpp-3m", "DPMSolverMultistepScheduler", {"solver_order": 3, "final_sigmas_type": "zero"}),
]


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS), help="JSON file for the rows and the machine ('' for nowhere)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import diffusers

    shape = (64, 1, 28, 28)
    zeros = torch.zeros(shape)
    net_calls = [0]

    def zero_net(x, t, *_):
        net_calls[0] += 1
        return zeros

    schedule = dk.DiscreteSchedule()
    den = dk.Denoiser(zero_net, schedule, prediction="eps")
    info = machine.record()
    print(f"CPU: {info['cpu']}; threads: {info['threads']}; GPU: {info['gpu']}; torch {info['torch']}; "
          f"diffusers {diffusers.__version__}; batch {shape}, {args.steps} steps, median of {args.repeats}\n")
    print("| sampler | diffusers scheduler | network calls | ours, us/call | diffusers, us/call | ours / diffusers |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name, cls, kw in PAIRS:
        sched = getattr(diffusers, cls)(**kw)

        def theirs():
            sched.set_timesteps(args.steps)
            g = torch.Generator().manual_seed(0)
            x = torch.randn(shape, generator=g) * sched.init_noise_sigma
            for t in sched.timesteps:
                x = sched.step(zero_net(sched.scale_model_input(x, t), t), t, x, **(
                    {"generator": g} if "generator" in sched.step.__code__.co_varnames else {})).prev_sample
            return x

        spacing = "karras" if name in ("euler", "heun", "euler-ancestral") else (
            "linspace" if name.startswith("dpmpp") else "leading")

        def ours():
            g = torch.Generator().manual_seed(0)
            return dk.sample(den, shape, sampler=name, steps=args.steps, spacing=spacing, generator=g)

        net_calls[0] = 0
        ours()
        calls = net_calls[0]
        t_ours = median_time(ours, args.repeats) / calls
        t_theirs = median_time(theirs, args.repeats) / calls
        print(f"| {name} | {cls} | {calls} | {t_ours * 1e6:.0f} | {t_theirs * 1e6:.0f} | {t_ours / t_theirs:.2f} |")
        rows.append({"sampler": name, "diffusers_scheduler": cls, "network_calls": calls, "ours_us_per_call":
                     t_ours * 1e6, "diffusers_us_per_call": t_theirs * 1e6, "ratio": t_ours / t_theirs})
    if args.out:
        out = {"benchmark": "sampler_overhead", "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
               "machine": info, "diffusers": diffusers.__version__, "batch": list(shape), "steps": args.steps,
               "repeats": args.repeats, "rows": rows}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
