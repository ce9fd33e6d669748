"""Reconstruction from incomplete data with a diffusion prior, against the classical baselines (issue 6).

(a) MRI on phantoms. A prior trained on the `phantoms` data set (seed 0); test images it never saw: --n phantoms
    drawn with another seed (--heldout-seed, default 1: every image's ellipses come from an independent PCG64
    stream), plus scikit-image's Shepp-Logan phantom (its own 400x400 raster, area-resized). For each acceleration
    (Cartesian lines, fully sampled centre as fastMRI), the measurement y = M FFT(x) (+ --noise) and:
        zero-filled   Re IFFT(y)
        TV            min 1/2 ||A x - y||^2 + lam TV(x) on [-1, 1], lam tuned per acceleration by PSNR on
                      --tune-n training phantoms (seed 0: the first images of the training set, never a test image)
        ddnm (, dps)  `diffusekit.inverse.reconstruct` with the trained model, one posterior sample per image
                      (--samples K: the mean of K, the posterior-mean estimate that PSNR favours; one sample's
                      scores are then reported beside it as ddnm_1)
    PSNR/SSIM per image; mean and standard deviation over the n images, and the paired difference to TV (its mean,
    std and standard error). Shepp-Logan: --sl-samples posterior samples of its one measurement (the std is then
    over posterior samples; with --noise each copy also gets its own noise draw).
    Goal (issue 6): ddnm >= TV + 2 dB at 4x on the held-out phantoms.
(b) Inpainting on mnist5k, a central 14x14 box and the right half missing: ddnm and repaint against harmonic fill,
    PSNR/SSIM, and the Frechet distance of the n filled images to n real images in the mnist5k classifier's
    features, beside the floor: FD of the n true images to the same real images. mnist5k has no held-out split
    and there is no other MNIST installed, so the test images are training images of the prior: the last
    n/10 of each class (mnist5k is sorted by class); the real reference set is the first n/10 of each class.
    A prior that memorised its training set would be favoured, so read (b) as an upper bound for unseen digits.
(c) Super-resolution on mnist5k, x2 and x4 (--scales; the measurement is the mean of each s x s block): ddnm
    against bicubic upsampling of the low-resolution image, the same test and reference images and metrics as (b).
(d) The MRI prior as a plain denoiser (--part prior, seconds): PSNR of D(x + sigma n, sigma) on the held-out
    phantoms at noise levels from 0.01 to 0.5, beside the noisy input's and that of TV denoising (Chambolle; its
    weight picked per level by PSNR against the truth, which favours TV). DDNM's last steps are such denoisings:
    a prior that barely beats its input at low noise leaves errors there that TV, exact on piecewise-constant
    images, does not have. Network in fp32.

Steps (defaults of `diffusekit.inverse.task.DEFAULT_STEPS`): ddnm 100 (the DDNM paper's), repaint 50 walked ~8x by
its resampling (jump 10 x 10: 410 network calls), dps 100 (the paper: 1000; DPS is approximate at any length).

    python benchmarks/reconstruction_table.py --mri-run runs/phantoms --mnist-run runs/ttq/ours
    python benchmarks/reconstruction_table.py --part mri --mri-run runs/phantoms --accelerations 2,4,6,8 \\
        --methods ddnm,dps
    python benchmarks/reconstruction_table.py --part prior --mri-run runs/phantoms --out /tmp/prior
    python benchmarks/reconstruction_table.py --mri-run R --mnist-run R2 --n 4 --inpaint-n 20 --steps 5 --tune-n 4 \\
        --tv-iters 30 --out /tmp/recon-smoke        # smoke test: seconds, numbers meaningless
Writes OUT/prior-denoising.json, OUT/reconstruction-mri.json, reconstruction-mri.png (PSNR against acceleration), reconstruction-mri-cases-Ax.png,
OUT/reconstruction-{inpaint,superres}.json, reconstruction-{inpaint,superres}-cases.png, and prints markdown tables.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import machine  # benchmarks/machine.py (python puts this script's folder first on sys.path)
from diffusekit.data import load_data
from diffusekit.data.dataset import resize_square
from diffusekit.data.phantoms import DEFAULT_SIZE, make_phantoms, shepp_logan
from diffusekit.eval import frechet_distance_from_features, load_classifier
from diffusekit.eval.classifier import classifier_outputs
from diffusekit.inverse import tune_tv_lambda
from diffusekit.inverse.metrics import psnr as image_psnr
from diffusekit.inverse.task import (DEFAULT_STEPS, LABELS, MAIN_BASELINE, reconstruct_image, side_by_side,
                                     task_operator)
from diffusekit.model import TrainedModel
from diffusekit.fast import pick_device

COLOURS = {"zero_filled": (120, 120, 120), "tv": (30, 30, 200), "ddnm": (200, 30, 30), "dps": (30, 150, 30),
           "repaint": (200, 120, 0), "harmonic_fill": (120, 120, 120)}


# ---------------------------------------------------------------------------------------------------------------------
# Helpers


def label(name: str) -> str:
    """Display name: the baselines' labels; METHOD_1 is one posterior sample where METHOD averages several."""
    return f"{name[:-2]}, 1 sample" if name.endswith("_1") else LABELS.get(name, name)


