"""Time to quality: minutes of training until samples reach a Frechet distance, diffusekit vs a diffusers loop.

Both train on the same data for a wall-clock budget and are checked the same way every `--eval-minutes` of training
time (the clock stops during checks): `--n` EMA samples drawn with the same sampler (our 20-step DPM-Solver++(2M) on
both networks, so the comparison is of training, not of samplers), Frechet distance in the data's classifier
features against n real images, beside the real-vs-real floor at the same n.

    ours:      `diffusekit train` with its defaults (small UNet, eps-prediction, min-SNR weighting, AdamW lr 1e-3
               with warm-up, EMA 0.999, bf16 autocast + channels_last where the CPU has native bf16)
    diffusers: UNet2DModel (attention at the lowest level, widths matched to our parameter count) + DDPMScheduler +
               AdamW + EMAModel with the defaults of diffusers' examples/unconditional_image_generation/
               train_unconditional.py (lr 1e-4, cosine schedule with 500 warm-up steps, betas (0.95, 0.999),
               weight decay 1e-6, EMA max decay 0.9999 with inv_gamma 1, power 3/4), in bf16 autocast (their
               --mixed_precision bf16) and with batch 64 rather than their 16 (faster per image on this CPU)

    python benchmarks/time_to_quality.py --minutes 15 --diffusers-minutes 20 --out runs/ttq
    OMP_NUM_THREADS=1 python benchmarks/time_to_quality.py --parallel --minutes 6 --diffusers-minutes 15 --eval-minutes 1

With --parallel the two train at the same time in two processes (give each one thread, as above), so both see the
same machine and the same load for the whole run; otherwise they run one after the other.
Writes OUT/ttq.json and OUT/ttq.png (FD against training minutes) and prints a markdown table.
"""

import argparse
import json
import math
import time
from pathlib import Path

import torch

import diffusekit as dk
import machine  # benchmarks/machine.py (python puts this script's folder first on sys.path)
from diffusekit.data import load_data
from diffusekit.eval import evaluate
from diffusekit.nets import param_count
from diffusekit.train import TrainConfig, train


def quality(denoiser, shape, n, seed=1, batch=250):
    xs = []
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for start in range(0, n, batch):
            b = min(batch, n - start)
            xs.append(dk.sample(denoiser, (b, *shape), sampler="dpmpp-2m", steps=20, generator=g).clamp(-1, 1))
    return torch.cat(xs)


def train_ours(args, out):
    cfg = TrainConfig(data=args.data, out=str(out / "ours"), minutes=args.minutes, model=args.model,
                      eval_minutes=args.eval_minutes, eval_samples=args.n, checkpoint_every=100000)
    train(cfg, progress=False)


def read_ours(out):
    """Our side's parameters, FD curve (minutes, FD, floor) and steps, from the run it wrote in OUT/ours."""
    rows = [json.loads(x) for x in open(out / "ours" / "metrics.jsonl")]
    return {"params": json.loads((out / "ours" / "run.json").read_text())["params"],
            "curve": [(r["elapsed_s"] / 60, r["eval"]["fd"], r["eval"]["fd_floor"]) for r in rows if "eval" in r],
            "steps": max(r["step"] for r in rows)}


def run_parallel(args):
    """Ours in a child process while the diffusers loop trains here; returns (ours, theirs)."""
    import multiprocessing as mp

    from diffusekit.nets import UNet, unet_config

    # our run.json does not exist yet: the parameter count the diffusers net is matched to, from the same preset
    target = param_count(UNet(unet_config(args.model, load_data(args.data).x.shape[1])))
    child = mp.get_context("spawn").Process(target=train_ours, args=(args, args.out))
    child.start()
    theirs = run_diffusers(args, target)
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"our training process failed (exit code {child.exitcode})")
    return read_ours(args.out), theirs


