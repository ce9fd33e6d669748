"""The training loop: set up (`setup.set_up`), then steps (`step.train_step`) with the hooks (`hooks.Hooks`:
logs, checkpoints, sample grids, quality checks) between them, until the budget is spent.

Exact resumption: everything random comes from two seeded generators (data order, noise) whose states are saved,
the data order is a pure function of (seed, epoch), and the optimizer, EMA, step and data position are saved with
the weights; so N steps straight and N/2 + resume + N/2 give identical weights (tested).

Distributed (torchrun): every process draws the same global batch and the same noise and trains on its own slice,
so the run is the same computation as a single process with the global batch (tested), and only rank 0 writes.

The loop knows no particular data set: a data set that must hold something back (the `shapes` training split)
checks that itself when it is loaded.

Faults (RELIABILITY.md): one process owns the run directory (`ownership`: a lock, and `--resume auto` for restarts
that re-run the command line); a fault the run can name stops it with a one-line `faults.TrainingStopped`, keeping
the last good checkpoint (disk full, bad data, divergence, a torchrun peer that hung past the collective timeout).
"""

from __future__ import annotations

from pathlib import Path

from . import distributed, faults, ownership
from .config import TrainConfig
from .hooks import Hooks
from .setup import set_up
from .step import TrainingDiverged, train_step

__all__ = ["TrainingDiverged", "train"]


def train(config: TrainConfig, resume: bool | str = False, progress: bool = True) -> Path:
    """Train a diffusion model as `config` says; returns the run directory. `resume`: True continues the run in
    config.out, "auto" continues it if it is a run of these settings and starts afresh if there is none
    (`ownership.resume_mode`). See `diffusekit train --help`."""
    dist = distributed.setup(config.device, config.collective_timeout)
    try:
        with ownership.hold(Path(config.out), dist):
            return run(config, ownership.resume_mode(config, resume, dist), progress, dist)
    except (OSError, RuntimeError) as e:
        stopped = faults.stopped_by(e, Path(config.out), dist, config.collective_timeout)
        if stopped is None:
            raise
        raise stopped from e
    finally:
        distributed.teardown()


def run(config: TrainConfig, resume: bool, progress: bool, dist: distributed.Dist) -> Path:
    """Set up, train until the budget is spent, finish; every process runs this (only rank 0 writes)."""
    s, st = set_up(config, resume, dist)
    hooks = Hooks(s, st, progress)
    s.net.train()
    try:
        while not st.done(s.config):
            loss, grad_norm = train_step(s, st)
            hooks.after_step(loss, grad_norm)
        hooks.finish()
    finally:
        hooks.close()
    dist.barrier()  # leave together: a process tearing down gloo while its peer still works can abort
    return s.out
