"""Training in real processes: a run SIGKILLed while it writes checkpoints resumes; distributed training with real
torchrun matches one process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffusekit.model import TrainedModel
from diffusekit.train import TrainConfig, train
from diffusekit.rundir import latest_checkpoint, list_checkpoints


def weights(run, name="model"):
    return load_file(str(latest_checkpoint(Path(run) / "checkpoints") / f"{name}.safetensors"))


def test_kill_at_any_moment_leaves_a_readable_checkpoint(tiny, tmp_path):
    """SIGKILL a real training process while it writes checkpoints every step; the newest complete one loads, and
    the run resumes from it."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "diffusekit", "train", "--data", "digits", "--model", "tiny", "--out", str(out),
           "--steps", "100000", "--checkpoint-every", "1", "--batch-size", "16", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list_checkpoints(out / "checkpoints")) < 3:
            time.sleep(0.05)
        time.sleep(0.137)  # land somewhere inside the next write
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    last = latest_checkpoint(out / "checkpoints")
    assert last is not None, "the run wrote checkpoints before it was killed"
    for name in ("model", "ema", "state"):
        load_file(str(last / f"{name}.safetensors"))
    step = json.loads((last / "state.json").read_text())["step"]
    train(TrainConfig(out=str(out), steps=step + 2, **tiny), resume=True, progress=False)
    assert TrainedModel.load(out).step == step + 2


def _torchrun(args, nproc, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(29500 + os.getpid() % 1000), "-m", "diffusekit", "train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_torchrun_two_processes_match_one(tmp_path):
    """2 real processes (gloo on CPU) with global batch 16 == 1 process with batch 16: the replicas stay identical
    (checked at every checkpoint), rank 0 alone writes, and weights and losses match the single-process run."""
    common = ["--data", "digits", "--model", "tiny", "--batch-size", "16", "--steps", "4", "--precision", "fp32",
              "--checkpoint-every", "2", "--no-progress", "--lr", "1e-3"]
    ddp = _torchrun(common + ["--out", str(tmp_path / "ddp")], 2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "diffusekit", "train", *common, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=2e-5, rtol=1e-4), k
    la = [json.loads(line)["loss"] for line in open(tmp_path / "ddp" / "metrics.jsonl")]
    lb = [json.loads(line)["loss"] for line in open(tmp_path / "one" / "metrics.jsonl")]
    assert len(la) == len(lb) == 1 and la == pytest.approx(lb, rel=1e-4)
    # resume under torchrun continues the same way
    more = _torchrun(common[:-5] + ["--steps", "6", "--no-progress", "--out", str(tmp_path / "ddp"), "--resume"], 2)
    assert more.returncode == 0, more.stderr[-3000:]
    assert TrainedModel.load(tmp_path / "ddp").step == 6


def test_torchrun_time_budget_ends_together(tmp_path):
    """A time budget with checkpoints on a time schedule under 2 real processes: both keep one clock (the slower
    one's), so they checkpoint (a collective replica check) and stop at the same step instead of waiting forever
    on each other."""
    args = ["--data", "digits", "--model", "tiny", "--batch-size", "16", "--minutes", "0.05", "--precision", "fp32",
            "--checkpoint-every", "100000", "--checkpoint-minutes", "0.01", "--no-progress", "--out",
            str(tmp_path / "ddp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29500 + (os.getpid() + 7) % 1000), "-m", "diffusekit", "train", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    states = [json.loads((c / "state.json").read_text()) for c in list_checkpoints(tmp_path / "ddp" / "checkpoints")]
    assert len(states) >= 2 and states[-1]["elapsed_s"] >= 3
