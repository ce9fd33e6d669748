"""Pack a run into a model folder a user can receive (`diffusekit pack`; the zoo's models are made this way):
run.json, the EMA weights of one checkpoint (optionally in bf16 or fp16, half the bytes), a card.json with the
SHA-256 of every file, and a MODEL.md. The layout is `diffusekit.rundir`'s packed model; everything that loads a run
loads it.

A latent run depends on its autoencoder: packing it names a packed or zoo autoencoder (`autoencoder="zoo:NAME"`)
whose weights must be the ones it was trained on (the fingerprint of run.json's latent record is checked).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..rundir import CARD, PACKED_WEIGHTS, RUN_FILE, is_packed, model_weights, read_run_info, sha256_of
from . import PREFIX, locate

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
STATE_KEYS = ("step", "images_seen", "elapsed_s", "latent_scale")  # of a checkpoint's state.json: what a user needs


def pack(run_dir: str | Path, out: str | Path, dtype: str = "fp32", checkpoint: str | Path | None = None,
         card: dict | None = None, model_md: str | None = None, autoencoder: str | None = None,
         overwrite: bool = False) -> Path:
    """Write the packed model of `run_dir`'s newest (or the given) checkpoint to `out`; returns `out`.

    dtype: the weights' float type on disk (fp32, bf16, fp16); loading casts them back to fp32.
    card: fields merged into card.json (name, task, headline, trained, quality, data_licence, ...).
    model_md: the MODEL.md text (default: a short card written from card.json).
    autoencoder: latent runs: the packed model or "zoo:NAME" of its autoencoder (its fingerprint is checked).
    overwrite: replace an existing packed model at `out` (any other existing folder is refused)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    src, out = locate(run_dir), Path(out)
    info = read_run_info(src)
    weights, state = model_weights(src, "ema", checkpoint)
    if "latent" in info:
        info = dict(info, latent=_latent_record(info["latent"], autoencoder))
    if out.exists() and not (overwrite and (is_packed(out) or not any(out.iterdir()))):
        raise FileExistsError(f"{out} exists; packing writes a new folder (pass overwrite=True / --overwrite to "
                              f"replace a packed model there)")
    tensors = {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (tmp / RUN_FILE).write_text(json.dumps(info, indent=2))
        save_file(tensors, str(tmp / PACKED_WEIGHTS), metadata={"format": "pt", "dtype": dtype})
        record = {"name": out.name, "task": "", "headline": "", **(card or {}), "dtype": dtype,
                  "state": {k: state[k] for k in STATE_KEYS if k in state},
                  "packed_from": {"run": str(src), "checkpoint": weights.parent.name}}
        (tmp / "MODEL.md").write_text(model_md if model_md is not None else default_card_text(record, info))
        record["sha256"] = {f: sha256_of(tmp / f) for f in (RUN_FILE, PACKED_WEIGHTS, "MODEL.md")}
        (tmp / CARD).write_text(json.dumps(record, indent=2) + "\n")
        _readable(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def _readable(folder: Path) -> None:
    """The modes of a normal new folder and files (mkdtemp makes 0700; a model is shipped to be read by others)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


def _latent_record(record: dict, autoencoder: str | None) -> dict:
    """A latent run's record, pointing at a packed or zoo autoencoder that is the one it was trained on."""
    from ..latent import LatentCodec

    if autoencoder is None:
        if str(record["run"]).startswith(PREFIX):
            return record
        raise ValueError(f"this is a latent run: its autoencoder ({record['run']}) must be packed too; pack it, then "
                         f"name it (autoencoder=PATH or zoo:NAME; --autoencoder on the command line)")
    codec = LatentCodec.load(autoencoder)
    if codec.fingerprint() != record["fingerprint"] or abs(codec.scale - record["scale"]) > 1e-12:
        raise ValueError(f"{autoencoder} is not the autoencoder this latent run was trained on (its weights or latent "
                         f"scale differ); pack the run's own autoencoder ({record['run']}) in fp32")
    run = autoencoder if str(autoencoder).startswith(PREFIX) else str(Path(autoencoder).resolve())
    return dict(record, run=run, step=codec.step)


def default_card_text(card: dict, info: dict) -> str:
    """A short MODEL.md from card.json and run.json, for models packed without one."""
    d, s = info.get("data", {}), card["state"]
    lines = [f"# {card['name']}", "", card.get("task") or "A diffusion model trained with diffusekit.", "",
             f"- data: {d.get('name')} ({d.get('n')} x {tuple(d.get('shape', ()))})",
             f"- trained: {s.get('step')} steps, {s.get('images_seen', 0):,} images, "
             f"{s.get('elapsed_s', 0) / 60:.1f} minutes",
             f"- weights: EMA, {card['dtype']}", f"- settings: see run.json"]
    if card.get("headline"):
        lines.append(f"- quality: {card['headline']}")
    return "\n".join(lines) + "\n"
