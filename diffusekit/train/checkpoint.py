"""Checkpoints that survive being killed at any moment, and load without unpickling.

    RUN_DIR/checkpoints/step-0001000/
        model.safetensors    the trained network's weights
        ema.safetensors      the EMA weights (what sampling uses)
        state.safetensors    optimizer moments and RNG states (tensors)
        state.json           step, data position, elapsed time, optimizer hyper-parameters, ...

A checkpoint is written into a hidden temporary directory, each file flushed to disk, then renamed into place in
one atomic `rename`: a reader sees a whole checkpoint or none. The last `keep` are kept; an old one is renamed out
of sight before it is deleted, so a kill mid-delete leaves no partial step-N behind. A write that fails (disk full,
a size limit) removes its temporary directory and raises `CheckpointNotWritten`; the previous checkpoint is never
touched before the new one is in place. Leftovers of a killed write are cleared at the next save: only one process
writes a run (the run lock, `ownership`), so none of them can be another writer's work in progress.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ..rundir import FILES, list_checkpoints
from .faults import checkpoint_not_written


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to a temporary file beside `path`, flush it, and rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    _fsync_file(tmp)
    os.replace(tmp, path)


def _state_dict_tensors(sd: dict) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage: give it plain copies
    return {k: v.detach().contiguous().clone() for k, v in sd.items()}


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state_dict into tensors (for safetensors) and JSON (param groups, scalars)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v.detach().contiguous().clone()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    # The moments were saved contiguous; give them their parameter's layout again (channels_last nets), as fused
    # optimizer kernels walk parameter and moments element by element in memory order.
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                    opt.state[p][k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def save_checkpoint(ckpt_dir: Path, step: int, model, ema_model, optimizer, rng: dict[str, torch.Tensor],
                    state: dict, keep: int = 3) -> Path:
    """Write checkpoint `step` atomically and prune old ones; returns its directory."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for left in ckpt_dir.glob(".*-step-*"):  # .tmp- (a write) or .old- (a delete) a kill interrupted
        shutil.rmtree(left, ignore_errors=True)
    final = ckpt_dir / f"step-{step:07d}"
    tmp = ckpt_dir / f".tmp-step-{step:07d}"
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    try:
        tmp.mkdir()
        # serialised here and written by us (not safetensors' save_file): a failed write is then an OSError with
        # its errno (ENOSPC, EFBIG), and the flush to disk needs no second open
        _write(tmp / "model.safetensors", save(_state_dict_tensors(model.state_dict())))
        _write(tmp / "ema.safetensors", save(_state_dict_tensors(ema_model.state_dict())))
        _write(tmp / "state.safetensors", save({**opt_tensors, **{f"rng.{k}": v.contiguous() for k, v in rng.items()}}))
        _write(tmp / "state.json", json.dumps({**state, "step": step, "optimizer": opt_meta}, indent=2).encode())
        _fsync_dir(tmp)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise checkpoint_not_written(ckpt_dir, step, e) from e
    if final.exists():  # re-saving the same step (e.g. a resumed run ending where it started): replace it whole
        _remove(final)
    os.rename(tmp, final)
    _fsync_dir(ckpt_dir)
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        _remove(old)
    return final


def _write(path: Path, data: bytes) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        e.filename = e.filename or path.name  # a failed write() names no file: say which one it was
        raise


def _remove(ckpt: Path) -> None:
    """Delete a checkpoint directory: first out of sight in one rename, then its files."""
    trash = ckpt.with_name(f".old-{ckpt.name}")
    os.rename(ckpt, trash)
    shutil.rmtree(trash, ignore_errors=True)


def load_checkpoint(path: Path, model=None, ema_model=None, optimizer=None):
    """Load weights (and optimizer state) into the given objects; returns (state dict, rng tensors)."""
    path = Path(path)
    missing = [f for f in FILES if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    if model is not None:
        model.load_state_dict(load_file(str(path / "model.safetensors")))
    if ema_model is not None:
        ema_model.load_state_dict(load_file(str(path / "ema.safetensors")))
    state = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    if optimizer is not None:
        optimizer_from_tensors(optimizer, tensors, state["optimizer"])
    rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
    return state, rng
