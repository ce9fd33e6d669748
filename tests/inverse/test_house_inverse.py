"""The plumbing `diffusekit.inverse` shares with the rest of the package (issue 21): the starting noise, the option
check, the callback, the image reader, and the task registry (a new task is one entry)."""

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import diffusekit as dk
from diffusekit import inverse as inv
from diffusekit.data.folder import load_folder, read_image
from diffusekit.inverse import tasks
from diffusekit.inverse.task import reconstruct_image, save_reconstruction
from diffusekit.samplers.base import check_options, notify, prior_std, starting_noise
from diffusekit.schedules import KarrasSchedule

PACKAGE = Path(dk.__file__).parent


class StandardNormalPrior:
    """The exact denoiser of N(0, I) data: E[x0 | x] = x / (1 + sigma^2), on a continuous schedule."""

    schedule = KarrasSchedule(sigma_min=0.01, sigma_max=20.0)

    def __call__(self, x, sigma, cond=None):
        return x / (1 + float(sigma) ** 2)

    def prior_std(self, sigma_max):
        return (1 + sigma_max**2) ** 0.5


def model16():
    return SimpleNamespace(shape=(1, 16, 16), denoiser=StandardNormalPrior(), info={}, device="cpu")


# ---------------------------------------------------------------------------------------------------------------------
# Shared plumbing


def test_starting_noise_is_the_draw_every_caller_made():
    den = StandardNormalPrior()
    g = torch.Generator().manual_seed(5)
    x = starting_noise(den, (2, 1, 4, 4), 20.0, g, torch.float32, "cpu")
    want = torch.randn((2, 1, 4, 4), generator=torch.Generator().manual_seed(5)) * den.prior_std(20.0)
    assert torch.equal(x, want)
    assert prior_std(lambda x, s, c=None: x, 3.0) == 3.0, "a bare callable starts from sigma_max"
    # sample() and reconstruct() start from it: the same seed, the same start, the same result as a given x
    sigmas = den.schedule.sigmas(4, "karras")
    x0 = starting_noise(den, (2, 1, 4, 4), float(sigmas[0]), torch.Generator().manual_seed(1))
    a = dk.sample(den, (2, 1, 4, 4), sampler="euler", steps=4, generator=torch.Generator().manual_seed(1))
    b = dk.sample(den, sampler="euler", steps=4, x=x0)
    assert torch.equal(a, b)
    op = inv.Mask(inv.box_mask(4))
    y = op.forward(torch.zeros(2, 1, 4, 4))
    a = inv.reconstruct(den, op, y, "ddnm", sigmas=sigmas, generator=torch.Generator().manual_seed(1), eta=0.0)
    b = inv.reconstruct(den, op, y, "ddnm", sigmas=sigmas, x=x0, eta=0.0)
    assert torch.equal(a, b)


def test_one_option_check_for_samplers_methods_operators():
    with pytest.raises(ValueError, match=r"^sampler 'euler' has no option\(s\) \['eta'\]; allowed: \['s_churn'"):
        dk.SamplerConfig("euler", options={"eta": 1.0})
    with pytest.raises(ValueError, match=r"^method 'dps' has no option\(s\) \['noisy'\]; allowed: \['eta', 'zeta'\]$"):
        inv.reconstruct(StandardNormalPrior(), inv.Identity(0.1), torch.zeros(1, 1, 4, 4), "dps", noisy="anchor")
    with pytest.raises(ValueError, match=r"^operator 'denoise' has no option\(s\) \['x'\]; allowed: none$"):
        inv.make_operator("denoise", 8, x=1)
    with pytest.raises(ValueError, match=r"^method 'ddnm' has no option\(s\) \['zeta'\]"):
        reconstruct_image(model16(), torch.zeros(1, 1, 16, 16), "inpaint", zeta=1.0)
    check_options("thing", {"a": 1}, ["a", "b"])  # known options pass


def test_notify_carries_the_step_count_only_when_given():
    seen = []
    notify(seen.append, 3, None, 2.0, 1.0, None)
    notify(seen.append, 3, None, 2.0, 1.0, None, step=7)
    assert list(seen[0]) == ["i", "x", "sigma", "sigma_next", "x0_hat"]
    assert list(seen[1]) == ["i", "step", "x", "sigma", "sigma_next", "x0_hat"] and seen[1]["step"] == 7


def test_the_dead_summarize_is_gone():
    assert not hasattr(inv, "summarize") and "summarize" not in inv.__all__


# ---------------------------------------------------------------------------------------------------------------------
# One image reader


