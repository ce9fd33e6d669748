"""A new user's first hour with the command line: every --help renders as text (no argparse internals), the
samplers' own options reach `diffusekit sample` through --option and are saved beside the samples, warnings read as
one line, and `diffusekit info` groups a run's settings."""

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from diffusekit.cli import build_parser


def commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices


@pytest.mark.parametrize("name", sorted(commands()[1]))
def test_every_help_renders_as_text(name):
    text = commands()[1][name].format_help()
    for internal in ("option_strings", "'dest':", "%(", "<function", "{'"):
        assert internal not in text, (name, internal)
    assert text.startswith("usage: ") and len(text) > 200


def test_the_top_level_help_lists_every_command():
    parser, choices = commands()
    text = parser.format_help()
    assert all(name in text for name in choices)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from diffusekit.train import TrainConfig, train

    return train(TrainConfig(out=str(tmp_path_factory.mktemp("cli") / "run"), data="digits", model="tiny", steps=2,
                             batch_size=16, warmup_steps=1, num_grid=2, sample_steps=1), progress=False)


def test_sampler_options_from_the_command_line(run, tmp_path, dk):
    out = tmp_path / "heun.npz"
    dk("sample", run, "--sampler", "heun", "--steps", 3, "--num", 4, "--option", "s_churn=0.5", "--option",
       "s_noise=1.003", "--out", out)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["sampling"] == {"sampler": "heun", "steps": 3, "spacing": None, "options": {"s_churn": 0.5,
                                 "s_noise": 1.003}, "sigma_min": None, "sigma_max": None}
    assert saved["seed"] == 0 and saved["num"] == 4
    plain = tmp_path / "plain.npz"
    dk("sample", run, "--sampler", "heun", "--steps", 3, "--num", 4, "--out", plain)
    assert not np.array_equal(np.load(out)["images"], np.load(plain)["images"])  # churn changed the path
    r = dk("sample", run, "--sampler", "heun", "--option", "churn=0.5", "--out", tmp_path / "x.npz", check=False)
    assert r.returncode == 2 and "has no option 'churn'; it takes: s_churn (default 0.0)" in r.stderr
    r = dk("sample", run, "--sampler", "restart", "--option", "help", "--out", tmp_path / "x.npz", check=False)
    assert r.returncode == 2 and "restarts" in r.stderr and "Traceback" not in r.stderr


def test_warnings_read_as_one_line(tmp_path, dk):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    r = dk("train", "--data", folder, "--model", "tiny", "--steps", 1, "--batch-size", 4, "--out", tmp_path / "r",
           "--no-progress")
    lines = [ln for ln in r.stderr.splitlines() if "broken.png" in ln]
    assert lines and all(ln.startswith("diffusekit: warning: ") for ln in lines)
    assert "load_data(" not in r.stderr and "warnings.warn" not in r.stderr


def test_info_groups_the_settings(run, dk):
    out = dk("info", run).stdout
    lines = out.splitlines()
    start = lines.index("settings")
    groups = [ln.split()[0] for ln in lines[start + 1:]]
    assert groups[:5] == ["data", "model", "diffusion", "training", "output"]
    assert any(ln.strip().startswith("training") and "lr=0.001" in ln for ln in lines)