def stats(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


def paired(a, b) -> dict:
    """a - b image by image: mean, std, standard error, and on how many images a is ahead."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    std = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    return {"mean": float(d.mean()), "std": std, "se": std / math.sqrt(len(d)), "n": len(d),
            "wins": int((d > 0).sum())}


def steps_for(args, method):
    return args.steps if args.steps is not None else DEFAULT_STEPS[method]


def run_batches(model, x, task, method, args, baselines, **kw):
    """reconstruct_image over chunks of --batch images; per-image metrics and images concatenated."""
    out = {"reconstruction": [], "single": [], "baselines": {}, "per_image": {}, "seconds": 0.0, "y_pictures": []}
    options = {"eta": args.eta} if args.eta is not None else {}
    for k, start in enumerate(range(0, len(x), args.batch)):
        res = reconstruct_image(model, x[start:start + args.batch], task, method=method,
                                steps=steps_for(args, method), seed=args.seed + k, sigma_y=args.noise,
                                samples=args.samples, baselines=baselines, **kw, **options)
        out["reconstruction"].append(res["reconstruction"])
        out["single"].append(res["samples"][:, 0] if "samples" in res else res["reconstruction"])
        out["y_pictures"].append(res["measurement"])
        for name, b in res["baselines"].items():
            out["baselines"].setdefault(name, []).append(b)
        for name, m in res["per_image"].items():
            slot = out["per_image"].setdefault(name, {"psnr": [], "ssim": []})
            slot["psnr"] += m["psnr"]
            slot["ssim"] += m["ssim"] or []
        out["seconds"] += res["seconds"]["solver"]
        out["settings"] = res["settings"]
    out["reconstruction"] = torch.cat(out["reconstruction"])
    out["single"] = torch.cat(out["single"])
    out["y_pictures"] = torch.cat(out["y_pictures"])
    out["baselines"] = {k: torch.cat(v) for k, v in out["baselines"].items()}
    return out


def summary(per_image: dict) -> dict:
    return {m: stats(v) for m, v in per_image.items() if v}


def _phantoms(n, size, seed, image_size):
    """Phantoms as the training set has them: drawn at 64x64, then resized the way `load_data` resized them."""
    x = make_phantoms(n, DEFAULT_SIZE, seed=seed)
    if image_size is not None:
        x, _ = resize_square(x, image_size, "phantoms")
    if x.shape[-1] != size:
        raise ValueError(f"phantoms come out {tuple(x.shape[-2:])}, the model works at {size}x{size}")
    return x


def plot(series: dict, path: Path, title: str, xlabel: str):
    """Mean PSNR against x with +-1 std bars, one line per method, drawn with Pillow (no matplotlib here)."""
    from PIL import Image, ImageDraw

    W, H, m = 640, 420, 60
    xs = sorted({x for pts in series.values() for x, _, _ in pts})
    lo = min(mu - sd for pts in series.values() for _, mu, sd in pts)
    hi = max(mu + sd for pts in series.values() for _, mu, sd in pts)
    lo, hi = math.floor(lo) - 1, math.ceil(hi) + 1
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    inner = 30  # keep the first and last points off the frame
    X = lambda v: (m + inner + (W - 2 * m - 2 * inner) * (v - xs[0]) / (xs[-1] - xs[0])  # noqa: E731
                   if len(xs) > 1 else W / 2)
    Y = lambda v: H - m - (H - 2 * m) * (v - lo) / (hi - lo)  # noqa: E731
    d.rectangle([m, m, W - m, H - m], outline="black")
    step = max(1, round((hi - lo) / 8))
    for v in range(lo, hi + 1, step):
        d.line([(m - 4, Y(v)), (m, Y(v))], fill="black")
        d.text((m - 30, Y(v) - 6), f"{v}", fill="black")
    for v in xs:
        d.line([(X(v), H - m), (X(v), H - m + 4)], fill="black")
        d.text((X(v) - 8, H - m + 8), f"{v:g}x" if "accel" in xlabel else f"{v:g}", fill="black")
    for k, (name, pts) in enumerate(series.items()):
        col = COLOURS.get(name, tuple(min(255, c + 90) for c in COLOURS.get(name[:-2], (0, 0, 0))))
        pts = sorted(pts)
        dx = (k - (len(series) - 1) / 2) * 4  # spread the error bars apart
        d.line([(X(x) + dx, Y(mu)) for x, mu, _ in pts], fill=col, width=2)
        for x, mu, sd in pts:
            d.line([(X(x) + dx, Y(mu - sd)), (X(x) + dx, Y(mu + sd))], fill=col, width=1)
            d.ellipse([X(x) + dx - 3, Y(mu) - 3, X(x) + dx + 3, Y(mu) + 3], fill=col)
        d.text((W - m - 110, m + 8 + 14 * k), label(name), fill=col)
    d.text((m, 10), title, fill="black")
    d.text((m, 26), "PSNR (dB), mean +- 1 std over images", fill="black")
    d.text((W / 2 - 40, H - m + 24), xlabel, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def caption(per_image, name, idx):
    p = per_image[name]["psnr"]
    s = per_image[name]["ssim"]
    return [f"{p[i]:.1f} dB" + (f", {s[i]:.2f}" if s else "") for i in idx]


# ---------------------------------------------------------------------------------------------------------------------
# (a) MRI


def run_mri(args) -> dict:
    t_start = time.perf_counter()
    model = TrainedModel.load(args.mri_run, device=args.device)
    C, H, W = model.shape
    if C != 1 or H != W:
        raise ValueError(f"the MRI benchmark needs a grayscale square-image prior; {args.mri_run} makes {model.shape}")
    train = model.info["train"]
    notes = []
    if train["data"] != "phantoms":
        notes.append(f"the prior was trained on {train['data']!r}, not 'phantoms': the held-out phantoms are not "
                     "from its training distribution")
    x_test = _phantoms(args.n, H, args.heldout_seed, train.get("image_size"))
    x_tune = _phantoms(args.tune_n, H, 0, train.get("image_size"))  # the first tune_n images of the training set
    sl = shepp_logan(H).repeat(args.sl_samples, 1, 1, 1)
    accs = [float(a) for a in args.accelerations.split(",")]
    rows = []
    for acc in accs:
        op = task_operator("mri", (H, W), acceleration=acc, sampling=args.sampling, mask_seed=0, sigma_y=args.noise)
        t0 = time.perf_counter()
        lam, scores = tune_tv_lambda(op, x_tune, iters=args.tv_iters, generator=torch.Generator().manual_seed(0))
        row = {"acceleration": acc, "measured_acceleration": op.acceleration, "tv_lambda": lam,
               "tv_scores": {f"{k:.3g}": v for k, v in scores.items()},
               "tv_tuning_seconds": round(time.perf_counter() - t0, 2), "heldout": {}, "shepp_logan": {},
               "seconds": {}, "denoiser_calls": {}}
        pictures = {}
        for part, x in (("heldout", x_test), ("shepp_logan", sl)):
            per = {}
            for j, method in enumerate(args.methods.split(",")):
                res = run_batches(model, x, "mri", method, args, baselines=j == 0, acceleration=acc,
                                  sampling=args.sampling, tv_lambda=lam, tv_iters=args.tv_iters)
                per[method] = res["per_image"]["reconstruction"]
                if "single_sample" in res["per_image"]:  # --samples K > 1: also one sample's scores
                    per[f"{method}_1"] = res["per_image"]["single_sample"]
                if j == 0:
                    per.update({k: res["per_image"][k] for k in res["baselines"]})
                    pictures[part] = {"truth": x, "k-space (log)": res["y_pictures"], **res["baselines"]}
                pictures[part][method] = res["reconstruction"]
                row["seconds"][f"{method}_{part}"] = round(res["seconds"], 2)
                row["denoiser_calls"][method] = res["settings"]["denoiser_calls"]
            row[part] = {name: {"psnr": stats(v["psnr"]), "ssim": stats(v["ssim"]) if v["ssim"] else None,
                                "psnr_per_image": v["psnr"]} for name, v in per.items()}
            for method in per:
                if method not in ("tv", "zero_filled"):
                    row[part][method]["psnr_minus_tv"] = paired(per[method]["psnr"], per["tv"]["psnr"])
        rows.append(row)
        _mri_cases(pictures, row, args.out / f"reconstruction-mri-cases-{acc:g}x.png", args.methods.split(","))
        print(f"MRI {acc:g}x done ({time.perf_counter() - t_start:.0f} s so far)", flush=True)
    methods = ["zero_filled", "tv"] + args.methods.split(",")
    methods += [f"{m}_1" for m in args.methods.split(",") if args.samples > 1]
    series = {m: [(r["acceleration"], r["heldout"][m]["psnr"]["mean"], r["heldout"][m]["psnr"]["std"]) for r in rows]
              for m in methods}
    plot(series, args.out / "reconstruction-mri.png",
         f"MRI on {args.n} held-out phantoms ({H}x{H}, {args.sampling}, sigma_y={args.noise:g})",
         "acceleration")
    goal = next((r for r in rows if r["acceleration"] == 4), None)
    result = {"part": "mri", "run": str(args.mri_run), "model_step": model.step, "model_data": train["data"],
              "image_size": H, "n": args.n, "heldout_seed": args.heldout_seed, "tune_n": args.tune_n,
              "sl_samples": args.sl_samples, "sampling": args.sampling, "noise": args.noise,
              "samples": args.samples, "eta": args.eta,
              "steps": {m: steps_for(args, m) for m in args.methods.split(",")}, "tv_iters": args.tv_iters,
              "rows": rows, "notes": notes, "seconds": round(time.perf_counter() - t_start, 1)}
    if goal is not None and "ddnm" in goal["heldout"]:
        g = goal["heldout"]["ddnm"]["psnr_minus_tv"]
        result["goal_ddnm_minus_tv_at_4x"] = {**g, "target": 2.0, "met": g["mean"] >= 2.0}
    _print_mri(result, methods)
    return result


def run_prior(args, sigmas=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5)) -> dict:
    """(d): the prior's denoising PSNR against the noise level, beside the noisy input and TV denoising."""
    from skimage.restoration import denoise_tv_chambolle

    model = TrainedModel.load(args.mri_run, device=args.device)
    x = _phantoms(args.n, model.shape[-1], args.heldout_seed, model.info["train"].get("image_size"))
    g = torch.Generator().manual_seed(args.seed)
    psnr = lambda a: image_psnr(a.clamp(-1, 1), x).mean().item()  # noqa: E731
    rows = []
    for s in sigmas:
        noisy = x + s * torch.randn(x.shape, generator=g)
        with torch.no_grad():
            den = model.denoiser(noisy.to(model.device), torch.full((len(x),), s, device=model.device)).float().cpu()
        tv = {w: psnr(torch.from_numpy(np.stack([denoise_tv_chambolle(v.numpy(), weight=w, channel_axis=0)
                                                  for v in noisy])).float())
              for w in (s / 8, s / 4, s / 2, s, 2 * s)}
        best = max(tv, key=tv.get)
        rows.append({"sigma": s, "noisy": psnr(noisy), "prior": psnr(den), "tv_denoise": tv[best],
                     "tv_weight": best})
    print(f"\n### The prior {args.mri_run} (step {model.step}) as a denoiser, {args.n} held-out phantoms: PSNR dB")
    print("| sigma | noisy input | prior D(x, sigma) | TV denoising (best weight) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['sigma']:g} | {r['noisy']:.1f} | {r['prior']:.1f} | {r['tv_denoise']:.1f} |")
    return {"part": "prior", "run": str(args.mri_run), "model_step": model.step, "n": args.n,
            "heldout_seed": args.heldout_seed, "seed": args.seed, "rows": rows}


def _mri_cases(pictures, row, path, methods, k=3):
    """Three held-out phantoms and one Shepp-Logan sample: truth | k-space | zero-filled | TV | methods."""
    names = ["truth", "k-space (log)", "zero_filled", "tv", *methods]
    idx = list(range(min(k, len(pictures["heldout"]["truth"]))))
    cols, caps = [], {}
    for name in names:
        imgs = torch.cat([pictures["heldout"][name][idx], pictures["shepp_logan"][name][:1]])
        title = LABELS.get(name, name)
        cols.append((title, imgs))
        if name in row["heldout"]:
            per_h, per_s = row["heldout"][name], row["shepp_logan"][name]
            caps[title] = [f"{per_h['psnr_per_image'][i]:.1f} dB" for i in idx] + \
                          [f"{per_s['psnr_per_image'][0]:.1f} dB (SL)"]
    side_by_side(cols, path, caps)


def _print_mri(res, methods):
    print(f"\n### MRI, {res['n']} held-out phantoms ({res['image_size']}x{res['image_size']}), {res['sampling']} "
          f"k-space, sigma_y={res['noise']:g}: PSNR dB / SSIM, mean +- std"
          + (f"; methods: the mean of {res['samples']} posterior samples" if res["samples"] > 1 else ""))
    print("| acceleration | " + " | ".join(label(m) for m in methods) + " | ddnm - TV (paired, +- se) |")
    print("|---" * (len(methods) + 2) + "|")
    for r in res["rows"]:
        cells = [f"{r['heldout'][m]['psnr']['mean']:.2f} +- {r['heldout'][m]['psnr']['std']:.2f} / "
                 f"{r['heldout'][m]['ssim']['mean']:.3f}" for m in methods]
        d = r["heldout"].get("ddnm", {}).get("psnr_minus_tv")
        gain = f"{d['mean']:+.2f} +- {d['se']:.2f} (ahead on {d['wins']}/{d['n']})" if d else "-"
        print(f"| {r['acceleration']:g}x (lam {r['tv_lambda']:.2g}) | " + " | ".join(cells) + f" | {gain} |")
    print(f"\nShepp-Logan ({res['sl_samples']} posterior samples of one measurement): PSNR dB mean +- std")
    for r in res["rows"]:
        print(f"  {r['acceleration']:g}x: " + ", ".join(
            f"{label(m)} {r['shepp_logan'][m]['psnr']['mean']:.2f} +- {r['shepp_logan'][m]['psnr']['std']:.2f}"
            for m in methods))
    if "goal_ddnm_minus_tv_at_4x" in res:
        g = res["goal_ddnm_minus_tv_at_4x"]
        print(f"\ngoal ddnm >= TV + 2 dB at 4x: {g['mean']:+.2f} dB (+- {g['se']:.2f} se): "
              f"{'met' if g['met'] else 'NOT met'}")
    print(f"time: {res['seconds']:.0f} s")


# ---------------------------------------------------------------------------------------------------------------------
# (b) Inpainting on mnist5k


def stratified(labels: torch.Tensor, k: int, last: bool) -> np.ndarray:
    """k images of each class: the last k (test) or the first k (reference) in data order."""
    out = []
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels.numpy() == c)
        out.append(idx[-k:] if last else idx[:k])
    return np.sort(np.concatenate(out))