def test_read_image_serves_folders_and_reconstruct(tmp_path):
    rgb = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    v, info = read_image(tmp_path / "c.png", 10, 3)
    assert v.shape == (10, 10, 3) and v.dtype == np.uint8
    assert info == {"mode": "RGB", "size": (30, 20), "alpha": False, "cropped": True, "gray": False}
    assert np.array_equal(read_image(tmp_path / "c.png", (10, 10), 3)[0], v), "an int size is a square"
    same, info = read_image(tmp_path / "c.png", (20, 30), 3)
    assert np.array_equal(same, rgb) and not info["cropped"], "already the size: pixel for pixel"
    assert np.array_equal(load_folder(tmp_path, image_size=10, channels=3).x[0].permute(1, 2, 0).numpy(),
                          v.astype(np.float32) / 127.5 - 1)
    x, notes = inv.load_image(tmp_path / "c.png", (3, 10, 10))
    assert torch.equal(x[0], torch.from_numpy(v.transpose(2, 0, 1).astype(np.float32)) / 127.5 - 1)
    assert notes == ["resized 30x20 -> 10x10 (centre crop) to fit the model"]


def test_read_image_reports_alpha_and_grey(tmp_path):
    la = np.zeros((8, 8, 2), np.uint8)
    la[..., 0], la[..., 1] = 40, 128
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    v, info = read_image(tmp_path / "la.png", 8, 1)
    assert info["alpha"] and info["gray"] and v.shape == (8, 8)
    _, notes = inv.load_image(tmp_path / "la.png", (3, 8, 8))
    assert notes == ["transparency composited on white", "grayscale repeated to 3 channels"]


# ---------------------------------------------------------------------------------------------------------------------
# The task registry


def test_task_operators_are_make_operator():
    """`task_operator` builds through `make_operator`: the same operator as the registry's name for it."""
    pairs = [
        (("inpaint", {"mask_kind": "box"}), ("inpaint-box", {})),
        (("inpaint", {"mask_kind": "half"}), ("inpaint-half", {"missing": "right"})),
        (("inpaint", {"mask_kind": "random", "missing": 0.3, "mask_seed": 4}),
         ("inpaint-random", {"missing": 0.3, "seed": 4})),
        (("superres", {"scale": 2}), ("sr", {"factor": 2})),
        (("mri", {"acceleration": 8, "sampling": "random", "mask_seed": 2}),
         ("mri", {"acceleration": 8, "kind": "random", "seed": 2})),
    ]
    for (task, kw), (name, opts) in pairs:
        a = inv.task_operator(task, (16, 16), sigma_y=0.1, **kw)
        b = inv.make_operator(name, (16, 16), 0.1, **opts)
        assert type(a) is type(b) and repr(a) == repr(b)
        for attr in ("mask", "factor"):
            if hasattr(a, attr):
                assert torch.equal(torch.as_tensor(getattr(a, attr)), torch.as_tensor(getattr(b, attr)))


def test_every_task_is_one_complete_entry():
    assert list(inv.TASKS) == ["inpaint", "superres", "mri"]
    for name, t in inv.TASKS.items():
        assert t.name == name and t.main_baseline and set(t.options) <= set(tasks.task_operator.__kwdefaults__)
    assert tasks.MAIN_BASELINE == {"inpaint": "harmonic_fill", "superres": "bicubic", "mri": "tv"}


def test_a_new_task_is_one_entry(monkeypatch, tmp_path):
    """Blur as a fourth task, registered with one `Task`: reconstruct_image and save_reconstruction run it."""
    def blur(spatial, sigma_y, scale=4):
        return inv.make_operator("blur", spatial, sigma_y, std=scale / 4)

    deblur = tasks.Task(
        "deblur", ("scale",), blur,
        lambda op, y, *_: {"blurred": y.clamp(-1, 1)}, "blurred", lambda op, o: {"std": o["scale"] / 4},
        lambda r: ("blurred", r["measurement"], f"std {r['settings']['std']:g}"))
    monkeypatch.setitem(tasks.TASKS, "deblur", deblur)
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    res = reconstruct_image(model16(), x, "deblur", steps=4, scale=6)
    assert res["settings"]["std"] == 1.5 and set(res["metrics"]) == {"reconstruction", "blurred"}
    assert res["consistency"] < 1e-2, "noiseless DDNM fits y (up to the frequencies the blur all but removes)"
    paths = save_reconstruction(res, tmp_path)
    assert paths["baseline"].name == "baseline.png" and paths["side_by_side"].exists()
    assert json.loads(paths["metrics"].read_text())["settings"]["task"] == "deblur"


def test_reconstruct_image_unknown_task_lists_the_registry():
    with pytest.raises(ValueError, match="unknown task 'deblur'; allowed: inpaint, superres, mri"):
        inv.task_operator("deblur", (16, 16))


# ---------------------------------------------------------------------------------------------------------------------
# Size and imports


def test_inverse_files_and_functions_are_small_and_import_no_private_names():
    for path in sorted((PACKAGE / "inverse").rglob("*.py")):
        src = path.read_text()
        assert src.count("\n") <= 400, path
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno + 1 <= 80, f"{path}:{node.name}"
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                assert not private, f"{path} imports {private}"
