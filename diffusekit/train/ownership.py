"""Who may write a run directory: one training process at a time (a lock), and `--resume auto` resumes only a run
that this same command started.

The lock is `fcntl.flock` on RUN_DIR/.lock, which holds the owner's PID, host, start time and command line for the
message a second process prints. flock rather than a lock file made with O_EXCL: the kernel releases a flock when
its process dies in any way (SIGKILL, OOM, power loss of a node), so a lock is never stale in the sense that
matters and taking over is atomic; an O_EXCL file outlives a killed owner, and telling "stale" from "alive" by its
PID races with PID reuse, with other hosts, and with two processes taking over at once. The file a killed owner
leaves behind is only information: the next owner says it took the run over. (flock does not lock across hosts on
some network file systems; RELIABILITY.md lists it.) Under torchrun rank 0 holds the lock for the whole job; every
rank learns whether it got it.

`--resume auto` exists for restarts that re-run the same command line (torchrun --max-restarts, a job scheduler's
requeue): it resumes when the directory holds a run whose settings equal this command's, apart from the budget
(exact resumption makes that the same computation as starting afresh, only shorter); it starts afresh when the
directory holds no run; and it refuses a run with any other setting, so a user's fresh run is never resumed from
someone else's files.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..rundir import RUN_FILE, latest_checkpoint
from .faults import TrainingStopped

try:
    import fcntl
except ImportError:  # Windows: no flock, so no lock (RELIABILITY.md)
    fcntl = None

LOCK = ".lock"
NOT_SETTINGS = ("steps", "minutes", "out", "collective_timeout")  # may change between the calls of one run


class RunLocked(TrainingStopped):
    """Another process trains in this run directory."""


@contextmanager
def hold(out: Path, dist):
    """Hold the run directory's lock while the block runs (rank 0 takes it; every rank raises if it could not)."""
    fd, error = None, None
    if dist.is_main:
        try:
            fd = acquire(out)
        except RunLocked as e:
            error = e
    if not dist.all_true(error is None):
        raise error or RunLocked(f"{out} is in use by another process (rank 0 names it)")
    try:
        yield
    finally:
        if fd is not None:
            release(out, fd)


def acquire(out: Path) -> int | None:
    """Take RUN_DIR/.lock (creating the directory); returns its open descriptor (None where there is no flock).
    Raises RunLocked naming the owner."""
    out = Path(out)
    path = out / LOCK
    if fcntl is None:
        out.mkdir(parents=True, exist_ok=True)
        return None
    while True:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = describe(read(fd))
            os.close(fd)
            raise RunLocked(f"{out} is in use by {owner}; wait for it to end, or stop it, before training there "
                            f"(two writers would mix their checkpoints; nothing was changed)") from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # its owner removed the file while we waited for it: lock the new one
    left = read(fd)
    if left:  # the kernel freed the lock, so its owner is gone: it was killed (a clean exit removes the file)
        print(f"diffusekit: note: {path} was left by {describe(left)}, which ended without releasing it (killed?); "
              f"taking the run over", file=sys.stderr)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
          "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    return fd


def release(out: Path, fd: int) -> None:
    """Remove the lock file, then drop the lock (in that order: a process waiting on the old file then sees it is
    gone and locks a new one)."""
    try:
        os.unlink(Path(out) / LOCK)
    finally:
        os.close(fd)


def read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # written half-way by an owner killed at that moment
        return {}


def describe(owner: dict) -> str:
    if "pid" not in owner:
        return "another process (starting up: no PID written yet)"
    return (f"process {owner['pid']} on {owner.get('host', '?')} (since {owner.get('since', '?')}: "
            f"{owner.get('command', '?')})")


def holds_files(out: Path) -> bool:
    """Whether a fresh run would train over something: anything but hidden files (the lock, a temporary
    .run.json.tmp) and the empty folders a run makes before its run.json (both left by a run killed while
    starting, which must not block the same command run again)."""
    out = Path(out)
    if not out.is_dir():
        return False
    return any(not p.name.startswith(".") and not (p.is_dir() and p.name in ("checkpoints", "samples")
                                                   and not any(p.iterdir())) for p in out.iterdir())


def resume_mode(config, resume: bool | str, dist) -> bool:
    """True to resume, False to start afresh. `resume="auto"`: resume a run of this command's settings (the budget
    aside), start afresh in a directory without a run, refuse any other run (see the module docstring)."""
    if resume != "auto":
        if not isinstance(resume, bool):
            raise ValueError(f"resume must be True, False or 'auto', got {resume!r}")
        return resume
    out = Path(config.out)
    if not (out / RUN_FILE).exists():
        return False
    saved = json.loads((out / RUN_FILE).read_text())
    if "autoencoder" in saved:
        raise ValueError(f"--resume auto: {out} holds an autoencoder run, not a diffusion run")
    mine = json.loads(json.dumps(config.to_dict()))  # as run.json holds it (tuples become lists)
    theirs = {**type(config)().to_dict(), **saved["train"]}  # a setting newer than the run: its default held
    differ = [f"{k}={theirs.get(k)!r} there, {mine[k]!r} here" for k in mine
              if k not in NOT_SETTINGS and theirs.get(k) != mine[k]]
    if differ:
        raise ValueError(f"--resume auto: {out} holds a run with other settings ({'; '.join(differ[:3])}); "
                         f"--resume continues it with its own settings, or choose another --out")
    if dist.is_main:
        last = latest_checkpoint(out / "checkpoints")
        print(f"diffusekit: --resume auto: continuing the run in {out} from "
              f"{last.name if last else 'its start (no checkpoint yet)'}", file=sys.stderr)
    return True
