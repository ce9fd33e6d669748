"""The training system, in process: exact resumption, fine-tuning, checkpoints, divergence, the batch stream, EMA,
the learning-rate schedule and the settings' errors. (In real processes, SIGKILL and torchrun:
tests/e2e/test_train_processes.py.)"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffusekit.model import TrainedModel
from diffusekit.train import TrainConfig, TrainingDiverged, train
from diffusekit.rundir import latest_checkpoint, list_checkpoints
from diffusekit.train.ema import EMA
from diffusekit.train.setup import BatchStream
from diffusekit.train.step import lr_at as _lr_at


def weights(run, name="model"):
    return load_file(str(latest_checkpoint(Path(run) / "checkpoints") / f"{name}.safetensors"))


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_resume_is_exact(tiny, tmp_path, precision):
    """N steps straight == N/2 steps, stop, resume, N/2 steps: identical weights, EMA and optimizer state."""
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    train(TrainConfig(out=str(straight), steps=6, precision=precision, **tiny), progress=False)
    train(TrainConfig(out=str(halves), steps=3, precision=precision, **tiny), progress=False)
    train(TrainConfig(out=str(halves), steps=6, precision=precision, **tiny), resume=True, progress=False)
    for name in ("model", "ema", "state"):
        assert same(weights(straight, name), weights(halves, name)), name
    logs = [[json.loads(line)["loss"] for line in open(r / "metrics.jsonl")] for r in (straight, halves)]
    assert logs[0] == logs[1]


def test_refuses_to_overwrite_and_resume_needs_a_run(tiny, tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), steps=1, **tiny), progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(TrainConfig(out=str(out), steps=1, **tiny), progress=False)
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        train(TrainConfig(out=str(tmp_path / "none"), steps=1, **tiny), resume=True, progress=False)


def test_fine_tune_starts_from_the_other_runs_ema_weights(tiny, tmp_path):
    """--init: the new run's network is the source run's (not the preset's), its weights start at the source's EMA
    weights (with a vanishing lr one step leaves them there), and a source that does not fit is refused."""
    src, ft = tmp_path / "src", tmp_path / "ft"
    train(TrainConfig(out=str(src), steps=3, precision="fp32", **tiny), progress=False)
    train(TrainConfig(out=str(ft), steps=1, precision="fp32", init_from=str(src), loss_weighting="uniform",
                      **{**tiny, "model": "small", "lr": 1e-30}), progress=False)
    info, src_info = (json.loads((r / "run.json").read_text()) for r in (ft, src))
    assert info["unet"] == src_info["unet"] and info["init_from"]["step"] == 3
    assert info["train"]["loss_weighting"] == "uniform"
    start, now = weights(src, "ema"), weights(ft, "model")
    assert start.keys() == now.keys() and all(torch.allclose(start[k], now[k], rtol=0, atol=1e-12) for k in start)
    assert not same(weights(src, "model"), now)  # the EMA weights, not the raw ones
    shutil.rmtree(ft / "checkpoints")  # stopped before its first checkpoint: --resume starts from the source again
    train(TrainConfig(out=str(ft), steps=1), resume=True, progress=False)
    again = weights(ft, "model")
    assert all(torch.allclose(start[k], again[k], rtol=0, atol=1e-12) for k in start)
    with pytest.raises(ValueError, match="prediction"):
        train(TrainConfig(out=str(tmp_path / "a"), steps=1, init_from=str(src), prediction="v", **tiny),
              progress=False)
    with pytest.raises(ValueError, match="shape"):
        train(TrainConfig(out=str(tmp_path / "b"), steps=1, init_from=str(src), image_size=16, **tiny),
              progress=False)
    with pytest.raises(FileNotFoundError, match="no run"):
        train(TrainConfig(out=str(tmp_path / "c"), steps=1, init_from=str(tmp_path / "none"), **tiny),
              progress=False)


def test_checkpoints_are_kept_and_pruned(tiny, tmp_path):
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), steps=7, **{**tiny, "checkpoint_every": 2, "keep_last": 2}), progress=False)
    names = [p.name for p in list_checkpoints(out / "checkpoints")]
    assert names == ["step-0000006", "step-0000007"]
    model = TrainedModel.load(out)
    assert model.step == 7
    x = model.sample(3, steps=3)
    assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()


def test_checkpoints_every_few_training_minutes(tiny, tmp_path):
    """checkpoint_minutes: one checkpoint at the first step past each multiple of the period (of training time,
    the budget clock), the last at the end; none of them repeats a period."""
    out = tmp_path / "run"
    period = 0.01  # minutes: 0.6 s
    train(TrainConfig(out=str(out), minutes=0.04, **{**tiny, "checkpoint_every": 10**6, "keep_last": 100,
                                                     "checkpoint_minutes": period}), progress=False)
    states = [json.loads((c / "state.json").read_text()) for c in list_checkpoints(out / "checkpoints")]
    periods = [int(s["elapsed_s"] // (period * 60)) for s in states[:-1]]
    assert len(periods) >= 2 and periods == sorted(set(periods)) and periods[0] >= 1
    assert states[-1]["elapsed_s"] >= 0.04 * 60
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    for s in states[:-1]:  # each checkpoint is the first step past its period: the step before was not past it
        before = [r["elapsed_s"] for r in rows if r["step"] == s["step"] - 1]
        assert not before or int(before[0] // (period * 60)) < int(s["elapsed_s"] // (period * 60))
    with pytest.raises(ValueError, match="checkpoint_minutes must be a number of minutes >= 0"):
        TrainConfig(out=str(out), steps=1, **{**tiny, "checkpoint_minutes": -1})


def test_divergence_stops_with_a_clear_message(tiny, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(out=str(out), steps=2, **{**tiny, "checkpoint_every": 1})
    train(cfg, progress=False)
    bad = TrainConfig(out=str(out), steps=200, **{**tiny, "checkpoint_every": 1000})
    run_json = json.loads((out / "run.json").read_text())
    run_json["train"]["lr"] = 1e30  # a learning rate that blows the weights up
    run_json["train"]["grad_clip"] = 0
    run_json["train"]["checkpoint_every"] = 1000
    (out / "run.json").write_text(json.dumps(run_json))
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf).*last good checkpoint is .*step-0000002"):
        train(bad, resume=True, progress=False)
    assert latest_checkpoint(out / "checkpoints").name == "step-0000002"
    TrainedModel.load(out)  # still readable


def test_batch_stream_visits_every_image_once_per_epoch():
    s = BatchStream(10, 4, seed=3)
    seen = torch.cat([s.next() for _ in range(5)])  # 20 = two epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    assert not torch.equal(seen[:10], seen[10:])
    again = BatchStream(10, 4, seed=3, epoch=s.epoch, pos=s.pos)
    assert torch.equal(again.next(), s.next())


def test_ema_warmup_and_average():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.99)
    assert ema.current_decay() == pytest.approx(1 / 10)
    with torch.no_grad():
        net.weight.fill_(1.0)
    for _ in range(2000):
        ema.update(net)
    assert torch.allclose(ema.shadow.weight, torch.ones(2, 2), atol=1e-6)
    assert ema.current_decay() == 0.99


def test_lr_schedule_warms_up_holds_and_decays_to_zero():
    """Hand-computed: lr 1e-3, 10 warm-up steps, the last quarter of 100 steps (or of 8 minutes) decays linearly."""
    c = TrainConfig(steps=100, lr=1e-3, warmup_steps=10, lr_decay=0.25)
    assert _lr_at(c, 0) == pytest.approx(1e-4)  # first warm-up step
    assert _lr_at(c, 50) == pytest.approx(1e-3) and _lr_at(c, 75) == pytest.approx(1e-3)
    assert _lr_at(c, 90) == pytest.approx(0.4e-3)  # 10 of the 25 decay steps left
    assert _lr_at(c, 99) == pytest.approx(0.04e-3)
    timed = TrainConfig(minutes=8, lr=1e-3, warmup_steps=1, lr_decay=0.25)
    assert _lr_at(timed, 500, elapsed=6 * 60) == pytest.approx(1e-3)
    assert _lr_at(timed, 500, elapsed=7 * 60) == pytest.approx(0.5e-3)
    assert _lr_at(timed, 500, elapsed=9 * 60) == 0.0  # past the budget (the last step) never goes negative
    assert _lr_at(TrainConfig(steps=100, warmup_steps=1), 99) == pytest.approx(1e-3)  # default: constant


def test_training_follows_the_lr_decay(tiny, tmp_path):
    """The optimizer really runs at the scheduled LR: the logged LR of each of 8 steps, the last half decaying."""
    train(TrainConfig(out=str(tmp_path / "run"), steps=8, lr=1e-3, lr_decay=0.5, **tiny), progress=False)
    logged = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    lrs = [r["lr"] for r in logged if "lr" in r]
    assert lrs == pytest.approx([0.5e-3, 1e-3, 1e-3, 1e-3, 1e-3, 0.75e-3, 0.5e-3, 0.25e-3])


def test_bad_settings():
    with pytest.raises(ValueError, match="lr_decay is a fraction"):
        TrainConfig(lr_decay=1.5)
    with pytest.raises(ValueError, match="schedule='quad' is not allowed"):
        TrainConfig(schedule="quad")
    with pytest.raises(ValueError, match="prediction='edm' goes with schedule='karras'"):
        TrainConfig(prediction="edm")
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainConfig.from_dict({"stepz": 3})
