"""Latent against pixel diffusion (BENCHMARKS.md section 10): the autoencoder's reconstructions, quality over
training time, and sampling speed, each written as JSON with the machine and the commit.

    python benchmarks/latent_compare.py autoencoder AE_RUN [--n 1000] [--out FILE.json]
        PSNR of the EMA autoencoder's reconstructions (posterior mean) of the whole data set, and the Frechet distance
        of n reconstructions against n real images with the real-vs-real floor at the same n (classifier features
        for digits / mnist5k, Inception-v3 otherwise); the autoencoder's training minutes and size.
    python benchmarks/latent_compare.py curve RUN [RUN ...] [--out FILE.json]
        Each run's quality checks from its metrics.jsonl (FD, floor, n at training seconds), its training images/s
        and minutes; with two runs, PIXEL then LATENT: the first time the latent run's FD is at or below the pixel
        run's final FD, and the ratio of that time to the pixel run's.
    python benchmarks/latent_compare.py judge RUN [RUN ...] [--n 500] [--out FILE.json]
        For data with no feature classifier (phantoms): every kept checkpoint of each run judged afterwards by the
        Inception FD of n EMA samples (DPM-Solver++(2M), 20 steps, seed 1, as the in-training checks) against n real,
        with the floor at the same n; with two runs, PIXEL then LATENT, the time-to-FD comparison of `curve`.
    python benchmarks/latent_compare.py reconstruct PIXEL LATENT [--task inpaint] [--n 20] [--tune-n 4]
                                        [--zetas 0.3,1,3] [--out FILE.json]
        Reconstruction with each prior on held-out phantoms (seed 1, never in training): the pixel run with DDNM
        (its default) and DPS, the latent run with DPS through the decoder then pixel-space consistency (its only
        method; its zeta chosen by PSNR on the first --tune-n training phantoms), the task's classical baseline, and
        the autoencoder's own ceiling (the truth encoded, decoded, made consistent); PSNR per image, seconds.
    python benchmarks/latent_compare.py sampling RUN [RUN ...] [--num 500] [--repeats 3] [--out FILE.json]
        Images per second of `TrainedModel.sample` (DPM-Solver++(2M), 20 steps, batch 100; latent runs include
        decoding), median of repeats, all runs in one process, one after the other.
"""

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import torch

import machine  # benchmarks/machine.py: the machine and the commit
from diffusekit.data import load_data
from diffusekit.eval import CLASSIFIERS, evaluate
from diffusekit.latent import LatentCodec
from diffusekit.model import TrainedModel
from diffusekit.rundir import latest_checkpoint, list_checkpoints, model_weights, read_run_info
from diffusekit.zoo import locate


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over images of 10 log10(range^2 / MSE), range 2 (data in [-1, 1])."""
    mse = (x - y).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return float((10 * torch.log10(4.0 / mse)).mean())


def autoencoder(args) -> dict:
    run = locate(args.run)  # a run directory, a packed model or a zoo name
    info = read_run_info(run)
    codec = LatentCodec.load(run)
    ds = load_data(info["train"]["data"], image_size=info["train"].get("image_size"))
    t0 = time.perf_counter()
    rec = codec.decode(codec.encode(ds.x))
    seconds = time.perf_counter() - t0
    data = info["train"]["data"]
    res = evaluate(rec, data, metrics=("fd",) if data in CLASSIFIERS else (), inception=data not in CLASSIFIERS,
                   n=min(args.n, len(ds) // 2), progress=False)
    state = model_weights(run)[1]
    fd = res.get("fd") or res.get("fd_inception")
    return {"run": str(args.run), "data": data, "n_data": len(ds), "psnr_db": psnr(rec, ds.x), "fd": fd,
            "features": "classifier" if "fd" in res else "inception", "latent_shape": list(codec.latent_shape),
            "factor": codec.config.factor, "scale": codec.scale, "params": info["params"], "step": state["step"],
            "train_minutes": state["elapsed_s"] / 60, "encode_decode_seconds": seconds}


def curve_of(run: Path) -> dict:
    rows = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines() if r.strip()]
    evals = [{"elapsed_s": r["elapsed_s"], **r["eval"]} for r in rows if "eval" in r]
    steps = [r for r in rows if "images_per_s" in r]
    info = read_run_info(run)
    return {"run": str(run), "latent": "latent" in info, "data_shape": info["data"]["shape"], "params": info["params"],
            "evals": evals, "final_fd": evals[-1]["fd"] if evals else None,
            "train_minutes": steps[-1]["elapsed_s"] / 60 if steps else None, "steps": steps[-1]["step"] if steps else 0,
            "images_per_s": statistics.median(r["images_per_s"] for r in steps[1:]) if len(steps) > 1 else None}


def curve(args) -> dict:
    return compare([curve_of(Path(r)) for r in args.runs])


def compare(runs: list[dict]) -> dict:
    """The runs, and with two (PIXEL, LATENT): the first time the latent run is at or below the pixel run's final
    FD, as a fraction of the pixel run's time."""
    out = {"runs": runs}
    if len(runs) == 2 and runs[0]["final_fd"] is not None:
        target, pixel_s = runs[0]["final_fd"], runs[0]["evals"][-1]["elapsed_s"]
        hit = next((e["elapsed_s"] for e in runs[1]["evals"] if e["fd"] <= target), None)
        out["time_to_pixel_final_fd"] = {"target_fd": target, "pixel_s": pixel_s, "latent_s": hit,
                                         "ratio": hit / pixel_s if hit is not None else None}
    return out


