"""`diffusekit ...`: a thin command line over the library. Each command is one library call you can make from
Python too (see the README)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXAMPLES = """
examples:
  diffusekit train                                   # digits, small UNet, 5-minute budget -> runs/digits
  diffusekit train --data mnist5k --out runs/mnist --minutes 15
  diffusekit train --data photos/ --image-size 32 --steps 20000 --model base
  diffusekit train --out runs/digits --resume --minutes 10        # continue where it stopped
  diffusekit train --data phantoms --init runs/phantoms --loss-weighting uniform --out runs/ft --steps 500
  torchrun --nproc_per_node 2 -m diffusekit train --data mnist5k --out runs/ddp --steps 2000
  diffusekit sample runs/digits --num 64 --sampler dpmpp-2m --steps 20 --out samples.npz --grid samples.png
  diffusekit show runs/digits                        # forward and reverse process as PNG strips and a GIF
  diffusekit info runs/digits
  diffusekit eval runs/digits --num 1000             # Frechet distance (classifier features), P/R, memorisation
  diffusekit reconstruct runs/phantoms --task mri --input brain.png --acceleration 4 --out recon/
"""


def _add_train(sub):
    from .data import BUILTINS
    from .nets import PRESETS
    from .samplers import SAMPLERS

    p = sub.add_parser(
        "train", help="train a diffusion model on a data set",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a diffusion model. Everything the run writes (run.json, checkpoints/, metrics.jsonl, "
                    "samples/) stays in --out. Settings not given on the command line come from --config, then "
                    "from the defaults (diffusekit.train.TrainConfig).\n\nbuilt-in data:\n" +
                    "\n".join(f"  {k:14s} {v}" for k, v in BUILTINS.items()))
    p.add_argument("--data", help="built-in name, a folder of images (PNG/JPEG/WebP), a folder of .wav files or "
                                  "one .wav, a folder of animated GIFs (video clips), or a .npy/.npz array "
                                  "(N, C, *spatial) (default: digits)")
    p.add_argument("--out", help="run directory (default: runs/<data name>)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="budget in optimizer steps")
    budget.add_argument("--minutes", type=float, help="budget in minutes of training (default: 5)")
    p.add_argument("--model", choices=sorted(PRESETS), help="UNet size preset (default: small)")
    p.add_argument("--config", type=Path, help="a JSON file of training settings (TrainConfig fields)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint, "
                                                         "exactly as if it had never stopped")
    p.add_argument("--latent", metavar="AE_RUN",
                   help="latent diffusion: train in the latent space of this autoencoder run (made by "
                        "`diffusekit train-autoencoder` on the same data); sampling decodes back to the data")
    p.add_argument("--init", dest="init_from", metavar="RUN_DIR",
                   help="fine-tune: start from the EMA weights of RUN_DIR's latest checkpoint, with this run's "
                        "settings (loss weighting, lr, batch, ...); the network is RUN_DIR's, and the data shape, "
                        "--cond, --schedule and --prediction must match it (checked); the optimizer and step count "
                        "start afresh")
    p.add_argument("--image-size", type=int, help="resize images to this size (folders: median size, max 64)")
    p.add_argument("--cond", choices=["label", "text"],
                   help="label: class-conditional training on the data's labels; text: text-to-image on captioned "
                        "data (digits, mnist5k, shapes, or a folder with captions.jsonl or a .txt per image), "
                        "captions through the frozen all-MiniLM-L6-v2 encoder into the UNet's cross-attention; "
                        "both drop the condition at random for classifier-free guidance")
    p.add_argument("--p-uncond", type=float, help="probability of dropping the label / caption (the empty prompt) "
                                                  "in training, for guidance (default: 0.1)")
    p.add_argument("--batch-size", type=int, help="global batch size (default: 128)")
    p.add_argument("--lr", type=float, help="peak learning rate of AdamW (default: 1e-3)")
    p.add_argument("--lr-decay", type=float, metavar="FRACTION",
                   help="let the learning rate fall linearly to 0 over this last fraction of the budget (steps or "
                        "minutes), e.g. 0.25; a model that ends on a decayed LR has less weight noise (default: 0, "
                        "constant to the end)")
    p.add_argument("--schedule", help="linear | scaled_linear | cosine | sigmoid | karras (default: linear)")
    p.add_argument("--prediction", help="eps | x0 | v | edm (default: eps; edm goes with --schedule karras)")
    p.add_argument("--loss-weighting", help="uniform | min-snr | edm (default: min-snr)")
    p.add_argument("--noise-sampler", choices=["uniform", "lognormal"],
                   help="training noise levels: uniform timesteps (DDPM; on --schedule karras, log sigma uniform over "
                        "its range) or log-normal sigma (EDM; with "
                        "--schedule karras --prediction edm --loss-weighting edm it is EDM's recipe) "
                        "(default: uniform)")
    p.add_argument("--sample-every", type=int, help="write a sample grid every N steps (default: end only)")
    p.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps (default: 500)")
    p.add_argument("--sample-sampler", choices=list(SAMPLERS), help="sampler for the grids (default: dpmpp-2m)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 autocast where the CPU has native bf16, else fp32 (default: auto)")
    p.add_argument("--device", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--seed", type=int, help="seed of weights, data order and noise (default: 0)")
    p.add_argument("--eval-every", type=int, help="every N steps, log the Frechet distance of a few EMA samples "
                                                  "(digits, mnist5k)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.jsonl)")


def cmd_train(a) -> int:
    from .train import TrainConfig, train

    overrides = {k: getattr(a, k) for k in ("data", "out", "steps", "minutes", "model", "image_size", "cond",
                                            "p_uncond", "batch_size", "lr", "lr_decay", "schedule", "prediction",
                                            "loss_weighting", "noise_sampler", "sample_every", "checkpoint_every",
                                            "sample_sampler", "precision", "device", "seed", "eval_every",
                                            "init_from", "latent")}
    if a.config:
        config = TrainConfig.from_json_file(a.config, **overrides)
    else:
        config = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    if a.out is None and not (a.config and "out" in json.loads(a.config.read_text())):
        config.out = f"runs/{Path(str(config.data).rstrip('/')).stem}"
    if config.steps is None and config.minutes is None and not a.resume:
        config.minutes = 5.0
    if a.resume and a.init_from:
        raise ValueError("--init starts a new run from another run's weights; --resume continues a run: give one")
    if a.resume and config.steps is None and config.minutes is None:
        raise ValueError("--resume needs the new total budget: --steps N (total) or --minutes M (total)")
    out = train(config, resume=a.resume, progress=not a.no_progress)
    print(out)
    return 0


def _add_sample(sub):
    from .samplers import SAMPLERS
    from .schedules import SPACINGS

    p = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Draw samples with the EMA weights of the run's newest checkpoint. The .npz "
                                   "holds `images` as uint8 (N, H, W, C), `labels` where there are labels, and "
                                   "`prompts` (one string per image) for text runs. Text runs: --prompt (repeat it "
                                   "for several; the prompts are taken in turn over --num samples; default: the "
                                   "prompts of the run's training grids), --negative-prompt to steer away from "
                                   "(replaces the empty prompt in guidance's unconditional pass, as in Stable "
                                   "Diffusion) and --guidance (e.g. 3.0). A --grid gets its prompts in a .txt beside "
                                   "it.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--num", type=int, default=64, help="number of samples (default: 64)")
    p.add_argument("--sampler", default="dpmpp-2m", choices=list(SAMPLERS), help="(default: dpmpp-2m)")
    p.add_argument("--steps", type=int, default=20, help="sampler steps (default: 20); restart adds 2 restarts of 5 "
                                                        "Heun steps to them (10 steps: 39 network calls)")
    p.add_argument("--spacing", choices=SPACINGS,
                   help="noise-level spacing (default: leading for ddpm/ddim on a discrete schedule, karras otherwise; "
                        "logsnr: uniform in logSNR)")
    p.add_argument("--sigma-min", type=float, help="karras / logsnr spacing: the lowest noise level before the last "
                                                   "step to 0 (default: the schedule's; at 10 steps 0.05 helped on "
                                                   "digits; on mnist5k heun gained 3-5% and the logsnr spacing hurt "
                                                   "DPM-Solver++: BENCHMARKS.md section 5)")
    p.add_argument("--sigma-max", type=float, help="karras / logsnr spacing: the starting noise level (default: "
                                                   "the schedule's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output .npz")
    p.add_argument("--grid", type=Path, help="also write a PNG grid of the samples")
    p.add_argument("--batch", type=int, default=64, help="samples per network batch (default: 64)")
    p.add_argument("--label", type=int, action="append", help="class label(s) for class-conditional runs")
    p.add_argument("--prompt", action="append", help="text runs: a prompt; repeat for several, taken in turn")
    p.add_argument("--negative-prompt", action="append",
                   help="text runs: what guidance steers away from; one for all, or one per --prompt")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale (default: 1; 1 is "
                                                               "the plain conditional model, >1 follows the label "
                                                               "or prompt more closely)")
    p.add_argument("--eta", type=float, help="noise scale for ddim / euler-ancestral / dpmpp-2m-sde")
    p.add_argument("--weights", choices=["ema", "model"], default="ema")
    p.add_argument("--wav", type=Path, help="signals only: also write each sample as DIR/sample-NNNN.wav (16-bit, "
                                            "at the data's sample rate, else 16 kHz)")


def cmd_sample(a) -> int:
    from tqdm.auto import tqdm

    from .model import TrainedModel, write_samples

    if a.out.suffix != ".npz":
        raise ValueError(f"--out must be a .npz file, got {a.out}")
    model = TrainedModel.load(a.run_dir, weights=a.weights)
    options = {"eta": a.eta} if a.eta is not None else {}
    options.update({k: v for k, v in (("sigma_min", a.sigma_min), ("sigma_max", a.sigma_max)) if v is not None})
    with tqdm(total=a.num, unit="img", desc=f"{a.sampler} x{a.steps}") as bar:
        images = model.sample(a.num, sampler=a.sampler, steps=a.steps, seed=a.seed, batch=a.batch,
                              labels=a.label, guidance=a.guidance, progress=bar.update, prompts=a.prompt,
                              negative_prompt=a.negative_prompt,
                              **({"spacing": a.spacing} if a.spacing else {}), **options)
    for path in write_samples(model, images, a.out, grid=a.grid, wav=a.wav, labels=a.label, prompts=a.prompt,
                              negative_prompt=a.negative_prompt, guidance=a.guidance):
        print(path)
    return 0


def _add_show(sub):
    p = sub.add_parser("show", help="draw the forward and reverse process of a trained run",
                       description="Write forward.png (a real image at rising noise levels), reverse.png (noise to "
                                   "sample, with the predicted clean image at each step) and reverse.gif.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/show)")
    p.add_argument("--sampler", default="dpmpp-2m")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=8, help="samples in the GIF (default: 8)")


def cmd_show(a) -> int:
    from .model import TrainedModel
    from .viz.show import show

    model = TrainedModel.load(a.run_dir)
    paths = show(model, a.out or a.run_dir / "show", sampler=a.sampler, steps=a.steps, seed=a.seed, num=a.num)
    for p in paths.values():
        print(p)
    return 0


def _add_info(sub):
    p = sub.add_parser("info", help="what a run is: config, size, steps trained, data, last loss")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_info(a) -> int:
    from .rundir import format_summary, run_summary

    summary = run_summary(a.run_dir)
    print(json.dumps(summary, indent=2) if a.json else format_summary(summary))
    return 0


def _add_eval(sub):
    from .samplers import SAMPLERS

    p = sub.add_parser(
        "eval", help="measure sample quality against a data set",
        description="Frechet distance in the features of a classifier trained on the data set (digits, mnist5k), "
                    "improved precision/recall, a memorisation check and the class histogram; optionally the true "
                    "Inception FID. Every figure comes with its sample count n and the real-vs-real floor at the "
                    "same n: compare Frechet distances only at equal n.")
    p.add_argument("source", type=Path, help="a run directory (samples are drawn) or a samples .npz (`images`)")
    p.add_argument("--data", help="data set to compare with (default: the run's own data)")
    p.add_argument("--num", type=int, default=1000, help="samples to draw from a run (default: 1000)")
    p.add_argument("--n", type=int, help="images per set for FD / precision-recall (default: all, at most half "
                                         "the data)")
    p.add_argument("--sampler", default="dpmpp-2m", choices=list(SAMPLERS))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metrics", default="fd,pr,memorisation,classes",
                   help="comma-separated: fd, pr, memorisation, classes (default: all)")
    p.add_argument("--inception", action="store_true", help="also the Inception-v3 FID (slow on CPU)")
    p.add_argument("--json-out", type=Path, help="where to write the JSON (default: RUN_DIR/eval.json or "
                                                 "SAMPLES.eval.json)")


def cmd_eval(a) -> int:
    from tqdm.auto import tqdm

    from .eval import evaluate, format_table
    from .eval.evaluate import to_json
    from .eval.images import read_samples

    metrics = tuple(m for m in a.metrics.split(",") if m)
    if a.source.is_dir():
        from .model import TrainedModel

        model = TrainedModel.load(a.source)
        data = a.data or model.info["train"]["data"]
        with tqdm(total=a.num, unit="img", desc=f"sampling {a.sampler} x{a.steps}") as bar:
            samples = model.sample(a.num, sampler=a.sampler, steps=a.steps, seed=a.seed, progress=bar.update)
        json_out = a.json_out or a.source / "eval.json"
    else:
        if a.data is None:
            raise ValueError("--data is needed to evaluate a samples file")
        samples = read_samples(a.source)
        data, json_out = a.data, a.json_out or a.source.with_suffix(".eval.json")
    res = evaluate(samples, data, metrics=metrics, inception=a.inception, n=a.n, seed=a.seed)
    print(format_table(res))
    json_out.write_text(to_json(res))
    print(json_out)
    return 0


def _add_reconstruct(sub):
    from .inverse import METHODS
    from .inverse.task import DEFAULT_STEPS, MASK_KINDS, SAMPLINGS, TASKS

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
    p.add_argument("run_dir", type=Path)
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
    p.add_argument("--method", choices=METHODS, default="ddnm", help="(default: ddnm)")
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

    from .inverse.task import load_image, load_mask, reconstruct_image, save_reconstruction
    from .model import TrainedModel

    if a.mask is not None and a.task != "inpaint":
        raise ValueError(f"--mask is for --task inpaint, not {a.task}")
    if not a.input.exists():  # before loading the model: the cheap mistake first
        raise FileNotFoundError(f"input image {a.input} does not exist")
    from .fast import pick_device

    model = TrainedModel.load(a.run_dir, weights=a.weights, device=pick_device(a.device))
    image, notes = load_image(a.input, model.shape)
    mask = None
    if a.mask is not None:
        mask, mask_notes = load_mask(a.mask, model.shape[1:])
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


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "show": cmd_show, "info": cmd_info, "eval": cmd_eval,
            "reconstruct": cmd_reconstruct}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusekit", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Train your own diffusion models on your data, on the machine you have.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_train, _add_sample, _add_show, _add_info, _add_eval, _add_reconstruct):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        from .fast import reexec_with_allocator_env

        reexec_with_allocator_env()  # glibc reads its allocator settings at start-up (see fast.py)
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[a.command](a)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"diffusekit {a.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffusekit {a.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