def run_diffusers(args, target_params):
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    ds = load_data(args.data)
    C, H, W = ds.x.shape[1:]

    def make(width):
        return UNet2DModel(sample_size=H, in_channels=C, out_channels=C,
                           block_out_channels=(width, 2 * width, 2 * width), layers_per_block=2,
                           down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
                           norm_num_groups=8, attention_head_dim=64)

    width = min(range(16, 129, 8), key=lambda w: abs(param_count(make(w)) - target_params))
    torch.manual_seed(0)
    unet = make(width)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75,
                   model_cls=UNet2DModel, model_config=unet.config)
    # the cosine schedule needs a planned length: the budget at the speed of the first 20 steps
    g = torch.Generator().manual_seed(0)
    x_all, B = ds.x, args.batch

    def step():
        idx = torch.randint(0, len(x_all), (B,), generator=g)
        x0 = x_all[idx]
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (B,), generator=g)
        xt = sched.add_noise(x0, noise, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pred = unet(xt, t).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        ema.step(unet.parameters())
        return loss.item()

    lr_sched = get_cosine_schedule_with_warmup(opt, 500, 10**9)
    t0 = time.perf_counter()
    for _ in range(20):
        step()
    per_step = (time.perf_counter() - t0) / 20
    planned = int(args.diffusers_minutes * 60 / per_step)
    lr_sched = get_cosine_schedule_with_warmup(opt, 500, planned)
    for _ in range(20):
        lr_sched.step()
    elapsed, steps, curve, next_eval = time.perf_counter() - t0, 20, [], args.eval_minutes * 60
    ema_net = make(width).eval()

    def check():
        ema.copy_to(ema_net.parameters())
        den = dk.Denoiser(lambda x, t: ema_net(x, t).sample, dk.DiscreteSchedule("linear"), prediction="eps")
        res = evaluate(quality(den, (C, H, W), args.n), args.data, metrics=("fd",), n=args.n, progress=False)
        curve.append((elapsed / 60, res["fd"]["value"], res["fd"]["floor"]))
        print(f"diffusers: {elapsed / 60:.1f} min, step {steps}: FD {res['fd']['value']:.3f}", flush=True)

    while elapsed < args.diffusers_minutes * 60:
        t1 = time.perf_counter()
        step()
        elapsed += time.perf_counter() - t1
        steps += 1
        if elapsed >= next_eval:
            check()
            next_eval += args.eval_minutes * 60
    if not curve or curve[-1][0] != elapsed / 60:
        check()
    return {"params": param_count(unet), "curve": curve, "steps": steps, "width": width, "planned_steps": planned}


def time_to(curve, target):
    """First training time (minutes, linear interpolation between checks) at which FD <= target; None if never."""
    prev = (0.0, math.inf)
    for t, fd, _ in curve:
        if fd <= target:
            if math.isinf(prev[1]):
                return t
            return prev[0] + (t - prev[0]) * (prev[1] - target) / (prev[1] - fd)
        prev = (t, fd)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--model", default="small")
    ap.add_argument("--minutes", type=float, default=15.0, help="our training budget")
    ap.add_argument("--diffusers-minutes", type=float, default=20.0, help="the diffusers loop's budget")
    ap.add_argument("--eval-minutes", type=float, default=2.5)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64, help="the diffusers loop's batch")
    ap.add_argument("--out", type=Path, default=Path("runs/ttq"))
    ap.add_argument("--skip-ours", action="store_true", help="reuse OUT/ours from an earlier run")
    ap.add_argument("--parallel", action="store_true",
                    help="train both at the same time in two processes (side by side under the same load)")
    ap.add_argument("--plot-only", action="store_true", help="redraw OUT/ttq.png from OUT/ttq.json")
    args = ap.parse_args()
    if args.plot_only:
        _plot(json.loads((args.out / "ttq.json").read_text()), args.out / "ttq.png")
        return
    if args.parallel and args.skip_ours:
        ap.error("--parallel trains both side by side; --skip-ours reuses an earlier run of ours: choose one")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.parallel:
        ours, theirs = run_parallel(args)
    else:
        if not args.skip_ours:
            train_ours(args, args.out)
        ours = read_ours(args.out)
        theirs = run_diffusers(args, ours["params"])
    target = min(fd for _, fd, _ in theirs["curve"])  # the best the diffusers loop reached in its budget
    t_ours, t_theirs = time_to(ours["curve"], target), time_to(theirs["curve"], target)
    result = {"data": args.data, "n": args.n, "target_fd": target, "ours": ours, "diffusers": theirs,
              "minutes_to_target": {"ours": t_ours, "diffusers": t_theirs},
              "ratio": None if t_ours is None or not t_theirs else t_ours / t_theirs, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "parallel": args.parallel,
              "machine": machine.record()}
    (args.out / "ttq.json").write_text(json.dumps(result, indent=2))
    print(f"\n| | params | steps | best FD (n={args.n}) | minutes to FD <= {target:.3f} |")
    print("|---|---|---|---|---|")
    for name, r, t in (("diffusekit", ours, t_ours), ("diffusers loop", theirs, t_theirs)):
        best = min(fd for _, fd, _ in r["curve"])
        print(f"| {name} | {r['params'] / 1e6:.2f}M | {r['steps']} | {best:.3f} | "
              f"{'not reached' if t is None else f'{t:.1f}'} |")
    print(f"\nreal-vs-real floor at n={args.n}: {ours['curve'][-1][2]:.3f}; ratio ours/diffusers: {result['ratio']}")
    _plot(result, args.out / "ttq.png")


