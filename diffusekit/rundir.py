"""A run directory on disk: where a training run writes what, and reading it back (no unpickling, no code).

    RUN_DIR/run.json        what was trained: training settings, network config, schedule, data description
    RUN_DIR/checkpoints/    step-NNNNNNN/ with FILES (written atomically by `diffusekit.train.checkpoint`)
    RUN_DIR/metrics.jsonl   one JSON line per logged step
    RUN_DIR/samples/        sample grids written during training (text runs: each grid's prompts in a .txt beside it)
    RUN_DIR/.lock           while a process trains there: its PID and command (`diffusekit.train.ownership`)

A *packed* model (`diffusekit pack`, and every model of the zoo, `diffusekit.zoo`) is the part of a run that sampling
needs, in one folder a user can receive:

    MODEL_DIR/run.json             the run's record, as training wrote it
    MODEL_DIR/weights.safetensors  the EMA weights of one checkpoint (fp32, or bf16 / fp16 where quality allows)
    MODEL_DIR/card.json            the checkpoint's state (step, ...), how it was trained and measured, and the
                                   SHA-256 of every file: a damaged file is named before anything reads it
    MODEL_DIR/MODEL.md             the model card, for people

Both training (resume, fine-tune) and a trained model loaded back (`diffusekit.model`) read through here.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

RUN_FILE = "run.json"
FILES = ("model.safetensors", "ema.safetensors", "state.safetensors", "state.json")  # one checkpoint, complete
CARD, PACKED_WEIGHTS = "card.json", "weights.safetensors"  # a packed model (above)
MAX_JSON_BYTES = 64 << 20  # run.json and state.json are a few KB; metrics.jsonl ~100 bytes a logged step
_NAME = re.compile(r"^step-(\d+)$")


def read_json(path: Path, what: str):
    """One JSON file of a run directory, parsed; anything wrong with it is one ValueError that names it."""
    try:
        size = os.stat(path).st_size
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ValueError("not a regular file")
        if size > MAX_JSON_BYTES:
            raise ValueError(f"{size:,} bytes, over the {MAX_JSON_BYTES:,} such a file ever takes")
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON, bad UTF-8, a 5,000-digit number
        raise ValueError(f"{path} is not a readable {what} ({' '.join(str(e).split())}); it may be truncated or "
                         f"edited by hand") from e


def read_run_info(run_dir: str | Path) -> dict:
    """The run's run.json, as a dict; a missing or unreadable file is an error that names it."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a diffusekit run directory (no {RUN_FILE}); train one with "
                                f"`diffusekit train --out {run_dir}`")
    info = read_json(path, "run record")
    if not isinstance(info, dict):
        raise ValueError(f"{path} is not a run record: a JSON object was expected")
    return info


def read_state(ckpt: Path) -> dict:
    """A checkpoint's state.json (step, images seen, time trained, ...), as a dict."""
    state = read_json(ckpt / "state.json", "checkpoint state")
    if not isinstance(state, dict) or not isinstance(state.get("step", 0), int):
        raise ValueError(f"{ckpt / 'state.json'} is not a checkpoint state: an object with an integer step")
    return state


def bad_record(path: Path, e: Exception) -> ValueError:
    """A run.json that parses but lacks a field or holds the wrong type: one line naming the file and the field."""
    what = f"no field {e}" if isinstance(e, KeyError) else " ".join(str(e).split())
    return ValueError(f"{path} is not a complete run record ({type(e).__name__}: {what}); was it edited by hand?")


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first. Temporary directories of an interrupted write are ignored."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if _NAME.match(p.name) and all((p / f).exists() for f in FILES)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None

def is_packed(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CARD).is_file()


def read_card(model_dir: str | Path) -> dict:
    """A packed model's card.json, after checking every file it lists against its SHA-256: a truncated or damaged
    file is one ValueError that names it."""
    model_dir = Path(model_dir)
    card = read_json(model_dir / CARD, "model card")
    files = card.get("sha256") if isinstance(card, dict) else None
    if not isinstance(files, dict) or PACKED_WEIGHTS not in files or not isinstance(card.get("state"), dict):
        raise ValueError(f"{model_dir / CARD} is not a model card (it needs 'sha256' of {PACKED_WEIGHTS} and "
                         f"'state'); was it edited by hand?")
    for name, digest in files.items():
        path = model_dir / Path(str(name)).name  # a card names files beside it, never elsewhere
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: this packed model is incomplete (reinstall or re-pack it)")
        if sha256_of(path) != digest:
            raise ValueError(f"{path} is damaged: its SHA-256 differs from the one in {model_dir / CARD} (truncated "
                             f"or altered); reinstall diffusekit or re-pack the model")
    return card


def sha256_of(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_weights(run_dir: str | Path, weights: str = "ema", checkpoint: str | Path | None = None
                  ) -> tuple[Path, dict]:
    """(safetensors file, checkpoint state) of a run's newest (or the given) checkpoint, or of a packed model
    (checked against its card first). weights: "ema" or "model" (a packed model holds the EMA weights only)."""
    run_dir = Path(run_dir)
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    if checkpoint is None and is_packed(run_dir):
        if weights != "ema":
            raise ValueError(f"{run_dir} is a packed model: it holds the EMA weights only (weights='ema')")
        return run_dir / PACKED_WEIGHTS, read_card(run_dir)["state"]
    ckpt = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} has no complete checkpoint yet (in {run_dir / 'checkpoints'})")
    return ckpt / f"{weights}.safetensors", read_state(ckpt)


