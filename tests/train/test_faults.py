"""Training under faults (RELIABILITY.md; benchmarks/faults.py runs many more trials): the run lock and a stale
lock's takeover, --resume auto, a disk that fills during a checkpoint write, NaN data at the start and mid-run,
SIGKILL at seeded moments, a torchrun peer that hangs or dies. Every survivor is compared bit for bit with an
uninterrupted run."""

import copy
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import diffusekit.data
import diffusekit.train.setup
from diffusekit.cli import build_parser
from diffusekit.cli.train import cmd_train
from diffusekit.fast import ALLOCATOR_ENV
from diffusekit.rundir import latest_checkpoint, list_checkpoints
from diffusekit.train import BadData, CheckpointNotWritten, RunLocked, TrainConfig, train
from diffusekit.train import ownership
from diffusekit.train.distributed import Dist
from diffusekit.train.faults import CollectiveFailed, stopped_by
from diffusekit.train.setup import BatchStream

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, **ALLOCATOR_ENV, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def state(run) -> dict:
    """Every tensor of the newest checkpoint (model, EMA, optimizer and RNG state) and state.json without its clock."""
    last = latest_checkpoint(Path(run) / "checkpoints")
    got = {f"{n}/{k}": v for n in ("model", "ema", "state") for k, v in load_file(str(last / f"{n}.safetensors")).items()}
    meta = json.loads((last / "state.json").read_text())
    meta.pop("elapsed_s")
    return {**got, "meta": meta}


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]) if k == "meta" else torch.equal(a[k], b[k]), k


def hidden(run) -> list[str]:
    """What a fault may leave behind: temporary checkpoint folders, the lock."""
    run = Path(run)
    return [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")] + \
        [p.name for p in run.iterdir() if p.name == ownership.LOCK]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted tiny run of 6 steps with a checkpoint every step: the state every trial must end in."""
    from conftest import TINY  # tests/ is on the path (pyproject.toml); the `tiny` fixture is per test

    out = tmp_path_factory.mktemp("straight") / "run"
    train(TrainConfig(out=str(out), steps=6, **{**TINY, "checkpoint_every": 1}), progress=False)
    return state(out)


@pytest.fixture
def cfg(tiny, tmp_path):
    return lambda steps, **kw: TrainConfig(out=str(tmp_path / "run"), steps=steps, **{**tiny, "checkpoint_every": 1,
                                                                                     **kw})


def test_a_second_process_is_refused_naming_the_first(cfg, tmp_path):
    out = tmp_path / "run"
    with ownership.hold(out, Dist()):  # as a running trainer holds it
        for resume in (False, True):
            with pytest.raises(RunLocked, match=rf"in use by process {os.getpid()} on .*nothing was changed"):
                train(cfg(1), resume=resume, progress=False)
    assert not (out / "run.json").exists()
    train(cfg(1), progress=False)  # released: the run trains, and leaves no lock behind
    assert hidden(out) == []


def test_a_stale_lock_of_a_killed_process_is_taken_over(cfg, tmp_path, capfd):
    """A process that took the lock and was SIGKILLed leaves the file (with its PID); the kernel has freed the lock,
    so the next run takes the directory over, saying whose lock it was."""
    out = tmp_path / "run"
    code = ("import os, sys; from diffusekit.train.ownership import acquire; acquire(sys.argv[1]); "
            "os.kill(os.getpid(), 9)")
    child = subprocess.Popen([sys.executable, "-c", code, str(out)], env=ENV)
    assert child.wait(timeout=120) == -9 and (out / ownership.LOCK).exists()
    train(cfg(1), progress=False)
    err = capfd.readouterr().err
    assert f"was left by process {child.pid} on " in err and "ended without releasing it (killed?); taking the run " \
                                                             "over" in err
    assert hidden(out) == []


def test_resume_auto_continues_its_own_run_and_refuses_another(cfg, tmp_path, straight):
    train(cfg(3), resume="auto", progress=False)  # nothing there: starts afresh
    with pytest.raises(ValueError, match=r"other settings \(lr=0.001 there, 0.002 here\)"):
        train(cfg(6, lr=2e-3), resume="auto", progress=False)
    train(cfg(6), resume="auto", progress=False)  # the same settings: continues, exactly
    assert_same(state(tmp_path / "run"), straight)


def test_disk_full_in_a_checkpoint_write_stops_cleanly(cfg, tmp_path, capsys, straight):
    """A real EFBIG from the kernel (RLIMIT_FSIZE, SIGXFSZ ignored) in the next checkpoint's state file: a one-line
    error naming the directory and what to do, the previous checkpoint untouched, nothing half-written; then the
    run continues exactly."""
    out = tmp_path / "run"
    train(cfg(3), progress=False)
    prev = latest_checkpoint(out / "checkpoints")
    before = {f.name: f.read_bytes() for f in prev.iterdir()}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, hard))  # model and EMA (0.77 MB) fit, state does not
    try:
        args = build_parser().parse_args(["train", "--out", str(out), "--resume", "--steps", "6", "--no-progress"])
        code = cmd_train(args)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith(f"diffusekit train: error: could not write checkpoint step-0000004 in "
                                            f"{out / 'checkpoints'} (state.safetensors: File too large")
    assert "previous checkpoint" in err[-1] and err[-1].endswith("--resume")
    assert latest_checkpoint(out / "checkpoints") == prev and before == {f.name: f.read_bytes() for f in prev.iterdir()}
    assert hidden(out) == []
    train(cfg(6), resume=True, progress=False)
    assert_same(state(out), straight)