def _plot(result, path):
    """FD against training minutes for both, log scale, drawn with Pillow."""
    from PIL import Image, ImageDraw

    W, H, m = 640, 400, 50
    curves = {"diffusekit": (result["ours"]["curve"], (200, 30, 30)),
              "diffusers": (result["diffusers"]["curve"], (30, 30, 200))}
    tmax = max(t for c, _ in curves.values() for t, _, _ in c)
    fds = [fd for c, _ in curves.values() for _, fd, _ in c] + [result["ours"]["curve"][-1][2]]
    lo, hi = math.log(min(fds)), math.log(max(fds))
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    X = lambda t: m + (W - 2 * m) * t / tmax  # noqa: E731
    Y = lambda fd: H - m - (H - 2 * m) * (math.log(fd) - lo) / max(hi - lo, 1e-9)  # noqa: E731
    d.rectangle([m, m, W - m, H - m], outline="black")
    for name, (c, col) in curves.items():
        pts = [(X(t), Y(fd)) for t, fd, _ in c]
        d.line(pts, fill=col, width=2)
        d.text((pts[-1][0] - 80, pts[-1][1] - 14), name, fill=col)
    floor = result["ours"]["curve"][-1][2]
    d.line([(m, Y(floor)), (W - m, Y(floor))], fill=(120, 120, 120))
    d.text((m + 4, Y(floor) - 12), "real-vs-real floor", fill=(120, 120, 120))
    target = result["target_fd"]  # the diffusers loop's best: the FD both are timed to
    for x0 in range(m, W - m, 12):
        d.line([(x0, Y(target)), (x0 + 6, Y(target))], fill=(0, 0, 0))
    d.text((W - m - 150, Y(target) + 4), f"target FD {target:.0f}", fill="black")
    for fd in (10, 20, 50, 100, 200, 500, 1000, 2000):
        if lo <= math.log(fd) <= hi:
            d.line([(m - 4, Y(fd)), (m, Y(fd))], fill="black")
            d.text((m - 34, Y(fd) - 6), str(fd), fill="black")
    d.text((m, H - m + 8), f"0 .. {tmax:.0f} training minutes", fill="black")
    d.text((m, 10), f"FD (log scale, n={result['n']}) on {result['data']}", fill="black")
    img.save(path)


if __name__ == "__main__":
    main()