def run_summary(run_dir: str | Path) -> dict:
    """What a run is (`diffusekit info`): its settings, size, data, steps and time trained, last logged loss."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    packed = is_packed(run_dir)
    ckpts = [] if packed else list_checkpoints(run_dir / "checkpoints")
    state = read_card(run_dir)["state"] if packed else read_state(ckpts[-1]) if ckpts else {}
    last = None
    log = run_dir / "metrics.jsonl"
    if log.exists():
        rows = []
        for line in read_json_lines(log):  # a line torn by a crash mid-write is skipped, not fatal
            try:
                rows.append(json.loads(line))
            except (ValueError, RecursionError):
                continue
        losses = [r for r in rows if isinstance(r, dict) and "loss" in r]
        last = losses[-1] if losses else None
    try:
        return {
            "run_dir": str(run_dir), "params": info["params"], "model": info["train"].get("model", "autoencoder"),
            "data": info["data"], "steps_trained": state.get("step", 0), "images_seen": state.get("images_seen", 0),
            "minutes_trained": round(state.get("elapsed_s", 0) / 60, 2), "last_loss": last and last["loss"],
            "checkpoints": [f"packed: {PACKED_WEIGHTS}"] if packed else [p.name for p in ckpts], "train": info["train"], "unet": info.get("unet"),
            "arch": info.get("arch", "unet"), "net": info.get("net"),
            "schedule": info.get("schedule"), "prediction": info.get("prediction"), "latent": info.get("latent"),
            "autoencoder": info.get("autoencoder"), "latent_scale": state.get("latent_scale")}
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise bad_record(run_dir / RUN_FILE, e) from e


def read_json_lines(path: Path) -> list[str]:
    """The lines of a JSON-lines log, with the same checks as `read_json` (regular file, size, UTF-8)."""
    if not stat.S_ISREG(os.stat(path).st_mode) or os.stat(path).st_size > MAX_JSON_BYTES:
        raise ValueError(f"{path} is not a readable log: not a regular file, or over {MAX_JSON_BYTES:,} bytes")
    try:
        return path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not a readable log ({e})") from e


def format_summary(summary: dict) -> str:
    """`run_summary` as the lines `diffusekit info` prints."""
    try:
        return _summary_lines(summary)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
        raise bad_record(Path(summary["run_dir"]) / RUN_FILE, e) from e


def _summary_lines(summary: dict) -> str:
    d = summary["data"]
    return "\n".join([
        f"run          {summary['run_dir']}",
        _network_line(summary),
        f"data         {d['name']}: {d['n']} x {tuple(d['shape'])}"
        + (f", {d['num_classes']} classes" if d.get("num_classes") else ""),
        f"trained      {summary['steps_trained']} steps, {summary['images_seen']:,} images, "
        f"{summary['minutes_trained']} min",
        f"last loss    {summary['last_loss']}",
        f"checkpoints  {', '.join(summary['checkpoints']) or '(none)'}",
        *([f"latent       autoencoder {lat['run']} (step {lat['step']}, scale {lat['scale']:.4g}, latent "
           f"{tuple(d['shape'])})"] if (lat := summary.get("latent")) else []),
        "settings",
        *settings_lines(summary["train"]),
    ])


# `diffusekit info` groups a run's settings (any it does not know of go under "other")
SETTING_GROUPS = {
    "data": ("data", "data_options", "image_size", "cond", "p_uncond", "latent", "factor", "latent_channels", "points_per_step"),
    "model": ("model", "model_overrides", "channels", "init_from"),
    "diffusion": ("schedule", "prediction", "loss_weighting", "min_snr_gamma", "noise_sampler", "loss", "kl_weight"),
    "training": ("steps", "minutes", "batch_size", "lr", "warmup_steps", "lr_decay", "weight_decay", "grad_clip",
                 "ema_decay", "seed", "precision", "device", "collective_timeout"),
    "output": ("out", "log_every", "sample_every", "checkpoint_every", "checkpoint_minutes", "keep_last",
               "sample_sampler", "sample_steps", "num_grid", "eval_every", "eval_minutes", "eval_samples"),
}


def settings_lines(train: dict) -> list[str]:
    """The settings of run.json's "train", one indented line per group (data, model, diffusion, training,
    output, other)."""
    known = {k for keys in SETTING_GROUPS.values() for k in keys}
    groups = {**{g: [k for k in keys if k in train] for g, keys in SETTING_GROUPS.items()},
              "other": [k for k in train if k not in known]}
    return [f"  {g:11s}{', '.join(f'{k}={train[k]}' for k in keys)}" for g, keys in groups.items() if keys]


def _network_line(summary: dict) -> str:
    if summary.get("autoencoder"):  # an autoencoder run (`train-autoencoder`)
        a = summary["autoencoder"]
        f = 2 ** (len(a["channel_mult"]) - 1)
        return (f"model        autoencoder f={f}, {summary['params']:,} parameters, latent "
                f"{(a['latent_channels'], *[-(-s // f) for s in a['spatial']])}, scale {summary['latent_scale']}")
    arch = {"unet": "UNet", "points": "point transformer", "molecules": "EGNN"}.get(summary.get("arch", "unet"), summary.get("arch"))
    return (f"model        {summary['model']} {arch}, {summary['params']:,} parameters, predicts "
            f"{summary['prediction']}, schedule {summary['schedule']['name']}")


__all__ = ["RUN_FILE", "FILES", "CARD", "PACKED_WEIGHTS", "is_packed", "read_card", "sha256_of", "model_weights",
           "read_json", "read_state", "bad_record", "read_run_info", "list_checkpoints",
           "latest_checkpoint", "run_summary", "format_summary", "settings_lines"]