def test_checkpoint_write_error_is_typed(cfg, tmp_path, monkeypatch):
    """ENOSPC anywhere in the write (here the first file) is CheckpointNotWritten too, before any step is lost."""
    import diffusekit.train.checkpoint as checkpoint

    def full(path, data):
        raise OSError(28, "No space left on device")

    train(cfg(1), progress=False)
    monkeypatch.setattr(checkpoint, "_write", full)
    with pytest.raises(CheckpointNotWritten, match=r"step-0000002 .*No space left on device.*step-0000001 is intact"):
        train(cfg(2), resume=True, progress=False)
    assert [c.name for c in list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step-0000001"]


def with_nan(monkeypatch, index: int):
    """Every data set loaded from now on holds NaN in item `index` (the readers refuse NaN themselves)."""
    load = diffusekit.data.load_data

    def load_bad(*a, **k):
        ds = copy.copy(load(*a, **k))  # a copy: the loaded set may be cached and shared
        ds.x = ds.x.clone()
        ds.x[index] = float("nan")
        return ds
    monkeypatch.setattr(diffusekit.data, "load_data", load_bad)


def test_nan_in_the_data_is_refused_before_anything_is_written(cfg, tmp_path, monkeypatch):
    with_nan(monkeypatch, 17)
    with pytest.raises(BadData, match=r"1 of 1797 items hold NaN or inf \(indices 17\)"):
        train(cfg(1), progress=False)
    assert not (tmp_path / "run" / "run.json").exists()
    monkeypatch.undo()
    train(cfg(1), progress=False)  # the data fixed, the same command runs in the same --out


def test_nan_in_a_batch_mid_run_names_the_step_and_items(cfg, tmp_path, monkeypatch, straight):
    """As if an item went bad after the start check: the run stops at the step whose batch holds it, names the step
    and the item, and keeps the last good checkpoint; with the data fixed, --resume ends exactly."""
    stream = BatchStream(1797, 16, 0)
    stream.next(), stream.next()
    bad = int(stream.next()[5])  # in step 3's batch, not in steps 1-2's
    with_nan(monkeypatch, bad)
    monkeypatch.setattr(diffusekit.train.setup, "check_data", lambda x, name: None)
    with pytest.raises(BadData, match=rf"step 3: .* 1 data item\(s\) of digits \(indices {bad}, epoch 0\).*"
                                      rf"last good checkpoint is .*step-0000002"):
        train(cfg(6), progress=False)
    assert latest_checkpoint(tmp_path / "run" / "checkpoints").name == "step-0000002"
    monkeypatch.undo()
    train(cfg(6), resume=True, progress=False)
    assert_same(state(tmp_path / "run"), straight)


def test_sigkill_at_seeded_moments_resumes_exactly(tiny, tmp_path, straight):
    """Two SIGKILLs of a real training process: one at a seeded moment, one a few ms into a seeded checkpoint write.
    Each time the newest complete checkpoint loads, and --resume auto ends bit-identical to the uninterrupted run."""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**tiny, "checkpoint_every": 1}))
    rng = random.Random(0)
    for trial in range(2):
        out = tmp_path / f"run{trial}"
        cmd = [sys.executable, "-m", "diffusekit", "train", "--config", str(config), "--out", str(out), "--steps", "6",
               "--no-progress"]
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if trial == 0:  # a moment after its first checkpoint
            wait(lambda: list_checkpoints(out / "checkpoints") or proc.poll() is not None)
            time.sleep(rng.uniform(0, 0.3))
        else:  # inside a write
            after = rng.randint(1, 3)
            wait(lambda: len(list_checkpoints(out / "checkpoints")) >= after and any(
                p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir()) or proc.poll() is not None)
            time.sleep(rng.uniform(0, 0.002))
        proc.kill()
        proc.wait()
        last = latest_checkpoint(out / "checkpoints")
        for name in ("model", "ema", "state"):
            load_file(str(last / f"{name}.safetensors"))
        train(TrainConfig.from_json_file(config, out=str(out), steps=6), resume="auto", progress=False)
        assert_same(state(out), straight)
        assert hidden(out) == []


