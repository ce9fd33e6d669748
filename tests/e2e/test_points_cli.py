"""Point clouds through the command line, as a user runs them: a folder of clouds -> train (with a subset of
points per step, resumed exactly) -> sample (npz, PLY, pictures) -> eval (MMD / COV / 1-NNA with the floor) ->
show -> info, and the errors of bad clouds."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from diffusekit.data.points import make_shapes3d, read_ply


@pytest.fixture(scope="module")
def clouds(tmp_path_factory):
    """A folder of 10 small clouds in two classes (ellipsoids and tori of shapes3d), as .npy and .ply."""
    from diffusekit.data.points import write_ply

    root = tmp_path_factory.mktemp("clouds")
    ds = make_shapes3d(per_class=5, points=64, seed=0)
    for i, (x, y) in enumerate(zip(ds.x, ds.labels)):
        if y > 1:
            continue
        folder = root / ds.class_names[y]
        folder.mkdir(exist_ok=True)
        if i % 2:
            np.save(folder / f"{i}.npy", x.T.numpy())
        else:
            write_ply(folder / f"{i}.ply", x)
    return root


@pytest.fixture(scope="module")
def run(dk, clouds, tmp_path_factory):
    out = tmp_path_factory.mktemp("pc") / "run"
    cfg = tmp_path_factory.mktemp("cfg") / "c.json"
    cfg.write_text(json.dumps({"points_per_step": 32}))
    dk("train", "--data", clouds, "--model", "tiny", "--steps", "4", "--batch-size", "4", "--cond", "label",
       "--config", cfg, "--out", out, "--no-progress")
    return out


def test_train_builds_the_set_network_and_draws_clouds(run):
    info = json.loads((run / "run.json").read_text())
    assert info["arch"] == "points" and info["data"]["kind"] == "points" and info["data"]["shape"] == [3, 64]
    assert info["train"]["points_per_step"] == 32 and "unet" not in info
    assert Image.open(run / "samples" / "latest.png").format == "PNG"


def test_a_resumed_run_continues_exactly(dk, clouds, run, tmp_path):
    """2 steps + --resume 2 steps = the 4 straight steps, weights bit for bit (the point subsets included)."""
    out = tmp_path / "half"
    args = ("--data", clouds, "--model", "tiny", "--batch-size", "4", "--cond", "label", "--out", out,
            "--no-progress")
    (tmp_path / "c.json").write_text(json.dumps({"points_per_step": 32}))
    dk("train", *args, "--steps", "2", "--config", tmp_path / "c.json")
    dk("train", "--out", out, "--resume", "--steps", "4", "--no-progress")
    a = load_file(str(sorted((run / "checkpoints").iterdir())[-1] / "model.safetensors"))
    b = load_file(str(sorted((out / "checkpoints").iterdir())[-1] / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sample_writes_float_points_ply_and_pictures(dk, run, tmp_path):
    dk("sample", run, "--num", "6", "--steps", "3", "--label", "1", "--out", tmp_path / "s.npz", "--grid",
       tmp_path / "s.gif", "--ply", tmp_path / "ply")
    z = np.load(tmp_path / "s.npz")
    assert z["points"].dtype == np.float32 and z["points"].shape == (6, 64, 3) and "images" not in z
    assert z["labels"].tolist() == [1] * 6
    assert np.allclose(read_ply(tmp_path / "ply" / "sample-0003.ply"), z["points"][3])
    # a GIF (the grid turning a full circle; its frames are counted in tests/viz on real clouds: a 4-step model's
    # samples lie far outside the drawn extent, and GIF merges the equal blank frames)
    assert Image.open(tmp_path / "s.gif").format == "GIF"


def test_eval_reports_the_point_cloud_protocol_with_its_floor(dk, run, clouds, tmp_path):
    r = dk("eval", run, "--num", "5", "--n", "5", "--steps", "3", "--json-out", tmp_path / "e.json")
    assert "1-NNA" in r.stdout.upper() and "floor" in r.stdout
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["n_generated"] == 5 and 0 <= res["cd"]["1nna"] <= 1 and 0 <= res["floor"]["cd"]["cov"] <= 1
    dk("sample", run, "--num", "5", "--steps", "3", "--out", tmp_path / "s.npz")
    r = dk("eval", tmp_path / "s.npz", "--data", clouds, "--n", "5")  # a samples file, against the data named
    assert json.loads((tmp_path / "s.eval.json").read_text())["n_reference"] == 5


def test_show_and_info(dk, run, tmp_path):
    r = dk("show", run, "--out", tmp_path / "show", "--steps", "3", "--num", "2")
    names = [p.rsplit("/", 1)[1] for p in r.stdout.split()]
    assert names == ["forward.png", "reverse.png", "reverse.gif", "samples.gif"]
    assert Image.open(tmp_path / "show" / "reverse.gif").format == "GIF"  # frames: see the sample test
    assert "point transformer" in dk("info", run).stdout


def test_bad_clouds_are_one_line_errors(dk, tmp_path):
    (tmp_path / "bad").mkdir()
    np.save(tmp_path / "bad" / "a.npy", np.full((10, 3), np.nan))
    r = dk("train", "--data", tmp_path / "bad", "--out", tmp_path / "r", "--steps", "1", check=False)
    assert r.returncode == 2 and "a.npy" in r.stderr and "NaN" in r.stderr
    r = dk("train", "--data", "digits", "--out", tmp_path / "r2", "--steps", "1", "--config", _cfg(tmp_path),
           check=False)
    assert r.returncode == 2 and "points_per_step is for point clouds" in r.stderr


def _cfg(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"points_per_step": 8}))
    return tmp_path / "p.json"
