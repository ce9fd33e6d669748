"""Training speed and FLOP/s as a fraction of the machine's bf16 matmul peak: diffusekit's UNets beside diffusers'
UNet2DModel and lucidrains' denoising-diffusion-pytorch Unet at matched parameter counts, all in one process.

One step, the same for every net: draw timesteps, add noise (DDPM, linear betas), forward, MSE on eps, backward,
AdamW (fused for all, so the optimizer does not decide the comparison). Each net runs in four modes (fp32 / bf16
autocast, NCHW / channels_last); an anchor is judged by its best mode.

Order of one run, so that a drift in machine speed shows: bf16+fp32 matmul peak, then every configuration's FLOP
count and warm-up, then the timed steps round-robin (one step of each configuration in turn, repeated, so load from
other processes on a shared machine hits all alike; the median step is reported), then the peak again. The fraction
of peak uses the higher of the two peak measurements (the lower fraction).

FLOPs per step: counted, not estimated, by torch.utils.flop_counter.FlopCounterMode over one whole training step
(forward + backward as executed; see benchmarks/flops.py). It counts only matrix products: convolutions, linear
layers / matmul / einsum (mm, addmm, bmm) and scaled-dot-product attention (whose CPU kernels benchmarks/flops.py
registers; torch's counter misses them). Norms, activations, elementwise ops and the optimizer count zero, so
"GFLOP/s" is useful matrix-product work per second, the quantity a matmul peak bounds.

    python benchmarks/train_speed.py --reexec                        # all; writes train_speed.json to
                                                                     # benchmarks/results/2-training-speed/
    python benchmarks/train_speed.py --reexec --size 28              # the `small` preset at its native 28x28
    python benchmarks/train_speed.py --profile ours-small:bf16-cl    # where one configuration's time goes

Models: `ours-small` is the `small` preset exactly as `diffusekit train` builds it (attention at the lowest level and
in the middle, 8 norm groups); `ours` is our UNet in diffusers' layout (widths w/2w/2w, 2 res blocks per level,
attention only in the middle: compares implementations); `diffusers` is UNet2DModel in that layout; `lucidrains` is
denoising-diffusion-pytorch's Unet with dim_mults (1, 2, 2) and its dim chosen so its parameter count is closest to
`--match`'s (its defaults otherwise: linear attention at the upper levels, full attention at the lowest and middle).

"CPU ms" is the process CPU time per step (all threads): with --threads 1 it is the work itself and hardly moves
with load from other processes, so the ratio of CPU ms is the contention-robust comparison on a shared machine.
"% pk CPU" is the same idea for the fraction of peak: training GFLOP per CPU-second over the bf16 matmul's GFLOP
per CPU-second, both counting every thread's CPU time (the matmul's over a block of calls of at least
flops.MIN_CPU_BLOCK_S, see flops.matmul_gflops). On a quiet machine it agrees with the wall-clock fraction ("% bf16
pk", the issue's figure) when the step keeps every thread as busy as the matmul does, and reads higher where parts
of the step run on one thread while the others sleep (wall clock counts that against the step, CPU time does not).
Result files written before this fix took the matmul's per-CPU-second rate per 2 ms call, which over-read it about
2x at 2 threads, so their `frac_bf16_peak_cpu` is about half what it should be (BENCHMARKS.md section 2).

Install the anchors (torch first and pinned; denoising-diffusion-pytorch without its dependencies, which would pull
PyPI's CUDA torchvision; torchvision does not import beside the CPU torch, so `import_lucidrains_unet` gives it an
empty stand-in: the Unet never uses it):

    pip install torch==2.13.0 && pip install -e ".[bench]" torch==2.13.0 \\
        && pip install --no-deps denoising-diffusion-pytorch==2.3.4
"""

import argparse
import datetime
import importlib.machinery
import json
import shlex
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

import flops  # benchmarks/flops.py (python puts this script's folder first on sys.path)
import machine  # benchmarks/machine.py
from diffusekit import fast
from diffusekit.nets import UNet, param_count, unet_config

