"""`diffusekit reconstruct` end to end on a tiny trained run, and the library call under it
(`diffusekit.inverse.task`): files, metrics, measurement consistency, errors."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from diffusekit import inverse as inv
from diffusekit.data.phantoms import make_phantoms
from diffusekit.inverse import task as T
from helpers import dk

SIZE = 16


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny UNet trained 3 steps on 16x16 phantoms: a poor prior, but a real run directory of 2-D images."""
    out = tmp_path_factory.mktemp("recon") / "run"
    dk("train", "--data", "phantoms", "--image-size", SIZE, "--model", "tiny", "--steps", "3", "--batch-size", "8",
       "--out", out, "--no-progress")
    return out


@pytest.fixture(scope="module")
def model(run):
    from diffusekit.runs import TrainedModel

    return TrainedModel.load(run)


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
def test_each_task_writes_every_file(run, truth_png, tmp_path, task):
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


def test_inpainting_keeps_the_known_pixels_exactly(run, truth_png, tmp_path):
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


@pytest.mark.parametrize("method", inv.METHODS)
def test_library_call_every_method(model, method):
    """reconstruct_image on a batch: shapes, seeding, per-image metrics; consistency where the method
    guarantees it; the progress total is the number of denoising steps actually taken."""
    x = make_phantoms(2, SIZE, seed=11)
    options = {"repaint": {"jump_length": 2, "resample": 2}}.get(method, {})
    calls = []
    res = T.reconstruct_image(model, x, "inpaint", method=method, steps=6, seed=1, mask_kind="box",
                              progress=lambda done, total: calls.append((done, total)), **options)
    assert res["reconstruction"].shape == x.shape and res["reconstruction"].abs().max() <= 1
    assert [d for d, _ in calls] == list(range(1, len(calls) + 1)) and calls[-1][1] == len(calls)
    assert res["settings"]["denoiser_calls"] == len(calls) >= 6
    assert len(res["per_image"]["reconstruction"]["psnr"]) == 2
    if method != "dps":
        mask = res["operator"].mask
        assert torch.allclose(res["raw"][..., mask], x[..., mask], atol=1e-5)
        assert res["consistency"] < 1e-5
    again = T.reconstruct_image(model, x, "inpaint", method=method, steps=6, seed=1, **options)
    assert torch.equal(again["raw"], res["raw"]), "seeded"


@pytest.mark.parametrize("task,kw", [("inpaint", {"mask_kind": "half"}), ("superres", {"scale": 2}),
                                     ("mri", {"acceleration": 8, "sampling": "random"})])
@pytest.mark.parametrize("method,sigma_y,options", [("ddnm", 0.1, {}), ("ddnm", 0.0, {"resample": 3,
                                                                                       "jump_length": 2}),
                                                    ("repaint", 0.05, {"jump_length": 3, "resample": 2}),
                                                    ("dps", 0.05, {})])
def test_denoiser_calls_counts_the_callbacks(model, task, kw, method, sigma_y, options):
    """The progress bar's total: noisy y adds a level at sigma_r, time travel and resampling add steps."""
    op = T.task_operator(task, (SIZE, SIZE), sigma_y=sigma_y, **kw)
    x = make_phantoms(1, SIZE, seed=3)
    y = op.measure(x, torch.Generator().manual_seed(0))
    sigmas = inv.solvers.default_sigmas(model.denoiser, 7)
    calls = []
    inv.reconstruct(model.denoiser, op, y, method, sigmas=sigmas, callback=calls.append, **options)
    assert inv.denoiser_calls(method, op, tuple(x.shape), sigmas, **options) == len(calls)


def test_samples_are_averaged_into_the_posterior_mean(model, truth_png, tmp_path):
    x = make_phantoms(2, SIZE, seed=6)
    res = T.reconstruct_image(model, x, "mri", acceleration=4, steps=4, samples=3, tv_lambda=0.01)
    draws = res["samples"]
    assert draws.shape == (2, 3, 1, SIZE, SIZE) and not torch.equal(draws[:, 0], draws[:, 1]), "K distinct draws"
    assert torch.allclose(res["reconstruction"], draws.mean(1), atol=1e-6)
    assert res["per_image"]["single_sample"]["psnr"][0] == pytest.approx(float(inv.psnr(draws[:1, 0], x[:1])[0]))
    assert res["consistency"] < 1e-5, "the mean of consistent samples is consistent (A is linear)"
    assert res["settings"]["samples"] == 3 and res["settings"]["denoiser_calls"] == 4
    paths = T.save_reconstruction(res, tmp_path)
    assert png(paths["samples"]).shape == (2 * (SIZE + 2) + 2, 3 * (SIZE + 2) + 2)
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        T.reconstruct_image(model, x, "mri", samples=0, tv_lambda=0.01)