def wait(cond, timeout=120.0):
    end = time.time() + timeout
    while time.time() < end and not cond():
        time.sleep(0.001)


def test_collective_failures_read_as_one_line():
    """gloo's timeout and a dead peer, as the surviving rank sees them, become CollectiveFailed naming the timeout."""
    two = Dist(rank=0, world_size=2)
    hung = stopped_by(RuntimeError("[gloo/unbound_buffer.cc:78] Timed out waiting 5000ms for recv"), Path("r"), two, 20)
    assert isinstance(hung, CollectiveFailed) and "within the collective timeout (20 s)" in str(hung)
    died = stopped_by(RuntimeError("[gloo/pair.cc:534] Connection closed by peer"), Path("r"), two, 20)
    assert isinstance(died, CollectiveFailed) and "another process died" in str(died)
    assert stopped_by(RuntimeError("Timed out"), Path("r"), Dist(), 20) is None  # single process: not ours to say
    with pytest.raises(ValueError, match="collective_timeout"):
        TrainConfig(collective_timeout=0)


@pytest.mark.slow
def test_torchrun_restarts_a_killed_worker_from_the_last_checkpoint(tmp_path):
    """torchrun --max-restarts 1 with --resume auto: rank 1 SIGKILLed after a checkpoint; the job restarts by itself,
    continues from the last checkpoint and ends bit-identical to the uninterrupted job. (Slow: ~2 minutes on 2
    loaded cores, two torchrun jobs of two processes each.)"""
    def job(out, port):
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--max-restarts", "1",
                "--master_port", str(port), "-m", "diffusekit", "train", "--data", "digits", "--model", "tiny",
                "--batch-size", "16", "--steps", "16", "--checkpoint-every", "2", "--no-progress", "--out", str(out),
                "--resume", "auto", "--collective-timeout", "60"]

    port = 29500 + os.getpid() % 1000
    ref = subprocess.run(job(tmp_path / "ref", port), env=ENV, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    out = tmp_path / "run"
    agent = subprocess.Popen(job(out, port + 1), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait(lambda: len(list_checkpoints(out / "checkpoints")) >= 2 or agent.poll() is not None, timeout=300)
    rank1 = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _child_of(d, agent.pid)
             and b"RANK=1" in (d / "environ").read_bytes().split(b"\0")]
    os.kill(rank1[0], signal.SIGKILL)
    err = agent.communicate(timeout=600)[1]
    assert agent.returncode == 0, err[-3000:]
    assert "--resume auto: continuing the run" in err, err[-3000:]
    assert_same(state(out), state(tmp_path / "ref"))


def _child_of(proc_dir: Path, parent: int) -> bool:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent
    except (OSError, ValueError):
        return False