def judge(args) -> dict:
    from diffusekit.eval.inception import InceptionFeatures

    extractor = InceptionFeatures(progress=False)
    reused = reused_fids(args.reuse) if args.reuse else {}
    runs = []
    for i, run in enumerate(map(Path, args.runs)):
        row = curve_of(run)
        row["evals"] = []
        ckpts = list_checkpoints(run / "checkpoints")
        if args.every_minutes:
            ckpts = on_the_marks(ckpts, args.every_minutes * 60)
        for ckpt in ckpts:
            state = json.loads((ckpt / "state.json").read_text())
            if (str(run), state["step"]) in reused:  # judged before with the same n, seed and sampler
                fd, floor = reused[str(run), state["step"]]
                row["evals"].append({"step": state["step"], "elapsed_s": state["elapsed_s"], "fd": fd,
                                     "fd_floor": floor, "n": args.n, "reused_from": str(args.reuse)})
                continue
            if i == 0 and args.first_final_only and ckpt != ckpts[-1]:
                continue  # the first (pixel) run's curve is what was reused; its final FD is the target
            model = TrainedModel.load(run, checkpoint=ckpt)
            t0 = time.perf_counter()
            images = model.sample(args.n, sampler="dpmpp-2m", steps=20, seed=1, batch=100)
            sample_s = time.perf_counter() - t0
            fd = evaluate(images, model.info["train"]["data"], metrics=(), inception=True, n=args.n, progress=False,
                          inception_features=extractor)["fd_inception"]
            row["evals"].append({"step": state["step"], "elapsed_s": state["elapsed_s"], "fd": fd["value"],
                                 "fd_floor": fd["floor"], "n": fd["n"], "features": fd["features"],
                                 "sample_seconds": sample_s})
            print(f"{run} step {state['step']} ({state['elapsed_s'] / 60:.1f} min): FID {fd['value']:.2f} "
                  f"(floor {fd['floor']:.2f})", file=sys.stderr, flush=True)
        row["final_fd"] = row["evals"][-1]["fd"] if row["evals"] else None
        runs.append(row)
    return compare(runs)


def on_the_marks(ckpts: list[Path], every_s: float) -> list[Path]:
    """The checkpoints written on a training-time schedule (`--checkpoint-minutes`): for each mark k * every_s, the
    first checkpoint at or after it (a run also checkpoints every checkpoint_every steps: those are skipped), and
    the last."""
    elapsed = [json.loads((c / "state.json").read_text())["elapsed_s"] for c in ckpts]
    keep, mark = [], every_s
    for c, e in zip(ckpts, elapsed):
        if e >= mark:
            keep.append(c)
            while mark <= e:
                mark += every_s
    return keep + ([ckpts[-1]] if ckpts and ckpts[-1] not in keep else [])


def reused_fids(log: Path) -> dict:
    """(run, step) -> (FID, floor) from the stderr lines of an earlier `judge` ("RUN step N (M min): FID v (floor f)")."""
    pat = re.compile(r"^(\S+) step (\d+) \([\d.]+ min\): FID ([\d.]+) \(floor ([\d.]+)\)$")
    return {(m[1], int(m[2])): (float(m[3]), float(m[4]))
            for m in map(pat.match, Path(log).read_text().splitlines()) if m}