def run_mnist(args, task: str) -> dict:
    """Inpainting (one row per --masks kind) or super-resolution (one row per --scales factor) of mnist5k test
    images with the mnist5k prior, against the task's classical baseline (harmonic fill, bicubic)."""
    t_start = time.perf_counter()
    model = TrainedModel.load(args.mnist_run, device=args.device)
    train = model.info["train"]
    if train["data"] != "mnist5k" or tuple(model.shape) != (1, 28, 28):
        raise ValueError(f"the {task} benchmark needs a prior trained on mnist5k (1, 28, 28); {args.mnist_run} "
                         f"was trained on {train['data']!r}, shape {model.shape}")
    ds = load_data("mnist5k")
    k = args.inpaint_n // 10
    if k < 1 or k * 2 > min(np.bincount(ds.labels.numpy())):
        raise ValueError(f"--inpaint-n must be 10..{10 * min(np.bincount(ds.labels.numpy())) // 2}")
    test_idx, ref_idx = stratified(ds.labels, k, last=True), stratified(ds.labels, k, last=False)
    assert not set(test_idx) & set(ref_idx)
    x, ref = ds.x[torch.from_numpy(test_idx)], ds.x[torch.from_numpy(ref_idx)]
    clf = load_classifier("mnist5k")
    feats = lambda t: classifier_outputs(clf, t)[0].double().numpy()  # noqa: E731
    f_ref = feats(ref)
    floor = frechet_distance_from_features(feats(x), f_ref)
    base = MAIN_BASELINE[task]
    if task == "inpaint":
        variants = [(kind, {"mask_kind": kind}) for kind in args.masks.split(",")]
        methods = args.inpaint_methods.split(",")
    else:
        variants = [(f"x{s}", {"scale": int(s)}) for s in args.scales.split(",")]
        methods = args.superres_methods.split(",")
    rows, pictures = [], {}
    for variant, kw in variants:
        row = {"variant": variant, "metrics": {}, "fd": {}, "seconds": {}, "denoiser_calls": {}}
        pics = {"truth": x}
        for j, method in enumerate(methods):
            res = run_batches(model, x, task, method, args, baselines=j == 0, **kw)
            if j == 0:  # the baselines once per variant
                pics["measured"] = res["y_pictures"]
                base_psnr = res["per_image"][base]["psnr"]
                for name, b in res["baselines"].items():
                    pics[name] = b
                    row["metrics"][name] = summary(res["per_image"][name])
                    row["fd"][name] = frechet_distance_from_features(feats(b), f_ref)
            pics[method] = res["reconstruction"]
            row["metrics"][method] = summary(res["per_image"]["reconstruction"])
            row["metrics"][method][f"psnr_minus_{base}"] = paired(res["per_image"]["reconstruction"]["psnr"],
                                                                  base_psnr)
            row["fd"][method] = frechet_distance_from_features(feats(res["reconstruction"]), f_ref)
            if args.samples > 1:  # the mean of K samples is blurred: FD belongs to single samples
                row["metrics"][f"{method}_1"] = summary(res["per_image"]["single_sample"])
                row["fd"][f"{method}_1"] = frechet_distance_from_features(feats(res["single"]), f_ref)
            row["seconds"][method] = round(res["seconds"], 2)
            row["denoiser_calls"][method] = res["settings"]["denoiser_calls"]
            if task == "inpaint":
                row["missing_fraction"] = res["settings"]["missing_fraction"]
        rows.append(row)
        pictures[variant] = pics
        print(f"{task}, {variant} done ({time.perf_counter() - t_start:.0f} s so far)", flush=True)
    _mnist_cases(pictures, args.out / f"reconstruction-{task}-cases.png", base, methods)
    result = {"part": task, "run": str(args.mnist_run), "model_step": model.step, "n": len(x), "baseline": base,
              "test_images": "the last n/10 of each class of mnist5k (training images of the prior: mnist5k has no "
                             "held-out split and no other MNIST is installed)",
              "reference_images": "the first n/10 of each class of mnist5k, disjoint from the test images",
              "fd_features": clf.name, "fd_floor": floor,
              "steps": {m: steps_for(args, m) for m in methods}, "noise": args.noise, "samples": args.samples,
              "eta": args.eta, "rows": rows,
              "seconds": round(time.perf_counter() - t_start, 1)}
    _print_mnist(result, [base, *methods, *[f"{m}_1" for m in methods if args.samples > 1]])
    return result


