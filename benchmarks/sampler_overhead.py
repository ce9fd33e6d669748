"""Per-step overhead of each sampler loop with a zero-cost network, ours vs diffusers' scheduler loop.

The network returns a preallocated tensor (no work), so what is timed is the loop: the scheduler's / sampler's own
arithmetic, the denoiser's preconditioning and the noise draws. Batch 64 of 1x28x28, float32, same steps on both
sides, median of repeats.

    python benchmarks/sampler_overhead.py [--steps 50] [--repeats 7] [--threads 2]
"""

import argparse
import platform
import statistics
import time

import torch

import diffusekit as dk

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


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


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
    print(f"CPU: {cpu_name()}; threads: {torch.get_num_threads()}; torch {torch.__version__}; "
          f"diffusers {diffusers.__version__}; batch {shape}, {args.steps} steps, median of {args.repeats}\n")
    print("| sampler | diffusers scheduler | network calls | ours, us/call | diffusers, us/call | ours / diffusers |")
    print("|---|---|---|---|---|---|")
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


if __name__ == "__main__":
    main()
