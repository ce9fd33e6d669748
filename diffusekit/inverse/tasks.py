"""The tasks `diffusekit reconstruct` runs, one `Task` each in `TASKS`: what is measured and how (the operator),
the classical reconstructions it is compared with (the baselines), what metrics.json records about the
measurement (the settings) and how side_by_side.png shows it (the panel). A new task is one more entry.

    inpaint   a Mask: a given mask, or a box | half | random one                    baseline: harmonic fill
    superres  average pooling by `scale`                                           baseline: bicubic
    mri       the orthonormal 2-D FFT, k-space undersampled by `acceleration`      baselines: zero-filled IFFT, TV

The operators are built by `operators.make_operator`, the same code as every other operator of that name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..data import load_data
from .baselines import bicubic, harmonic_fill, tune_tv_lambda, tv_reconstruct, zero_filled
from .operators import Mask, Operator, make_operator

MASK_KINDS = ("box", "half", "random")
SAMPLINGS = ("cartesian", "random")
TV_TUNE_IMAGES = 8  # training images the TV weight is tuned on: enough to pick lambda on a quarter-decade grid


def clipped(y: torch.Tensor) -> torch.Tensor:
    """y as a picture in [-1, 1] (the real part of a complex y)."""
    return y.real.clamp(-1, 1) if y.is_complex() else y.clamp(-1, 1)


@dataclass(frozen=True)
class Task:
    """One reconstruction task.

    name           what `--task` and `reconstruct_image(task=...)` take
    options        the keywords of `reconstruct_image` / `task_operator` that set its measurement
    operator       operator((H, W), sigma_y, **options) -> the measurement operator A, options checked
    baselines      baselines(A, y, tv_lambda, tv_iters) -> {name: classical reconstruction in [-1, 1]}
    main_baseline  the baseline saved as baseline.png (the others as baseline-<name>.png)
    settings       settings(A, options) -> what metrics.json records about the measurement
    panel          panel(result) -> (title, images, caption) of the measurement's column in side_by_side.png
    picture        picture(y) -> the measurement as measurement.png shows it, in [-1, 1]
    tunes_tv       its baselines need a TV weight, tuned on the model's training images unless given"""

    name: str
    options: tuple[str, ...]
    operator: Callable[..., Operator]
    baselines: Callable[..., dict]
    main_baseline: str
    settings: Callable[[Operator, dict], dict]
    panel: Callable[[dict], tuple[str, torch.Tensor, str]]
    picture: Callable[[torch.Tensor], torch.Tensor] = clipped
    tunes_tv: bool = False

    def make_operator(self, spatial, sigma_y: float = 0.0, **given) -> Operator:
        """A for images of spatial shape (H, W), from the task's own options among `given` (others are ignored)."""
        return self.operator(tuple(spatial), sigma_y, **{k: given[k] for k in self.options if k in given})


# ---------------------------------------------------------------------------------------------------------------------
# inpaint


def inpaint_operator(spatial, sigma_y, mask=None, mask_kind="box", missing=0.8, mask_seed=0) -> Operator:
    """`mask` (H, W) bool, True = known, else `mask_kind`: box (the central box of half the height and width
    missing), half (the right half missing), random (a `missing` share of pixels, from mask_seed)."""
    H, W = spatial
    if mask is not None:
        if tuple(mask.shape) != (H, W):
            raise ValueError(f"the mask is {tuple(mask.shape)}; the images are {(H, W)}")
        return Mask(mask, sigma_y)
    named = {"box": ("inpaint-box", {}), "half": ("inpaint-half", {"missing": "right"}),
             "random": ("inpaint-random", {"missing": missing, "seed": mask_seed})}
    if mask_kind not in named:
        raise ValueError(f"unknown mask kind {mask_kind!r}; allowed: {', '.join(MASK_KINDS)}")
    name, options = named[mask_kind]
    return make_operator(name, (H, W), sigma_y, **options)


def inpaint_settings(op: Mask, o: dict) -> dict:
    s = {"mask": "file" if o["mask"] is not None else o["mask_kind"], "missing_fraction": round(op.missing_fraction, 4)}
    if o["mask"] is None and o["mask_kind"] == "random":
        s.update(missing=o["missing"], mask_seed=o["mask_seed"])
    return s


def inpaint_panel(result: dict) -> tuple[str, torch.Tensor, str]:
    return "measured", result["measurement"], f"{100 * result['settings']['missing_fraction']:.0f}% missing"


# ---------------------------------------------------------------------------------------------------------------------
# superres


def superres_operator(spatial, sigma_y, scale=4) -> Operator:
    """Average pooling by `scale` (H and W must divide by it)."""
    H, W = spatial
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
        raise ValueError(f"scale must be an integer >= 2, got {scale!r}")
    if H % scale or W % scale:
        ok = [f for f in (2, 3, 4, 7, 8) if H % f == 0 and W % f == 0]
        raise ValueError(f"the model's {W}x{H} images do not divide by scale {scale}; scales that do: "
                         f"{', '.join(map(str, ok)) or 'none'}")
    return make_operator("sr", (H, W), sigma_y, factor=scale)


def superres_panel(result: dict) -> tuple[str, torch.Tensor, str]:
    """The low-resolution image at full size (nearest neighbour), captioned with its pixel count."""
    y = result["y"]
    low = result["operator"].pinv(y).clamp(-1, 1)
    return f"low-res (1/{result['settings'].get('scale')})", low, f"{y.shape[-1]}x{y.shape[-2]} pixels"


# ---------------------------------------------------------------------------------------------------------------------
# mri


