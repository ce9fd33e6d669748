"""`diffusekit reconstruct` end to end on a tiny trained run: files, metrics, measurement consistency, errors. (The
library call under it, `diffusekit.inverse.task`: tests/inverse/test_task.py.)"""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from diffusekit.data.phantoms import make_phantoms
from diffusekit.inverse import task as T

SIZE = 16  # the image size of the session's phantoms run (tests/conftest.py)


@pytest.fixture(scope="module")
def run(phantoms_run):
    """A tiny UNet trained 3 steps on 16x16 phantoms with the command line (tests/conftest.py)."""
    return phantoms_run


@pytest.fixture(scope="module")
def truth_png(tmp_path_factory):
    """A held-out phantom (seed 7, not the training seed 0) as a 32x32 PNG: the CLI resizes it to 16x16."""
    x = make_phantoms(1, 32, seed=7)
    v = np.rint((x[0, 0].numpy() + 1) * 127.5).astype(np.uint8)
    path = tmp_path_factory.mktemp("img") / "phantom.png"
    Image.fromarray(v, "L").save(path)
    return path


def png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


TASK_ARGS = {
    "inpaint": ["--mask-kind", "random", "--missing", "0.5"],
    "superres": ["--scale", "4", "--noise", "0.05"],
    "mri": ["--acceleration", "4", "--sampling", "cartesian", "--tv-lambda", "0.01"],
}


@pytest.mark.parametrize("task", list(TASK_ARGS))
def test_each_task_writes_every_file(dk, run, truth_png, tmp_path, task):
    out = tmp_path / "out"
    r = dk("reconstruct", run, "--task", task, "--input", truth_png, "--out", out, "--steps", "4", "--seed", "3",
           *TASK_ARGS[task])
    assert "resized 32x32 -> 16x16" in r.stderr, "the resize is announced"
    files = {"measurement.png", "reconstruction.png", "baseline.png", "truth.png", "side_by_side.png",
             "metrics.json"} | ({"baseline-zero-filled.png"} if task == "mri" else set())
    assert {p.name for p in out.iterdir()} == files
    for name in ("reconstruction.png", "baseline.png", "truth.png"):
        assert png(out / name).shape == (SIZE, SIZE)
    assert png(out / "measurement.png").shape == ((SIZE // 4, SIZE // 4) if task == "superres" else (SIZE, SIZE))
    sbs = png(out / "side_by_side.png")
    assert sbs.ndim == 3 and sbs.shape[1] >= (5 if task == "mri" else 4) * 96, "labelled panels, enlarged"
    m = json.loads((out / "metrics.json").read_text())
    assert {"run_dir", "model_step", "input", "task", "method", "metrics", "consistency", "settings", "seconds",
            "notes", "files"} <= set(m)
    baselines = {"inpaint": {"harmonic_fill"}, "superres": {"bicubic"}, "mri": {"zero_filled", "tv"}}[task]
    assert set(m["metrics"]) == {"reconstruction"} | baselines
    for v in m["metrics"].values():
        assert np.isfinite(v["psnr"]) and 0 < v["ssim"] <= 1
    assert m["settings"]["task"] == task and m["settings"]["steps"] == 4 and m["settings"]["seed"] == 3
    assert m["seconds"]["total"] > 0 and m["model_step"] == 3
    # the baseline's PSNR in metrics.json is that of baseline.png against truth.png (to the 8-bit rounding)
    main = T.MAIN_BASELINE[task]
    t, b = (png(out / f).astype(np.float64) / 127.5 - 1 for f in ("truth.png", "baseline.png"))
    assert abs(10 * np.log10(4 / np.mean((t - b) ** 2)) - m["metrics"][main]["psnr"]) < 0.3


def test_inpainting_keeps_the_known_pixels_exactly(dk, run, truth_png, tmp_path):
    """DDNM with noiseless y: A x_hat = y, so every white pixel of --mask comes back as it went in."""
    rng = np.random.default_rng(0)
    known = rng.random((SIZE, SIZE)) < 0.6
    Image.fromarray(np.where(known, 255, 0).astype(np.uint8), "L").save(tmp_path / "mask.png")
    out = tmp_path / "out"
    dk("reconstruct", run, "--task", "inpaint", "--input", truth_png, "--mask", tmp_path / "mask.png", "--out", out,
       "--steps", "5", "--no-progress")
    truth, rec = png(out / "truth.png"), png(out / "reconstruction.png")
    assert np.array_equal(rec[known], truth[known])
    assert not np.array_equal(rec[~known], truth[~known]), "a 3-step prior does not guess the missing pixels"
    m = json.loads((out / "metrics.json").read_text())
    assert m["consistency"] < 1e-5 and m["settings"]["mask"] == "file"
    assert abs(m["settings"]["missing_fraction"] - (1 - known.mean())) < 1e-4


def test_errors_say_what_to_do(run, truth_png, tmp_path, capsys):
    """In-process `main` (the same code path as the command, without a second interpreter start-up per case)."""
    from diffusekit.cli import main

    def fails(*args):
        assert main(["reconstruct", str(run), *map(str, args), "--out", str(tmp_path / "o")]) == 2
        return capsys.readouterr().err

    err = fails("--task", "mri", "--input", tmp_path / "none.png")
    assert "none.png does not exist" in err
    Image.fromarray(np.full((8, 8), 255, np.uint8), "L").save(tmp_path / "small.png")
    err = fails("--task", "inpaint", "--input", truth_png, "--mask", tmp_path / "small.png")
    assert "is 8x8 but the model's images are 16x16" in err and "white = known" in err
    err = fails("--task", "superres", "--scale", "3", "--input", truth_png)
    assert "do not divide by scale 3" in err and "scales that do: 2, 4, 8" in err
    err = fails("--task", "mri", "--mask", tmp_path / "small.png", "--input", truth_png)
    assert "--mask is for --task inpaint" in err
    with pytest.raises(SystemExit):
        main(["reconstruct", str(run), "--task", "deblur", "--input", str(truth_png), "--out", str(tmp_path)])
    assert "invalid choice: 'deblur'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reconstruct", "--help"])
    assert "white = known" in capsys.readouterr().out
    signal_model = SimpleNamespace(shape=(1, 32), denoiser=None, info={})
    with pytest.raises(ValueError, match="2-D images.*1-D signals"):
        T.reconstruct_image(signal_model, torch.zeros(1, 1, 32), "inpaint")