def test_noisy_measurements_are_not_fitted_exactly(model):
    x = make_phantoms(1, SIZE, seed=4)
    res = T.reconstruct_image(model, x, "superres", scale=2, sigma_y=0.1, steps=5)
    assert res["consistency"] > 1e-3, "y carries noise: below sigma_r the solver stops copying it"
    assert res["settings"]["sigma_y"] == 0.1
    exact = T.reconstruct_image(model, x, "superres", scale=2, sigma_y=0.0, steps=5)
    assert exact["consistency"] < 1e-5


def test_mri_tv_weight_is_tuned_on_training_images(model):
    x = make_phantoms(1, SIZE, seed=5)
    res = T.reconstruct_image(model, x, "mri", acceleration=4, steps=3, tv_iters=20)
    s = res["settings"]
    assert "training images of 'phantoms'" in s["tv_lambda_source"] and 1e-6 < s["tv_lambda"] < 10
    assert "tv_tuning" in res["seconds"]
    kspace = res["measurement"]
    assert kspace.shape == x.shape and kspace.min() == -1 and kspace.max() == 1, "log k-space picture"


def test_load_image_converts_and_resizes(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: luma 0.299 * 255
    Image.fromarray(rgb, "RGB").save(tmp_path / "red.png")
    x, notes = T.load_image(tmp_path / "red.png", (1, 8, 8))
    assert x.shape == (1, 1, 8, 8) and torch.allclose(x, torch.full_like(x, 76 / 127.5 - 1), atol=1 / 127.5)
    assert any("grayscale" in n for n in notes) and any("30x20 -> 8x8 (centre crop)" in n for n in notes)
    x, notes = T.load_image(tmp_path / "red.png", (3, 20, 30))
    assert x.shape == (1, 3, 20, 30) and notes == [] and x[0, 0].eq(1).all() and x[0, 1].eq(-1).all()
    np.save(tmp_path / "a.npy", np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8))
    x, notes = T.load_image(tmp_path / "a.npy", (1, 8, 8))
    assert x.shape == (1, 1, 8, 8) and x.min() == -1 and x.max() == 1 and "[0, 1] mapped" in notes[0]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read .*bad.png"):
        T.load_image(tmp_path / "bad.png", (1, 8, 8))
    with pytest.raises(ValueError, match="unsupported image type '.txt'"):
        (tmp_path / "x.txt").write_text("x")
        T.load_image(tmp_path / "x.txt", (1, 8, 8))
    with pytest.raises(ValueError, match="2-D images .*1-D signals"):
        T.load_image(tmp_path / "red.png", (1, 32))


def test_side_by_side_is_a_labelled_png(tmp_path):
    a = torch.linspace(-1, 1, 2 * 16 * 16).reshape(2, 1, 16, 16)
    img = T.side_by_side([("truth", a), ("ddnm", -a)], tmp_path / "s.png", {"ddnm": ["30.0 dB", "31.0 dB"]})
    v = png(tmp_path / "s.png")
    assert img.size == (v.shape[1], v.shape[0]) and v.shape[1] >= 2 * 96 and v.shape[0] >= 2 * 96
    assert (v[:14] < 128).any(), "titles are drawn"
    with pytest.raises(ValueError, match="same"):
        T.side_by_side([("a", a), ("b", a[:1])])


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


def test_library_errors(model):
    x = make_phantoms(1, SIZE, seed=1)
    with pytest.raises(ValueError, match=r"model works on \(B, 1, 16, 16\)"):
        T.reconstruct_image(model, torch.zeros(1, 1, 8, 8), "inpaint")
    with pytest.raises(ValueError, match="allowed: inpaint, superres, mri"):
        T.reconstruct_image(model, x, "deblur")
    with pytest.raises(ValueError, match=r"no option\(s\) \['zeta'\]"):
        T.reconstruct_image(model, x, "inpaint", method="ddnm", zeta=1.0)
    with pytest.raises(ValueError, match="allowed: box, half, random"):
        T.task_operator("inpaint", (SIZE, SIZE), mask_kind="ring")
    with pytest.raises(ValueError, match="acceleration must be > 1"):
        T.task_operator("mri", (SIZE, SIZE), acceleration=1)