def reconstruct(args) -> dict:
    from diffusekit.data.phantoms import make_phantoms
    from diffusekit.inverse.latent import pixel_consistency
    from diffusekit.inverse.task import reconstruct_image, task_operator

    pixel, latent = TrainedModel.load(args.runs[0]), TrainedModel.load(args.runs[1])
    test, tune = make_phantoms(args.n, seed=1), make_phantoms(args.tune_n, seed=0)

    def run(model, x, method, **options):
        t0 = time.perf_counter()
        res = reconstruct_image(model, x, args.task, method=method, seed=0, **options)
        return res, time.perf_counter() - t0

    tuning = {}
    for zeta in map(float, args.zetas.split(",")):
        res, _ = run(latent, tune, "dps", zeta=zeta, baselines=False)
        tuning[zeta] = res["metrics"]["reconstruction"]["psnr"]
    zeta = max(tuning, key=tuning.get)
    rows = {}
    for name, model, method, options in (("pixel ddnm", pixel, "ddnm", {}), ("pixel dps", pixel, "dps", {}),
                                         (f"latent dps (zeta {zeta:g})", latent, "dps", {"zeta": zeta})):
        res, seconds = run(model, test, method, **options)
        rows[name] = {"psnr": res["per_image"]["reconstruction"]["psnr"], "seconds": seconds,
                      "consistency": res["consistency"], "settings": res["settings"]}
        for base, m in res["per_image"].items():
            if base != "reconstruction":
                rows.setdefault(f"baseline {base}", {"psnr": m["psnr"]})
    op = task_operator(args.task, test.shape[2:])
    ceiling = pixel_consistency(op, op.forward(test), latent.codec.decode(latent.codec.encode(test)))
    rows["autoencoder ceiling"] = {"psnr": psnr_per_image(ceiling, test)}
    for r in rows.values():
        r["mean_psnr"] = statistics.fmean(r["psnr"])
        r["std_psnr"] = statistics.stdev(r["psnr"]) if len(r["psnr"]) > 1 else 0.0
    return {"task": args.task, "n": args.n, "heldout_seed": 1, "tuning_zeta_psnr": tuning, "zeta": zeta, "rows": rows}


def psnr_per_image(x: torch.Tensor, y: torch.Tensor) -> list[float]:
    mse = (x.clamp(-1, 1) - y).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return (10 * torch.log10(4.0 / mse)).tolist()


def sampling(args) -> dict:
    rows = []
    for run in args.runs:
        model = TrainedModel.load(run)
        model.sample(min(args.num, 100), steps=20, batch=100)  # warm-up: first-call allocations and kernels
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model.sample(args.num, sampler="dpmpp-2m", steps=20, batch=100)
            times.append(time.perf_counter() - t0)
        s = statistics.median(times)
        rows.append({"run": str(run), "latent": model.codec is not None, "num": args.num, "seconds": times,
                     "images_per_s": args.num / s})
    out = {"rows": rows}
    if len(rows) == 2:
        out["latent_over_pixel"] = rows[1]["images_per_s"] / rows[0]["images_per_s"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("autoencoder")
    a.add_argument("run")
    a.add_argument("--n", type=int, default=1000)
    c = sub.add_parser("curve")
    c.add_argument("runs", nargs="+")
    j = sub.add_parser("judge")
    j.add_argument("runs", nargs="+")
    j.add_argument("--n", type=int, default=500)
    j.add_argument("--reuse", type=Path, help="an earlier judge's log: its checkpoints are not judged again")
    j.add_argument("--every-minutes", type=float, help="judge only the checkpoints of this training-time schedule")
    j.add_argument("--first-final-only", action="store_true",
                   help="judge only the final checkpoint of the first run (beside the reused ones)")
    r = sub.add_parser("reconstruct")
    r.add_argument("runs", nargs=2)
    r.add_argument("--task", default="inpaint", choices=["inpaint", "superres", "mri"])
    r.add_argument("--n", type=int, default=20)
    r.add_argument("--tune-n", type=int, default=4)
    r.add_argument("--zetas", default="0.3,1,3")
    s = sub.add_parser("sampling")
    s.add_argument("runs", nargs="+")
    s.add_argument("--num", type=int, default=500)
    s.add_argument("--repeats", type=int, default=3)
    for q in (a, c, j, r, s):
        q.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    modes = {"autoencoder": autoencoder, "curve": curve, "judge": judge, "reconstruct": reconstruct, "sampling": sampling}
    res = modes[args.what](args)
    res = {"command": " ".join(sys.argv), "machine": machine.record(), **res}
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
