"""How a training run stops on a fault: one exception family, each message one line that names what went wrong,
where, the last good checkpoint, and what to do next (RELIABILITY.md measures each fault).

    TrainingStopped       the base: the run stopped on purpose and kept its last good checkpoint
      TrainingDiverged    the loss or weights became NaN or inf (step.py)
      BadData             the data holds NaN or inf: at the start (the whole set, once) or in one step's batch
      CheckpointNotWritten  a checkpoint could not be written (disk full, a size or quota limit); nothing half-written
                          is left, the previous checkpoint is intact
      DiskFull            another file of the run could not be written for lack of space
      CollectiveFailed    under torchrun, another process hung (no answer within the collective timeout) or died
      RunLocked           another process trains in the run directory (ownership.py)
"""

from __future__ import annotations

import errno
from pathlib import Path

import torch

from ..rundir import latest_checkpoint

# "no space": the disk is full (ENOSPC), a per-file size limit was hit (EFBIG: RLIMIT_FSIZE, ulimit -f) or a quota
DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


class TrainingStopped(RuntimeError):
    """The run stopped on a fault it can name; its last good checkpoint is kept. The message is one line."""


class BadData(TrainingStopped):
    """The training data holds NaN or inf."""


class CheckpointNotWritten(TrainingStopped):
    """A checkpoint could not be written; the previous one is intact and no partial one is left."""


class DiskFull(TrainingStopped):
    """A file of the run could not be written for lack of space."""


class CollectiveFailed(TrainingStopped):
    """Under torchrun, another process stopped answering (hung past the collective timeout) or died."""


def last_good(out: Path) -> str:
    last = latest_checkpoint(Path(out) / "checkpoints")
    return str(last) if last else "(none yet)"


def check_data(x: torch.Tensor, name: str) -> None:
    """The whole data set once, before the first step: refuse NaN or inf, naming the items. One sum first (NaN or
    inf anywhere makes it so); only then item by item, in chunks, so a large set needs no full-size mask."""
    if torch.isfinite(x.sum()):
        return
    bad = torch.cat([(~torch.isfinite(c).flatten(1).all(1)).nonzero().flatten() + i
                     for i, c in zip(range(0, len(x), 4096), x.split(4096))])
    if len(bad):
        raise BadData(f"data {name}: {len(bad)} of {len(x)} items hold NaN or inf (indices {_some(bad)}); fix or "
                      f"drop them (nothing was trained)")


def check_batch(s, st, before, x0: torch.Tensor) -> None:
    """After a non-finite loss or batch: if this process's batch holds NaN or inf, stop naming the step and the
    data items. `before` is a copy of the data order (`BatchStream`) taken before the batch was drawn: the indices
    are drawn again from it, so the step itself passes none around. Returns if the data is finite (the loss is to
    blame)."""
    bad_rows = ~torch.isfinite(x0).flatten(1).all(1)
    if not bad_rows.any():
        return
    epoch = before.epoch
    bad = before.next()[s.rows][bad_rows.cpu()]
    raise BadData(f"step {st.step + 1}: the batch holds NaN or inf in {len(bad)} data item(s) of {s.ds.name} "
                  f"(indices {_some(bad)}, epoch {epoch}); stopped without saving. The last good checkpoint is "
                  f"{last_good(s.out)}; fix or drop those items, then --resume")


def checkpoint_not_written(ckpt_dir: Path, step: int, e: OSError) -> CheckpointNotWritten:
    what = "the disk is full or a size limit was hit" if e.errno in DISK_FULL else "the write failed"
    return CheckpointNotWritten(
        f"could not write checkpoint step-{step:07d} in {ckpt_dir} ({Path(e.filename or '?').name}: "
        f"{e.strerror or e}: {what}); nothing "
        f"half-written was left and the previous checkpoint {last_good(ckpt_dir.parent)} is intact. Free space "
        f"there (or move the run directory), then continue with --resume")


def stopped_by(e: BaseException, out: Path, dist, timeout_s: float) -> TrainingStopped | None:
    """The one-line TrainingStopped that explains `e` (disk full, a collective that failed), or None to let `e`
    through as it is."""
    if isinstance(e, TrainingStopped):
        return None
    if isinstance(e, OSError) and e.errno in DISK_FULL:
        return DiskFull(f"no space to write {e.filename or 'a file'} in {out}: {e.strerror}; the last good "
                        f"checkpoint is {last_good(out)}. Free space there, then continue with --resume")
    if dist.enabled and isinstance(e, RuntimeError):
        # gloo and nccl say it in words only; the original error stays chained as the cause
        text = str(e)
        if "Timed out" in text or "timed out" in text:
            why = f"got no answer within the collective timeout ({timeout_s:g} s): another process hung"
        elif "Connection closed" in text or "Connection reset" in text or "Broken pipe" in text:
            why = "lost its connection: another process died"
        else:
            return None
        return CollectiveFailed(f"rank {dist.rank}: a collective {why}; the last good checkpoint is "
                                f"{last_good(out)}. torchrun --max-restarts N restarts from it with --resume auto; "
                                f"raise --collective-timeout if a process is merely slow")
    return None


def _some(indices: torch.Tensor, most: int = 8) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:most])
    return shown + (f", ... ({len(indices) - most} more)" if len(indices) > most else "")
