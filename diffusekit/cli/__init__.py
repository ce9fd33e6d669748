"""`diffusekit ...`: a thin command line over the library. Each command is one library call you can make from
Python too (see the README)."""

from __future__ import annotations

import argparse
import sys
import warnings

from .models import add_models, add_pack, cmd_models, cmd_pack
from .evaluate import add_eval, add_reconstruct, cmd_eval, cmd_reconstruct
from .export import add_export, cmd_export
from .sample import add_info, add_sample, add_show, cmd_info, cmd_sample, cmd_show
from .serve import add_serve, cmd_serve
from .train import add_train, add_train_autoencoder, cmd_train, cmd_train_autoencoder

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
  diffusekit train-autoencoder --data mnist5k --factor 4 --out runs/ae    # latent diffusion: the autoencoder,
  diffusekit train --data mnist5k --latent runs/ae --out runs/ldm         # then diffusion in its latent space
  diffusekit serve runs/digits runs/phantoms         # the web page: http://127.0.0.1:7860/
  diffusekit models                                  # the pretrained zoo; a name works wherever a run dir does:
  diffusekit sample shapes-text --prompt "a small red triangle" --guidance 3 --num 8 --out t.npz --grid t.png
  diffusekit pack runs/digits --out my-digits --dtype fp16   # one folder to share (the zoo's format)
  diffusekit sample --diffusers ddpm-folder/ --num 16 --sampler heun --steps 18 --out s.npz --grid s.png
  diffusekit export runs/digits --diffusers digits-diffusers/   # a DDPMPipeline folder diffusers loads
"""


COMMANDS = {"train": cmd_train, "train-autoencoder": cmd_train_autoencoder, "sample": cmd_sample, "show": cmd_show,
            "info": cmd_info, "eval": cmd_eval, "reconstruct": cmd_reconstruct, "serve": cmd_serve,
            "models": cmd_models, "pack": cmd_pack, "export": cmd_export}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusekit", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Train your own diffusion models on your data, on the machine you have.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (add_train, add_train_autoencoder, add_sample, add_show, add_info, add_eval, add_reconstruct,
                add_serve, add_models, add_pack, add_export):
        add(sub)
    return parser


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings meant for users read as one line: no source file, no source line."""
    print(f"diffusekit: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    warnings.showwarning = one_line_warning
    if argv[:1] in (["train"], ["train-autoencoder"]):
        from ..fast import reexec_with_allocator_env

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
