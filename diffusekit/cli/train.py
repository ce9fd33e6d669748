"""`diffusekit train` and `train-autoencoder`: train a diffusion model (`diffusekit.train.train`) or the
autoencoder of latent diffusion (`diffusekit.train.autoencoder.train_autoencoder`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_train(sub):
    from ..data import BUILTINS
    from ..nets import PRESETS
    from ..samplers import SAMPLERS

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
    p.add_argument("--model", choices=sorted(PRESETS), help="network size preset: the UNet, point transformer or EGNN of the data (default: small)")
    p.add_argument("--config", type=Path, help="a JSON file of training settings (TrainConfig fields)")
    p.add_argument("--resume", nargs="?", const=True, default=False, choices=["auto"],
                   help="continue the run in --out from its last checkpoint, exactly as if it had never stopped. "
                        "--resume auto: continue it if it is a run of this command's settings (the budget aside), "
                        "start afresh if --out holds no run, refuse any other run; for restarts that re-run the "
                        "command line (torchrun --max-restarts, a scheduler's requeue)")
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
    p.add_argument("--checkpoint-minutes", type=float, metavar="M",
                   help="also checkpoint every M minutes of training time, e.g. to judge a time budget afterwards "
                        "(pair it with a config's keep_last to keep them all) (default: off)")
    p.add_argument("--sample-sampler", choices=list(SAMPLERS), help="sampler for the grids (default: dpmpp-2m)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 autocast where the CPU has native bf16, else fp32 (default: auto)")
    p.add_argument("--device", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--seed", type=int, help="seed of weights, data order and noise (default: 0)")
    p.add_argument("--eval-every", type=int, help="every N steps, log the Frechet distance of a few EMA samples "
                                                  "(digits, mnist5k)")
    p.add_argument("--collective-timeout", type=float, metavar="SECONDS",
                   help="under torchrun, how long a process waits on the others before it reports them hung and "
                        "stops (default: 600)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.jsonl)")


def cmd_train(a) -> int:
    from ..train import TrainConfig, TrainingStopped, train

    overrides = {k: getattr(a, k) for k in ("data", "out", "steps", "minutes", "model", "image_size", "cond",
                                            "p_uncond", "batch_size", "lr", "lr_decay", "schedule", "prediction",
                                            "loss_weighting", "noise_sampler", "sample_every", "checkpoint_every",
                                            "checkpoint_minutes", "sample_sampler", "precision", "device", "seed",
                                            "eval_every", "init_from", "latent", "collective_timeout")}
    if a.config:
        config = TrainConfig.from_json_file(a.config, **overrides)
    else:
        config = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    if a.out is None and not (a.config and "out" in json.loads(a.config.read_text())):
        config.out = f"runs/{Path(str(config.data).rstrip('/')).stem}"
    if config.steps is None and config.minutes is None and a.resume is not True:
        config.minutes = 5.0  # with --resume auto too: the same total whether the run starts or continues
    if a.resume is True and a.init_from:
        raise ValueError("--init starts a new run from another run's weights; --resume continues a run: give one "
                         "(--resume auto goes with --init: it fine-tunes, and continues the fine-tune if restarted)")
    if a.resume is True and config.steps is None and config.minutes is None:
        raise ValueError("--resume needs the new total budget: --steps N (total) or --minutes M (total)")
    try:
        out = train(config, resume=a.resume, progress=not a.no_progress)
    except TrainingStopped as e:  # a fault the run named (RELIABILITY.md): its one line, not a traceback
        print(f"diffusekit train: error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


def add_train_autoencoder(sub):
    p = sub.add_parser(
        "train-autoencoder", help="train the autoencoder of latent diffusion on a data set",
        description="Train a KL-regularised autoencoder (LDM's first stage) that shrinks every spatial dim by "
                    "--factor. Then `diffusekit train --latent AE_RUN` trains diffusion in its latent space. The run "
                    "directory is laid out like a diffusion run's; --resume continues exactly.")
    p.add_argument("--data", help="built-in name, folder or array, as for `train` (default: mnist5k)")
    p.add_argument("--out", help="run directory (default: runs/ae-<data name>-f<factor>)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="budget in optimizer steps")
    budget.add_argument("--minutes", type=float, help="budget in minutes of training (default: 5)")
    p.add_argument("--factor", type=int, choices=[2, 4, 8, 16], help="down-sampling factor of each spatial dim: "
                                                                    "4 turns 28x28 into 7x7, 8 turns 64x64 into 8x8 "
                                                                    "(default: 4)")
    p.add_argument("--latent-channels", type=int, help="channels of the latent (default: 4)")
    p.add_argument("--channels", type=int, help="network width at full resolution (default: 32)")
    p.add_argument("--image-size", type=int, help="resize images to this size")
    p.add_argument("--batch-size", type=int, help="batch size (default: 64)")
    p.add_argument("--lr", type=float, help="peak learning rate of AdamW (default: 5e-4)")
    p.add_argument("--loss", choices=["l1", "l2"], help="reconstruction error (default: l1)")
    p.add_argument("--kl-weight", type=float, help="weight of the KL term (default: 1e-6, LDM's)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], help="as for `train` (default: auto)")
    p.add_argument("--device", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--seed", type=int, help="seed of weights, data order and noise (default: 0)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_train_autoencoder(a) -> int:
    from ..train import TrainingStopped
    from ..train.autoencoder import AutoencoderTrainConfig, train_autoencoder

    given = {k: v for k in ("data", "out", "steps", "minutes", "factor", "latent_channels", "channels", "image_size",
                            "batch_size", "lr", "loss", "kl_weight", "precision", "device", "seed")
             if (v := getattr(a, k)) is not None}
    config = AutoencoderTrainConfig(**given)
    if a.out is None:
        config.out = f"runs/ae-{Path(str(config.data).rstrip('/')).stem}-f{config.factor}"
    if config.steps is None and config.minutes is None:
        if a.resume:
            raise ValueError("--resume needs the new total budget: --steps N (total) or --minutes M (total)")
        config.minutes = 5.0
    try:
        print(train_autoencoder(config, resume=a.resume, progress=not a.no_progress))
    except TrainingStopped as e:
        print(f"diffusekit train-autoencoder: error: {e}", file=sys.stderr)
        return 1
    return 0
