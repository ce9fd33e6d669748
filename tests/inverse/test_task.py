"""The library call under `diffusekit reconstruct` (diffusekit.inverse.task) on a tiny trained run: shapes, seeding,
per-image metrics, consistency, the count of denoiser calls, posterior means of several samples, image loading and
the side-by-side picture, errors. (The command itself: tests/e2e/test_reconstruct_cli.py.)"""

import numpy as np
import pytest
import torch
from PIL import Image

from diffusekit import inverse as inv
from diffusekit.data.phantoms import make_phantoms
from diffusekit.inverse import task as T

SIZE = 16  # the image size of the session's phantoms run (tests/conftest.py)


@pytest.fixture(scope="module")
def model(phantoms_model):
    """The session's tiny phantoms run, loaded (tests/conftest.py)."""
    return phantoms_model


def png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


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


def test_samples_are_averaged_into_the_posterior_mean(model, tmp_path):
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
