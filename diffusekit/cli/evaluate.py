"""`diffusekit eval` and `reconstruct`: judge samples (`diffusekit.eval`) and reconstruct from incomplete data
(`diffusekit.inverse`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_eval(sub):
    from ..samplers import SAMPLERS

    p = sub.add_parser(
        "eval", help="measure sample quality against a data set",
        description="Frechet distance in the features of a classifier trained on the data set (digits, mnist5k), "
                    "improved precision/recall, a memorisation check and the class histogram; optionally the true "
                    "Inception FID. Point-cloud runs get PointFlow's protocol instead: MMD, COV and 1-NNA under "
                    "the Chamfer distance (--emd: also EMD) against n held-out clouds (shapes3d: its test split; "
                    "default n 200). Molecule runs: COV-R / MAT-R (GeoDiff's, delta 0.5 Å) on the held-out test "
                    "molecules (--n: the first n of them), 2x each molecule's reference count generated, beside "
                    "RDKit's ETKDG on the same molecules. spoken-digits runs and samples are judged by the shipped "
                    "spoken-digit classifier, as SC09 papers do: accuracy of the asked digit (class-conditional "
                    "samples, the digits in turn), FD in its features beside the real-vs-real floor, and the "
                    "Inception-Score-style figure beside real clips'. Every figure comes with its sample count n and the "
                    "real-vs-real floor at the same n: compare Frechet distances only at equal n.")
    p.add_argument("source", type=Path, help="a run directory or zoo model name (samples are drawn), or a samples "
                                             ".npz (`images`); with --data spoken-digits also a .wav or a folder of "
                                             "them (sub-folders named by digit give the asked digits)")
    p.add_argument("--data", help="data set to compare with (default: the run's own data)")
    p.add_argument("--num", type=int, default=1000, help="samples to draw from a run (default: 1000)")
    p.add_argument("--n", type=int, help="images per set for FD / precision-recall (default: all, at most half "
                                         "the data)")
    p.add_argument("--sampler", default="dpmpp-2m", choices=list(SAMPLERS))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale when drawing from a "
                                                                "class-conditional run (default: 1, none)")
    p.add_argument("--metrics", default="fd,pr,memorisation,classes",
                   help="comma-separated: fd, pr, memorisation, classes (default: all)")
    p.add_argument("--inception", action="store_true", help="also the Inception-v3 FID (slow on CPU)")
    p.add_argument("--emd", action="store_true", help="point clouds: also MMD / COV / 1-NNA under the exact Earth "
                                                      "Mover's distance on 256-point subsets (slow)")
    p.add_argument("--json-out", type=Path, help="where to write the JSON (default: RUN_DIR/eval.json, "
                                                 "NAME-eval.json for a zoo model, or SAMPLES.eval.json)")


def cmd_eval(a) -> int:
    from tqdm.auto import tqdm

    from ..eval import evaluate, format_table
    from ..eval.evaluate import to_json
    from ..eval.images import read_samples

    metrics = tuple(m for m in a.metrics.split(",") if m)
    if a.data == "spoken-digits" and not (a.source / "run.json").is_file() and (
            a.source.is_dir() or a.source.suffix.lower() in (".wav", ".wave")):
        return eval_speech(None, a)  # WAV files: a folder of them (digit sub-folders give the asked digits)
    if a.source.suffix != ".npz":  # a run directory, a packed model or a zoo model's name
        from ..model import TrainedModel
        from ..zoo import default_output

        model = TrainedModel.load(a.source)
        a.json_out = a.json_out or default_output(a.source, "eval.json")
        if model.kind == "molecules":
            return eval_molecules(model, a)
        data = a.data or model.info["train"]["data"]
        if data == "spoken-digits":
            return eval_speech(model, a)
        clouds = model.info["data"].get("kind") == "points"
        num = min(a.num, a.n or 200) if clouds else a.num  # the cloud protocol compares n samples only
        with tqdm(total=num, unit="img", desc=f"sampling {a.sampler} x{a.steps}") as bar:
            samples = model.sample(num, sampler=a.sampler, steps=a.steps, seed=a.seed, guidance=a.guidance,
                                   progress=bar.update)
        json_out = a.json_out
    else:
        if a.data is None:
            raise ValueError("--data is needed to evaluate a samples file")
        data, json_out = a.data, a.json_out or a.source.with_suffix(".eval.json")
        if data == "spoken-digits":
            return eval_speech(None, a)
        samples, clouds = read_samples(a.source, clouds_ok=True)
    if clouds:  # point clouds: PointFlow's protocol against held-out clouds (`diffusekit.eval.points`)
        from ..eval import evaluate_clouds, format_clouds

        distances = ("cd", "emd") if a.emd else ("cd",)
        res = evaluate_clouds(samples, data, n=a.n or min(200, len(samples)), distances=distances, seed=a.seed)
        print(format_clouds(res))
        json_out.write_text(json.dumps(res, indent=2))
        print(json_out)
        return 0
    res = evaluate(samples, data, metrics=metrics, inception=a.inception, n=a.n, seed=a.seed)
    print(format_table(res))
    json_out.write_text(to_json(res))
    print(json_out)
    return 0


def eval_speech(model, a) -> int:
    """`diffusekit eval` for spoken digits (`eval.audio.judge_speech`): a run is sampled (the digits in turn when
    it is class-conditional), a samples .npz is read with its `labels`, WAV files through `load_wav_clips` (its
    conversions printed as notes); prints the lines and writes JSON."""
    import numpy as np
    import torch

    from ..data.speech import SpeechRecipe, load_spoken_digits, load_wav_clips
    from ..eval.audio import format_speech, judge_speech

    notes = []
    if model is None and (a.source.is_dir() or a.source.suffix.lower() in (".wav", ".wave")):
        samples, asked, notes = load_wav_clips(a.source)
        options = {}
        json_out = a.json_out or (a.source / "eval.json" if a.source.is_dir() else a.source.with_suffix(".eval.json"))
    elif model is None:  # a samples .npz from `diffusekit sample`: uint8 (N, L, C) = to_uint8 of (N, C, L)
        try:
            with np.load(a.source, allow_pickle=False) as f:
                v, asked = f["images"], (f["labels"] if "labels" in f else None)
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"cannot read samples from {a.source}: {e} (expected a .npz with `images`)") from e
        if v.dtype != np.uint8 or v.ndim != 3:
            raise ValueError(f"{a.source}: expected uint8 `images` (N, L, C) of 1-D signals; got {v.dtype} {v.shape}")
        samples = torch.from_numpy(v.astype(np.float32) / 127.5 - 1).transpose(1, 2)
        options, json_out = {}, a.json_out or a.source.with_suffix(".eval.json")
    else:
        from tqdm.auto import tqdm

        asked = model.labels_for(a.num) if model.num_classes else None
        with tqdm(total=a.num, unit="clip", desc=f"sampling {a.sampler} x{a.steps}") as bar:
            samples = model.sample(a.num, sampler=a.sampler, steps=a.steps, seed=a.seed, labels=asked,
                                   guidance=a.guidance, progress=bar.update)
        options, json_out = model.info["train"].get("data_options") or {}, a.json_out or a.source / "eval.json"
    recipe = SpeechRecipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
    real = load_spoken_digits("train", recipe)
    res = judge_speech(samples, asked=asked, n=a.n, seed=a.seed, real=(real.x, real.labels))
    res.update({"sampler": a.sampler, "steps": a.steps, "guidance": a.guidance, "recipe": real.source,
                "notes": notes})
    print(format_speech(res))
    json_out.write_text(json.dumps(res, indent=2))
    print(json_out)
    return 0


def eval_molecules(model, a) -> int:
    """`diffusekit eval RUN` for a molecule run (`eval.conformers.evaluate_model`): prints both lines, writes JSON."""
    from ..data.molecules import MoleculeRecipe, load_molecules
    from ..eval.conformers import evaluate_model

    test = load_molecules("test", MoleculeRecipe(**model.info["data"]["recipe"])).first(a.n)
    res = evaluate_model(model, test, sampler=a.sampler, steps=a.steps, seed=a.seed)
    print("\n".join(res["lines"]))
    json_out = a.json_out
    json_out.write_text(json.dumps(res, indent=2))
    print(json_out)
    return 0


def add_reconstruct(sub):
    from ..inverse import METHODS
    from ..inverse.task import DEFAULT_STEPS, MASK_KINDS, SAMPLINGS, TASKS

    p = sub.add_parser(
        "reconstruct", help="recover an image from incomplete data (inpainting, super-resolution, MRI)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Simulate a measurement of --input (the truth) and reconstruct it with the run's model as the "
                    "prior, no retraining. Writes to --out: measurement.png, reconstruction.png, baseline.png "
                    "(harmonic fill for inpaint, bicubic for superres, TV for mri, plus baseline-zero-filled.png), "
                    "truth.png, side_by_side.png and metrics.json (PSNR/SSIM against the input, settings, time).\n\n"
                    "tasks:\n  inpaint   fill missing pixels: --mask FILE (white = known, black = missing, the "
                    "model's size) or --mask-kind\n  superres  average-pooled by --scale, then upsampled\n"
                    "  mri       k-space undersampled by --acceleration (orthonormal 2-D FFT, fully sampled centre)")
    p.add_argument("run_dir", type=Path, help="the prior: a run directory, a packed model or a zoo model name (e.g. "
                                              "phantoms for --task mri)")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--input", required=True, type=Path, help="the true image: PNG/JPEG/WebP/BMP or .npy; converted "
                                                             "to the model's channels and size (with a note)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--mask", type=Path, help="inpaint: a PNG of the model's size, white = known, black = missing")
    p.add_argument("--mask-kind", choices=MASK_KINDS, default="box",
                   help="inpaint without --mask: box (central half-size box missing), half (right half missing), "
                        "random (--missing share of pixels) (default: box)")
    p.add_argument("--missing", type=float, default=0.8, help="--mask-kind random: share missing (default: 0.8)")
    p.add_argument("--scale", type=int, default=4, help="superres: downsampling factor, 2 or 4 (default: 4)")
    p.add_argument("--acceleration", type=float, default=4.0, help="mri: k-space undersampling, 4 or 8 (default: 4)")
    p.add_argument("--sampling", choices=SAMPLINGS, default="cartesian",
                   help="mri: whole k-space lines (cartesian) or single points (random) (default: cartesian)")
    p.add_argument("--mask-seed", type=int, default=0, help="seed of random pixel masks and k-space masks")
    p.add_argument("--method", choices=METHODS,
                   help="(default: ddnm; on a latent run dps, the one that works through its decoder)")
    p.add_argument("--steps", type=int, help="solver steps (default: " +
                   ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")")
    p.add_argument("--seed", type=int, default=0, help="seed of the measurement noise and the solver")
    p.add_argument("--samples", type=int, default=1,
                   help="average K posterior samples: the posterior-mean estimate, which PSNR favours (one sample "
                        "is sharper); costs K times the time (default: 1)")
    p.add_argument("--eta", type=float, help="solver noise, 0 (deterministic) .. 1 (DDPM, the default)")
    p.add_argument("--noise", type=float, default=0.0, dest="sigma_y",
                   help="measurement noise std sigma_y, in the [-1, 1] image scale (default: 0)")
    p.add_argument("--tv-lambda", type=float, help="mri: TV weight (default: tuned on 8 of the run's training "
                                                   "images)")
    p.add_argument("--weights", choices=["ema", "model"], default="ema")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda: where the network runs (default: auto)")
    p.add_argument("--no-progress", action="store_true")


def cmd_reconstruct(a) -> int:
    from tqdm.auto import tqdm

    from ..inverse.task import load_image, load_mask, reconstruct_image, save_reconstruction
    from ..model import TrainedModel

    if a.mask is not None and a.task != "inpaint":
        raise ValueError(f"--mask is for --task inpaint, not {a.task}")
    if not a.input.exists():  # before loading the model: the cheap mistake first
        raise FileNotFoundError(f"input image {a.input} does not exist")
    from ..fast import pick_device

    model = TrainedModel.load(a.run_dir, weights=a.weights, device=pick_device(a.device))
    a.method = a.method or ("dps" if model.codec is not None else "ddnm")
    image, notes = load_image(a.input, model.data_shape)
    mask = None
    if a.mask is not None:
        mask, mask_notes = load_mask(a.mask, model.data_shape[1:])
        notes += mask_notes
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="step", desc=f"{a.method} ({a.task})", disable=a.no_progress)
        bar.update(1)

    try:
        res = reconstruct_image(model, image, a.task, method=a.method, steps=a.steps, seed=a.seed,
                                sigma_y=a.sigma_y, mask=mask, mask_kind=a.mask_kind, missing=a.missing,
                                scale=a.scale, acceleration=a.acceleration, sampling=a.sampling,
                                mask_seed=a.mask_seed, tv_lambda=a.tv_lambda, samples=a.samples,
                                progress=progress, **({"eta": a.eta} if a.eta is not None else {}))
    finally:
        if bar is not None:
            bar.close()
    res["notes"] = notes + res["notes"]
    paths = save_reconstruction(res, a.out, extra={"run_dir": str(a.run_dir), "model_step": model.step,
                                                   "model_data": model.info["train"]["data"],
                                                   "input": str(a.input), "weights": a.weights})
    for name, m in res["metrics"].items():
        ssim = "" if m["ssim"] is None else f"  SSIM {m['ssim']:.3f}"
        print(f"{name:15s} PSNR {m['psnr']:6.2f} dB{ssim}")
    print(f"time           {res['seconds']['total']:.1f} s")
    for p in paths.values():
        print(p)
    return 0
