"""`diffusekit models` and `pack`: the shipped model zoo (`diffusekit.zoo`), and packing a run to share it."""

from __future__ import annotations

import json
from pathlib import Path


def add_models(sub):
    p = sub.add_parser("models", help="the pretrained models that ship with diffusekit",
                       description="List the zoo: models trained by diffusekit that ship inside the package. Use a "
                                   "name wherever a run directory goes: `diffusekit sample NAME ...`, `show NAME`, "
                                   "`eval NAME`, `reconstruct NAME ...`, `serve NAME`, `train --init NAME` (fine-tune), "
                                   "and TrainedModel.load(NAME) in Python. Each model's MODEL.md (printed by "
                                   "`diffusekit models NAME`) says how it was trained and measured.")
    p.add_argument("name", nargs="?", help="print this model's card (MODEL.md) and where its files are")
    p.add_argument("--json", action="store_true", help="print JSON")


def cmd_models(a) -> int:
    from ..zoo import card, catalogue, path_of

    if a.name:
        folder = path_of(a.name)
        c = card(a.name)  # checks every file against its SHA-256
        print(json.dumps(c, indent=2) if a.json else (folder / "MODEL.md").read_text() + f"\nfiles: {folder}")
        return 0
    rows = catalogue()
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("the zoo is empty in this installation")
        return 0
    print(f"{'name':16s} {'task':44s} {'size':>8s} {'steps':>6s}  quality")
    for r in rows:
        print(f"{r['name']:16s} {r['task'][:44]:44s} {r['bytes'] / 1e6:6.1f}MB {r['steps'] or '':>6}  {r['quality']}")
    total = sum(r["bytes"] for r in rows)
    print(f"{len(rows)} models, {total / 1e6:.1f} MB in all; `diffusekit models NAME` prints a model's card")
    return 0


def add_pack(sub):
    from ..zoo.pack import DTYPES

    p = sub.add_parser("pack", help="pack a run into a model folder to share (the zoo's format)",
                       description="Write the part of a run that sampling needs into one folder: run.json, the EMA "
                                   "weights of its newest checkpoint (optionally bf16 / fp16: half the bytes), "
                                   "card.json with every file's SHA-256 (a damaged file is named at load), and a "
                                   "MODEL.md. Every command that takes a run directory takes the folder.")
    p.add_argument("run_dir", type=Path, help="a run directory written by `diffusekit train`")
    p.add_argument("--out", type=Path, required=True, help="the new folder")
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32",
                   help="float type of the weights on disk (default: fp32). fp16 halves the bytes and, on the zoo's "
                        "mnist5k-latent, matched fp32's FD (20.7 against 20.8) where bf16 lost 3%%")
    p.add_argument("--task", default="", help="one line: what the model does (shown by `diffusekit models`)")
    p.add_argument("--autoencoder", help="latent runs: the packed folder (or zoo:NAME) of its autoencoder")
    p.add_argument("--overwrite", action="store_true", help="replace a packed model already at --out")


def cmd_pack(a) -> int:
    from ..zoo.pack import pack

    out = pack(a.run_dir, a.out, dtype=a.dtype, card={"task": a.task}, autoencoder=a.autoencoder,
               overwrite=a.overwrite)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"{out} ({size / 1e6:.1f} MB)")
    return 0