def _mnist_cases(pictures, path, base, methods, k=5):
    """k test images spread over the classes, for each variant: truth | measured | baseline | methods."""
    n = len(next(iter(pictures.values()))["truth"])
    idx = torch.from_numpy(np.linspace(0, n - 1, min(k, n)).round().astype(np.int64))
    size = pictures[next(iter(pictures))]["truth"].shape[-2:]
    # low-resolution measurements at full size, nearest neighbour, so every column lines up
    full = lambda t: torch.nn.functional.interpolate(t, size=size, mode="nearest")  # noqa: E731
    cols = []
    for name in ["truth", "measured", base, *methods]:
        cols.append((LABELS.get(name, name), torch.cat([full(pictures[v][name][idx]) for v in pictures])))
    side_by_side(cols, path, {"measured": [v for v in pictures for _ in idx]})


def _print_mnist(res, names):
    print(f"\n### {res['part']} on mnist5k, n = {res['n']}: PSNR dB (mean +- std) / SSIM, and FD to {res['n']} real "
          f"images (floor: true images, {res['fd_floor']:.3f})")
    print("| variant | " + " | ".join(label(m) for m in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for r in res["rows"]:
        cells = [f"{r['metrics'][m]['psnr']['mean']:.2f} +- {r['metrics'][m]['psnr']['std']:.2f} / "
                 f"{r['metrics'][m]['ssim']['mean']:.3f}, FD {r['fd'][m]:.3f}" for m in names]
        missing = f" ({100 * r['missing_fraction']:.0f}% missing)" if "missing_fraction" in r else ""
        print(f"| {r['variant']}{missing} | " + " | ".join(cells) + " |")
    for r in res["rows"]:
        print(f"  {r['variant']}: seconds " + ", ".join(f"{m} {s:.0f}" for m, s in r["seconds"].items()))
    print(f"time: {res['seconds']:.0f} s")


# ---------------------------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "mri", "inpaint", "superres", "prior"], default="all")
    ap.add_argument("--mri-run", type=Path, help="a run trained on phantoms (diffusekit train --data phantoms)")
    ap.add_argument("--mnist-run", type=Path, default=Path("runs/ttq/ours"), help="a run trained on mnist5k")
    ap.add_argument("--n", type=int, default=16, help="held-out phantoms (default: 16)")
    ap.add_argument("--heldout-seed", type=int, default=1, help="phantom seed of the test images (training: 0)")
    ap.add_argument("--tune-n", type=int, default=16, help="training phantoms to tune TV's lambda on")
    ap.add_argument("--tv-iters", type=int, default=300)
    ap.add_argument("--sl-samples", type=int, default=4, help="posterior samples of the Shepp-Logan measurement")
    ap.add_argument("--accelerations", default="4,8", help="comma-separated (default: 4,8; e.g. 2,4,6,8)")
    ap.add_argument("--sampling", default="cartesian", choices=["cartesian", "random"])
    ap.add_argument("--methods", default="ddnm", help="MRI solvers, comma-separated: ddnm,dps (default: ddnm)")
    ap.add_argument("--inpaint-n", type=int, default=200, help="mnist5k test images, a multiple of 10")
    ap.add_argument("--inpaint-methods", default="ddnm,repaint")
    ap.add_argument("--masks", default="box,half")
    ap.add_argument("--superres-methods", default="ddnm")
    ap.add_argument("--scales", default="2,4", help="super-resolution factors on 28x28 (default: 2,4)")
    ap.add_argument("--steps", type=int, help="solver steps for every method (default: ddnm 100, repaint 50, "
                                              "dps 100)")
    ap.add_argument("--noise", type=float, default=0.0, help="measurement noise sigma_y (default: 0)")
    ap.add_argument("--samples", type=int, default=1,
                    help="posterior samples per image, averaged (the posterior-mean estimate PSNR favours); with "
                         "K > 1 the single-sample scores are reported too as METHOD_1 (default: 1)")
    ap.add_argument("--eta", type=float, help="solver noise for every method (default: the methods' 1.0)")
    ap.add_argument("--batch", type=int, default=16, help="images per solver batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda: where the network runs (the baselines and "
                                                     "metrics run on the CPU)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/8-reconstruction"),
                    help="default: benchmarks/results/8-reconstruction (BENCHMARKS.md section 8)")
    args = ap.parse_args()
    args.device = str(pick_device(args.device))
    args.out.mkdir(parents=True, exist_ok=True)
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
           "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
           "machine": machine.record()}
    if args.part == "prior":
        if args.mri_run is None:
            ap.error("--part prior needs --mri-run")
        res = run_prior(args)
        (args.out / "prior-denoising.json").write_text(json.dumps({**res, **env}, indent=2))
    if args.part in ("all", "mri"):
        if args.mri_run is None:
            ap.error("--mri-run is needed for the MRI part (train one: diffusekit train --data phantoms "
                     "--out runs/phantoms --minutes 30), or use --part inpaint")
        res = run_mri(args)
        (args.out / "reconstruction-mri.json").write_text(json.dumps({**res, **env}, indent=2))
    for task in ("inpaint", "superres"):
        if args.part in ("all", task):
            res = run_mnist(args, task)
            (args.out / f"reconstruction-{task}.json").write_text(json.dumps({**res, **env}, indent=2))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