def mri_operator(spatial, sigma_y, acceleration=4.0, sampling="cartesian", mask_seed=0) -> Operator:
    """The orthonormal 2-D FFT with round(W / acceleration) k-space lines (`sampling` cartesian, fully sampled
    centre as fastMRI) or single points (random), drawn from mask_seed."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"unknown k-space sampling {sampling!r}; allowed: {', '.join(SAMPLINGS)}")
    if not acceleration > 1:
        raise ValueError(f"acceleration must be > 1 (1 is a fully sampled k-space), got {acceleration}")
    return make_operator("mri", tuple(spatial), sigma_y, acceleration=acceleration, kind=sampling, seed=mask_seed)


def mri_baselines(op: Operator, y: torch.Tensor, tv_lambda: float | None, tv_iters: int) -> dict:
    if tv_lambda is None:
        raise ValueError("the MRI baselines need tv_lambda (tune it with `tune_tv_for_model` or "
                         "`inverse.tune_tv_lambda` on training images)")
    return {"zero_filled": zero_filled(op, y).clamp(-1, 1), "tv": tv_reconstruct(op, y, tv_lambda, tv_iters)}


def mri_settings(op, o: dict) -> dict:
    return {"acceleration": o["acceleration"], "measured_acceleration": round(op.acceleration, 3),
            "sampling": o["sampling"], "mask_seed": o["mask_seed"]}


def kspace_picture(y: torch.Tensor) -> torch.Tensor:
    """log(1 + |k|) of the centred k-space per image and channel, scaled to its maximum (unmeasured k black)."""
    k = torch.fft.fftshift(y, dim=(-2, -1)).abs()
    v = torch.log1p(k / k.flatten(2).amax(-1).clamp(min=1e-12)[..., None, None] * 1000)  # ~3 decades visible
    return 2 * v / v.flatten(2).amax(-1).clamp(min=1e-12)[..., None, None] - 1


def mri_panel(result: dict) -> tuple[str, torch.Tensor, str]:
    s = result["settings"]
    return "k-space (log)", result["measurement"], f"{s['measured_acceleration']:.1f}x, {s['sampling']}"


# ---------------------------------------------------------------------------------------------------------------------
# The registry


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("inpaint", ("mask", "mask_kind", "missing", "mask_seed"), inpaint_operator,
         lambda op, y, *_: {"harmonic_fill": harmonic_fill(op, y).clamp(-1, 1)}, "harmonic_fill",
         inpaint_settings, inpaint_panel),
    Task("superres", ("scale",), superres_operator, lambda op, y, *_: {"bicubic": bicubic(op, y).clamp(-1, 1)},
         "bicubic", lambda op, o: {"scale": o["scale"]}, superres_panel),
    Task("mri", ("acceleration", "sampling", "mask_seed"), mri_operator, mri_baselines, "tv", mri_settings,
         mri_panel, picture=kspace_picture, tunes_tv=True),
)}
MAIN_BASELINE = {name: t.main_baseline for name, t in TASKS.items()}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    return TASKS[name]


def task_operator(task: str, spatial, *, mask: torch.Tensor | None = None, mask_kind: str = "box",
                  missing: float = 0.8, scale: int = 4, acceleration: float = 4.0, sampling: str = "cartesian",
                  mask_seed: int = 0, sigma_y: float = 0.0) -> Operator:
    """The measurement of a task for images of spatial shape (H, W) (see each task's operator: `inpaint_operator`,
    `superres_operator`, `mri_operator`)."""
    return get_task(task).make_operator(spatial, sigma_y, mask=mask, mask_kind=mask_kind, missing=missing,
                                        scale=scale, acceleration=acceleration, sampling=sampling,
                                        mask_seed=mask_seed)


def task_baselines(task: str, operator: Operator, y: torch.Tensor, tv_lambda: float | None = None,
                   tv_iters: int = 300) -> dict[str, torch.Tensor]:
    """The classical reconstructions of a task, clipped to [-1, 1], by name (see `baselines`)."""
    return get_task(task).baselines(operator, y, tv_lambda, tv_iters)


def measurement_picture(task: str, operator: Operator, y: torch.Tensor) -> torch.Tensor:
    """What y looks like, in [-1, 1]: inpaint y itself (missing pixels are 0, mid-grey), superres the
    low-resolution image, mri log(1 + |k|) of the centred k-space (`kspace_picture`)."""
    return get_task(task).picture(y)


def tune_tv_for_model(model, operator: Operator, n: int = TV_TUNE_IMAGES, seed: int = 0,
                      iters: int = 300) -> tuple[float, str]:
    """The TV weight for `operator`, tuned (`tune_tv_lambda`) on n images of the model's own training data (never
    the image to reconstruct), measured with the operator's noise. Returns (lambda, a note saying on what)."""
    spec = model.info["train"]["data"]
    shape = tuple(getattr(model, "data_shape", model.shape))
    ds = load_data(spec, image_size=model.info["train"].get("image_size"), channels=shape[0])
    if tuple(ds.x.shape[1:]) != shape:
        raise ValueError(f"the training data {spec!r} now loads as {tuple(ds.x.shape[1:])}, not the model's "
                         f"{shape}: pass tv_lambda (--tv-lambda)")
    pick = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    lam, _ = tune_tv_lambda(operator, ds.x[torch.from_numpy(pick)], iters=iters,
                            generator=torch.Generator().manual_seed(seed))
    return lam, f"tuned by PSNR on {len(pick)} training images of {spec!r}"


__all__ = [
    "TASKS", "Task", "MASK_KINDS", "SAMPLINGS", "MAIN_BASELINE", "get_task", "task_operator", "task_baselines",
    "measurement_picture", "tune_tv_for_model",
]