MODES = ("fp32", "fp32-cl", "bf16", "bf16-cl")
RESULTS = Path(__file__).resolve().parent / "results" / "2-training-speed" / "train_speed.json"
LUCIDRAINS_MULTS = (1, 2, 2)  # three levels like ours: 32 -> 16 -> 8 (28 -> 14 -> 7)


def make_ours_small(args):
    # the preset as `diffusekit train --model small` builds it for unconditional data (train/setup.py, network_config)
    return UNet(unet_config("small", args.channels, 2)), lambda m, x, t: m(x, t)


def make_ours(args):
    # "same": the widths and depths of the diffusers model below, (w, 2w, 2w), 2 res blocks per level, attention
    # only in the middle: compares the implementations. "lean": about the same parameter count spent at lower
    # resolution, (w/2, w, 2w, 2w) over four levels, ~2.7x fewer FLOPs per image: compares designs.
    widths = dict(same=(args.width, (1, 2, 2)), lean=(args.width // 2, (1, 2, 4, 4)))[args.ours]
    cfg = unet_config("small", args.channels, 2, channels=widths[0], channel_mult=widths[1], num_res_blocks=2,
                      attn_levels=(), norm_groups=32)
    return UNet(cfg), lambda m, x, t: m(x, t)


def make_diffusers(args):
    try:
        from diffusers import UNet2DModel
    except ImportError as e:
        raise SystemExit(f"the diffusers anchor needs diffusers ({e}); install: pip install -e '.[bench]' "
                         f"torch==2.13.0") from e

    m = UNet2DModel(sample_size=args.size, in_channels=args.channels, out_channels=args.channels,
                    block_out_channels=(args.width, 2 * args.width, 2 * args.width),
                    down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3, layers_per_block=2)
    return m, lambda m, x, t: m(x, t).sample


def import_lucidrains_unet():
    """denoising_diffusion_pytorch.Unet, importable without torchvision.

    The package imports torchvision at the top (for its Trainer's data pipeline) but its Unet never touches it, and
    PyPI's torchvision fails to import beside the CPU torch ("operator torchvision::nms does not exist"). So if the real
    torchvision does not import, empty stand-in modules take its place during this import only and are removed
    afterwards (so diffusers, imported later, does not see a fake torchvision)."""
    try:
        import torchvision  # noqa: F401  a working torchvision: use it
        stand_in = {}
    except Exception:  # missing, or the CUDA build that fails beside CPU torch
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]  # a half-imported torchvision
        tv = types.ModuleType("torchvision")
        tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
        tv.transforms, tv.utils = types.ModuleType("torchvision.transforms"), types.ModuleType("torchvision.utils")
        stand_in = {"torchvision": tv, "torchvision.transforms": tv.transforms, "torchvision.utils": tv.utils}
        sys.modules.update(stand_in)
    try:
        from denoising_diffusion_pytorch import Unet
    except ImportError as e:
        raise SystemExit(f"the lucidrains anchor needs denoising-diffusion-pytorch and its pure-Python dependencies "
                         f"({e}); install: pip install -e '.[bench]' torch==2.13.0 && "
                         f"pip install --no-deps denoising-diffusion-pytorch==2.3.4") from e
    finally:
        for name in stand_in:
            sys.modules.pop(name, None)
    return Unet


def lucidrains_dim(args, target: int) -> int:
    """Unet `dim` (a multiple of 4, its sinusoidal embedding needs an even one) whose parameter count is closest
    to `target`."""
    if args.lucid_dim:
        return args.lucid_dim
    Unet = import_lucidrains_unet()
    counts = {}
    for dim in range(8, 257, 4):
        counts[dim] = param_count(Unet(dim=dim, dim_mults=LUCIDRAINS_MULTS, channels=args.channels))
        if counts[dim] > target:
            break
    return min(counts, key=lambda d: abs(counts[d] - target))


def make_lucidrains(args):
    Unet = import_lucidrains_unet()
    m = Unet(dim=args.lucid_dim, dim_mults=LUCIDRAINS_MULTS, channels=args.channels)
    return m, lambda m, x, t: m(x, t)


MODELS = {"ours-small": make_ours_small, "ours": make_ours, "diffusers": make_diffusers,
          "lucidrains": make_lucidrains}


class Run:
    """One (model, mode) configuration with its own optimizer and a closure for one training step."""

    def __init__(self, name, mode, args):
        torch.manual_seed(0)
        self.name, self.mode = name, mode
        self.model, self.call = MODELS[name](args)
        if mode.endswith("-cl"):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, **({"fused": True} if args.optim == "fused"
                                     else {"foreach": args.optim == "foreach"}))
        self.dtype = torch.bfloat16 if mode.startswith("bf16") else None
        B = args.batch
        self.x0 = torch.randn(B, args.channels, args.size, args.size)  # (B, C, H, W)
        if mode.endswith("-cl"):
            self.x0 = self.x0.contiguous(memory_format=torch.channels_last)
        self.alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
        self.B, self.times, self.cpu_times = B, [], []
        self.params = param_count(self.model)
        self.flops, self.flops_by_op = None, {}

    def step(self):
        t = torch.randint(0, 1000, (self.B,))
        noise = torch.randn_like(self.x0)
        ab = self.alpha_bar[t].view(-1, 1, 1, 1)
        x = ab.sqrt() * self.x0 + (1 - ab).sqrt() * noise
        with torch.autocast("cpu", dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            eps = self.call(self.model, x, t.float())
        loss = F.mse_loss(eps.float(), noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def timed_step(self):
        t0, c0 = time.perf_counter(), time.process_time()
        self.step()
        self.times.append(time.perf_counter() - t0)
        self.cpu_times.append(time.process_time() - c0)

    def count_flops(self):
        """FLOPs of one whole training step in this configuration (this step also serves as a warm-up)."""
        self.flops, self.flops_by_op = flops.count_flops(self.step)
        return self.flops

    def result(self, bf16_peak, fp32_peak, bf16_peak_cpu) -> dict:
        t, cpu = statistics.median(self.times), statistics.median(self.cpu_times)
        gflops = self.flops / t / 1e9
        return {"model": self.name, "mode": self.mode, "params": self.params, "batch": self.B,
                "gflop_per_step": self.flops / 1e9, "gflop_per_img": self.flops / self.B / 1e9,
                "gflop_by_op": {k: v / 1e9 for k, v in self.flops_by_op.items()},
                "step_ms_median": t * 1e3, "step_ms_all": [s * 1e3 for s in self.times],
                "img_s": self.B / t, "img_s_min": self.B / max(self.times), "img_s_max": self.B / min(self.times),
                "achieved_gflops": gflops, "frac_bf16_peak": gflops / bf16_peak, "frac_fp32_peak": gflops / fp32_peak,
                "cpu_ms_median": cpu * 1e3, "gflop_per_cpu_s": self.flops / cpu / 1e9,
                "frac_bf16_peak_cpu": self.flops / cpu / 1e9 / bf16_peak_cpu}


def machine_info(args) -> dict:
    info = machine.record()
    info.update(native_bf16=fast.native_bf16(), allocator_env_set=fast.allocator_configured())
    return info


def describe(info, args) -> str:
    return (f"CPU: {info['cpu']} ({info['logical_cpus']} logical CPUs; avx512_bf16 {info['avx512_bf16']}, "
            f"amx_bf16 {info['amx_bf16']}); threads: {info['threads']}; torch {info['torch']} (oneDNN "
            f"{info['onednn']}); allocator env set: {info['allocator_env_set']}; load average {info['load_average']}\n"
            f"batch {args.batch}, {args.channels}x{args.size}x{args.size}, optimizer AdamW({args.optim}), "
            f"warm-up {args.warmup}, repeats {args.repeats}")


def print_peak(label, peak):
    parts = [f"{d} " + ", ".join(f"{n}: {r['median']:.0f}" for n, r in peak[d].items()) for d in ("bf16", "fp32")]
    print(f"matmul peak {label} (GFLOP/s, median of {peak['repeats']} per size): " + "; ".join(parts))


def param_match(runs, reference) -> dict:
    """Each model's parameter count and its ratio to the reference model's."""
    counts = {}
    for r in runs:
        counts.setdefault(r.name, r.params)
    ref = counts.get(reference)
    return {n: {"params": p, "ratio_to_" + reference: (p / ref if ref else None)} for n, p in counts.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="ours-small,ours,diffusers,lucidrains",
                   help="comma list of: " + ",".join(MODELS))
    p.add_argument("--modes", default=",".join(MODES), help="comma list of: " + ",".join(MODES))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32, help="image side (all nets take 28 and 32)")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--ours", choices=("same", "lean"), default="same",
                   help="the `ours` net: diffusers' widths, or a FLOP-lean one at ~equal parameters")
    p.add_argument("--width", type=int, default=32, help="base width w of `ours` and `diffusers`: (w, 2w, 2w)")
    p.add_argument("--match", choices=("ours-small", "ours", "diffusers"), default="ours-small",
                   help="the model whose parameter count lucidrains' Unet is sized to")
    p.add_argument("--lucid-dim", type=int, default=None, help="lucidrains Unet dim (default: matched, see --match)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per configuration (after the counted one)")
    p.add_argument("--repeats", type=int, default=9, help="timed steps per configuration (median reported)")
    p.add_argument("--peak-sizes", default="1024,2048,4096",
                   help="square matmul sizes for the peak (the best size's median is the peak)")
    p.add_argument("--peak-repeats", type=int, default=5, help="timed matmuls per size and dtype (median)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--optim", choices=("fused", "foreach", "loop"), default="fused",
                   help="AdamW implementation, the same for every net")
    p.add_argument("--json", default=str(RESULTS), help="where to write the results ('' for nowhere)")
    p.add_argument("--profile", default=None, metavar="MODEL:MODE",
                   help="instead: FLOP-bearing ops' time and GFLOP/s, and the rest, for one configuration")
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--reexec", action="store_true", help="re-execute with diffusekit.fast.allocator_env() set")
    args = p.parse_args()
    if args.reexec:
        fast.reexec_with_allocator_env()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info(args)
    print(describe(info, args))

    names = [args.profile.split(":")[0]] if args.profile else args.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    if "lucidrains" in names:
        target = param_count(MODELS[args.match](args)[0])
        args.lucid_dim = lucidrains_dim(args, target)
        print(f"lucidrains Unet: dim={args.lucid_dim}, dim_mults={LUCIDRAINS_MULTS} (parameters matched to "
              f"{args.match}'s {target:,})")

    if args.profile:
        name, mode = args.profile.split(":")
        run = Run(name, mode, args)
        run.count_flops()
        for _ in range(args.warmup):
            run.step()
        step_ms, rows, others = flops.time_breakdown(run.step, args.profile_steps, run.flops_by_op)
        print(f"{name} {mode}: {run.params:,} params, {run.flops / 1e9:.2f} GFLOP per step (batch {run.B})")
        flops.print_breakdown(step_ms, rows, others)
        return

    runs = [Run(n, m, args) for n in names for m in args.modes.split(",")]
    sizes = tuple(int(s) for s in args.peak_sizes.split(","))
    peak_before = flops.measure_peak(sizes, repeats=args.peak_repeats)
    print_peak("before", peak_before)
    for r in runs:
        r.count_flops()
        for _ in range(args.warmup):
            r.step()
    for _ in range(args.repeats):  # round-robin: contention hits every configuration alike
        for r in runs:
            r.timed_step()
    peak_after = flops.measure_peak(sizes, repeats=args.peak_repeats)
    print_peak("after ", peak_after)
    bf16_peak = max(peak_before["bf16_peak"], peak_after["bf16_peak"])
    bf16_peak_cpu = max(peak_before["bf16_peak_cpu"], peak_after["bf16_peak_cpu"])
    fp32_peak = max(peak_before["fp32_peak"], peak_after["fp32_peak"])
    drift = peak_after["bf16_peak"] / peak_before["bf16_peak"] - 1
    print(f"bf16 peak used: {bf16_peak:.0f} GFLOP/s (after vs before: {drift:+.0%}"
          f"{'; the machine speed changed during the run, treat the fractions with care' if abs(drift) > 0.1 else ''})"
          f"; fp32 peak {fp32_peak:.0f}; bf16 per CPU-second {bf16_peak_cpu:.0f}")

    results = [r.result(bf16_peak, fp32_peak, bf16_peak_cpu) for r in runs]
    print(f"\n{'model':11s} {'mode':8s} {'params':>10s} {'GFLOP/step':>10s} {'GFLOP/img':>9s} {'step ms':>8s} "
          f"{'img/s':>7s} {'GFLOP/s':>8s} {'% bf16 pk':>9s} {'CPU ms':>8s} {'% pk CPU':>8s}  "
          f"(medians of {args.repeats}; min..max img/s)")
    for res in results:
        print(f"{res['model']:11s} {res['mode']:8s} {res['params']:10,d} {res['gflop_per_step']:10.2f} "
              f"{res['gflop_per_img']:9.3f} {res['step_ms_median']:8.1f} {res['img_s']:7.1f} "
              f"{res['achieved_gflops']:8.1f} {100 * res['frac_bf16_peak']:8.1f}% {res['cpu_ms_median']:8.1f} "
              f"{100 * res['frac_bf16_peak_cpu']:7.1f}%  ({res['img_s_min']:.0f}..{res['img_s_max']:.0f})")

    best = {}
    for res in results:
        if res["model"] not in best or res["img_s"] > best[res["model"]]["img_s"]:
            best[res["model"]] = res
    print("\nbest mode per model:")
    for name, res in best.items():
        print(f"  {name:11s} {res['mode']:8s} {res['img_s']:7.1f} img/s, {res['achieved_gflops']:6.1f} GFLOP/s = "
              f"{100 * res['frac_bf16_peak']:.1f}% of the bf16 matmul peak (goal >= 35%: "
              f"{'met' if res['frac_bf16_peak'] >= 0.35 else 'not met'}); by CPU time "
              f"{100 * res['frac_bf16_peak_cpu']:.1f}%")
    ratios = {}
    for ours in [n for n in best if n.startswith("ours")]:
        for anchor in [n for n in best if not n.startswith("ours")]:
            ratios[f"{ours}/{anchor}"] = best[ours]["img_s"] / best[anchor]["img_s"]
            print(f"  best {ours} / best {anchor}: {ratios[f'{ours}/{anchor}']:.2f}x images/s")

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    print(f"\nreproduce: {command}")
    if args.json:
        out = {
            "benchmark": "train_speed", "issue": "4, benchmark 1",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command, "machine": info, "settings": vars(args),
            "flop_counting": "FlopCounterMode over one whole training step (forward + backward as executed): "
                             "convolutions, mm/addmm/bmm, scaled-dot-product attention (CPU kernels added); "
                             "norms, activations, elementwise ops and the optimizer count zero",
            "lucidrains": {"dim": args.lucid_dim, "dim_mults": list(LUCIDRAINS_MULTS), "matched_to": args.match}
            if "lucidrains" in names else None,
            "param_match": param_match(runs, args.match),
            "peak_before": peak_before, "peak_after": peak_after,
            "bf16_peak_gflops": bf16_peak, "fp32_peak_gflops": fp32_peak, "peak_drift": drift,
            "bf16_peak_gflop_per_cpu_s": bf16_peak_cpu,
            "runs": results, "best": {n: {"mode": r["mode"], "img_s": r["img_s"], "achieved_gflops":
                                          r["achieved_gflops"], "frac_bf16_peak": r["frac_bf16_peak"],
                                          "frac_bf16_peak_cpu": r["frac_bf16_peak_cpu"]}
                                      for n, r in best.items()},
            "ratios_img_s": ratios,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
