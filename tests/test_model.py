"""Run directories written by an earlier diffusekit still load, sample the same numbers, and resume.

The fixtures in tests/fixtures/old-runs/ were written by commit a8995bc (before the package was re-laid out): a
tiny unconditional and a tiny class-conditional digits run, 2 fp32 steps each, with the samples that code drew from
them (`golden-samples.*`). Regenerate nothing here: the point is that today's code reads yesterday's files."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffusekit.model import TrainedModel
from diffusekit.train import TrainConfig, train

OLD = Path(__file__).parent / "fixtures" / "old-runs"


@pytest.mark.parametrize("name", ["digits", "digits-label"])
def test_old_run_samples_what_it_sampled_then(name):
    run = OLD / name
    spec = json.loads((run / "golden-samples.json").read_text())
    model = TrainedModel.load(run, precision="fp32")
    extra = {"labels": spec["labels"], "guidance": spec["guidance"]} if "labels" in spec else {}
    x = model.sample(spec["num"], sampler=spec["sampler"], steps=spec["steps"], seed=spec["seed"], **extra)
    torch.testing.assert_close(x, load_file(str(run / "golden-samples.safetensors"))["samples"], rtol=0, atol=1e-6)


def test_old_run_resumes(tmp_path):
    run = tmp_path / "digits"
    shutil.copytree(OLD / "digits", run)
    train(TrainConfig(out=str(run), steps=3), resume=True, progress=False)
    state = json.loads(sorted((run / "checkpoints").glob("step-*"))[-1].joinpath("state.json").read_text())
    assert state["step"] == 3
    assert json.loads((run / "run.json").read_text())["unet"]["channels"] == 8  # the run's own network, not a preset
