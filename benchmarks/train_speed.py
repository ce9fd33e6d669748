"""Training speed of diffusekit's UNet beside diffusers' UNet2DModel at a matched parameter count, in one process.

One step, the same for both: draw timesteps, add noise (DDPM, linear betas), forward, MSE on eps, backward, AdamW.
Configurations are timed round-robin (one step of each in turn, repeated) so that load from other processes on a
shared machine hits all of them alike; we report the median step. GFLOP/s = 3 x the FLOPs of one forward (counted by
torch.utils.flop_counter.FlopCounterMode) per step time.

    python benchmarks/train_speed.py --reexec             # 32x32x1, batch 64, both nets, fp32/bf16 x NCHW/CL
    python benchmarks/train_speed.py --profile ours:bf16-cl   # torch.profiler table for one configuration

"CPU ms" is the process CPU time per step (all threads): with --threads 1 it is the work itself and hardly moves
with load from other processes, so the ratio of CPU ms is the contention-robust comparison on a shared machine.

Run it under the allocator settings the CLI uses (see diffusekit.fast.allocator_env); `--reexec` does that.
"""

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from diffusekit import fast
from diffusekit.nets import UNet, param_count, unet_config

MODES = ("fp32", "fp32-cl", "bf16", "bf16-cl")


def make_ours(args):
    # "same": the widths and depths of the diffusers model below, (w, 2w, 2w), 2 res blocks per level, attention
    # only in the middle (our `small` preset is w=32 with attention at the lowest level too): compares the
    # implementations. "lean": about the same parameter count spent at lower resolution, (w/2, w, 2w, 2w) over four
    # levels, ~2.7x fewer FLOPs per image: compares designs at equal parameters.
    widths = dict(same=(args.width, (1, 2, 2)), lean=(args.width // 2, (1, 2, 4, 4)))[args.ours]
    cfg = unet_config("small", args.channels, 2, channels=widths[0], channel_mult=widths[1], num_res_blocks=2,
                      attn_levels=(), norm_groups=32)
    return UNet(cfg), lambda m, x, t: m(x, t)


def make_diffusers(args):
    from diffusers import UNet2DModel

    m = UNet2DModel(sample_size=args.size, in_channels=args.channels, out_channels=args.channels,
                    block_out_channels=(args.width, 2 * args.width, 2 * args.width),
                    down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3, layers_per_block=2)
    return m, lambda m, x, t: m(x, t).sample


MODELS = {"ours": make_ours, "diffusers": make_diffusers}


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
        self.x0 = torch.randn(B, args.channels, args.size, args.size)
        if mode.endswith("-cl"):
            self.x0 = self.x0.contiguous(memory_format=torch.channels_last)
        self.alpha_bar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
        self.B, self.times, self.cpu_times = B, [], []

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

    def flops(self):
        x = self.x0[:1].repeat(self.B, 1, 1, 1)
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            self.call(self.model, x, torch.zeros(self.B))
        return 3 * fc.get_total_flops()  # forward + backward (2x forward)


def machine_info(args):
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"CPU: {cpu}; threads: {torch.get_num_threads()}; torch {torch.__version__}; "
            f"native bf16: {fast.native_bf16()}; allocator env set: {fast.allocator_configured()}; "
            f"batch {args.batch}, {args.channels}x{args.size}x{args.size}, widths {args.width}/{2 * args.width}/"
            f"{2 * args.width} (ours: {args.ours}), optimizer AdamW({args.optim})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="ours,diffusers", help="comma list of: " + ",".join(MODELS))
    p.add_argument("--modes", default=",".join(MODES), help="comma list of: " + ",".join(MODES))
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32, help="image side")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--ours", choices=("same", "lean"), default="same",
                   help="our net: same widths as diffusers', or a FLOP-lean one at ~equal parameters")
    p.add_argument("--width", type=int, default=32, help="base width w: block widths (w, 2w, 2w), both nets")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per configuration")
    p.add_argument("--repeats", type=int, default=9, help="timed steps per configuration (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--optim", choices=("fused", "foreach", "loop"), default="fused",
                   help="AdamW implementation, the same for both nets")
    p.add_argument("--profile", default=None, metavar="MODEL:MODE", help="print a torch.profiler table instead")
    p.add_argument("--reexec", action="store_true", help="re-execute with diffusekit.fast.allocator_env() set")
    args = p.parse_args()
    if args.reexec:
        fast.reexec_with_allocator_env()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine_info(args))

    if args.profile:
        name, mode = args.profile.split(":")
        run = Run(name, mode, args)
        for _ in range(args.warmup):
            run.step()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                run.step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
        return

    runs = [Run(n, m, args) for n in args.models.split(",") for m in args.modes.split(",")]
    flops = {r.name: r.flops() for r in runs}
    for r in runs:
        for _ in range(args.warmup):
            r.step()
    for _ in range(args.repeats):  # round-robin: contention hits every configuration alike
        for r in runs:
            r.timed_step()

    print(f"\n{'model':10s} {'mode':8s} {'params':>10s} {'GFLOP/img':>10s} {'step ms':>9s} {'img/s':>8s} "
          f"{'GFLOP/s':>8s} {'CPU ms':>8s}  (medians of {args.repeats}; min..max img/s)")
    best = {}
    for r in runs:
        t = statistics.median(r.times)
        ips = r.B / t
        best[r.name] = max(best.get(r.name, 0), ips)
        print(f"{r.name:10s} {r.mode:8s} {param_count(r.model):10,d} {flops[r.name] / r.B / 1e9:10.3f} "
              f"{t * 1e3:9.1f} {ips:8.1f} {flops[r.name] / t / 1e9:8.1f} {statistics.median(r.cpu_times) * 1e3:8.1f}  "
              f"({r.B / max(r.times):.0f}..{r.B / min(r.times):.0f})")
    if "ours" in best and "diffusers" in best:
        print(f"\nbest ours / best diffusers: {best['ours'] / best['diffusers']:.2f}x")


if __name__ == "__main__":
    main()
