"""One reconstruction task end to end, as `diffusekit reconstruct` runs it: an image in, a simulated measurement, the
diffusion reconstruction, the classical baseline, metrics and pictures out.

    load_image          a PNG/JPEG/WebP/BMP or .npy -> (1, C, H, W) in [-1, 1] at the model's size (with notes)
    load_mask           a PNG mask, white = known pixel, black = missing -> (H, W) bool
    task_operator       inpaint | superres | mri -> the measurement operator A for the model's image size
    task_baselines      the classical reconstructions: harmonic fill (inpaint), bicubic (superres), zero-filled
                        IFFT and TV (mri)
    reconstruct_image   all of it in one call, returns tensors + metrics (a dict, see its docstring)
    save_reconstruction the files: measurement.png, reconstruction.png, baseline.png, truth.png, side_by_side.png,
                        metrics.json
    side_by_side        labelled panels (Pillow), one row per image

The input image is the ground truth: the measurement y = A x + sigma_y n is simulated from it, so that the
reconstruction can be scored against it (PSNR, SSIM) next to the baseline. Everything is in [-1, 1]; the
reconstruction and the baselines are clipped to [-1, 1] before scoring (clipping can only bring an estimate closer to a
truth in [-1, 1], so it is the same favour to every method).

    from diffusekit.model import TrainedModel
    from diffusekit.inverse.task import load_image, reconstruct_image, save_reconstruction
    model = TrainedModel.load("runs/phantoms")
    x, notes = load_image("brain.png", model.shape)
    res = reconstruct_image(model, x, "mri", acceleration=4, method="ddnm", steps=100, seed=0)
    res["metrics"]   # {"reconstruction": {"psnr": ..., "ssim": ...}, "zero_filled": {...}, "tv": {...}}
    save_reconstruction(res, "out/")
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from .baselines import bicubic, harmonic_fill, tune_tv_lambda, tv_reconstruct, zero_filled
from .metrics import psnr, ssim
from .operators import Downsample, FourierSubsample, Mask, Operator, box_mask, half_mask, random_pixel_mask
from .solvers import METHOD_OPTIONS, METHODS, default_sigmas, denoiser_calls, reconstruct

TASKS = ("inpaint", "superres", "mri")
MASK_KINDS = ("box", "half", "random")
SAMPLINGS = ("cartesian", "random")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# Default ladder lengths. DDNM: 100 steps, the paper's setting (Wang et al. 2023, sec. 4). RePaint: 50 steps, each
# walked ~8 times by its resampling (jump_length 10, resample 10: 410 denoiser calls, ~4x DDNM's cost; the paper
# uses 250 steps, 10x ours, out of reach on a CPU). DPS: 100 steps (the paper uses 1000; each step also
# backpropagates through the network, ~3x a plain step); it is approximate at any length (see `solvers`).
DEFAULT_STEPS = {"ddnm": 100, "repaint": 50, "dps": 100}
TV_TUNE_IMAGES = 8  # training images the TV weight is tuned on: enough to pick lambda on a quarter-decade grid
SSIM_MIN_SIDE = 11  # SSIM's 11-tap Gaussian window (`metrics.ssim`) must fit the image
MAIN_BASELINE = {"inpaint": "harmonic_fill", "superres": "bicubic", "mri": "tv"}
LABELS = {"harmonic_fill": "harmonic fill", "bicubic": "bicubic", "zero_filled": "zero-filled", "tv": "TV",
          "truth": "truth"}


# ---------------------------------------------------------------------------------------------------------------------
# Inputs


def _check_image_model(shape) -> tuple[int, int, int]:
    shape = tuple(shape)
    if len(shape) != 3:
        kind = {2: "1-D signals", 4: "video / 3-D volumes"}.get(len(shape), "data")
        raise ValueError(f"reconstruct works on 2-D images (C, H, W); this model makes {kind} of shape {shape}: "
                         "train a model on images (e.g. --data phantoms or mnist5k)")
    if shape[0] not in (1, 3):
        raise ValueError(f"reconstruct works on grayscale or RGB images; this model makes {shape[0]} channels")
    return shape  # type: ignore[return-value]


def _crop_to_aspect(w: int, h: int, W: int, H: int) -> tuple[float, float, float, float]:
    """The centred box of (w, h) with the aspect ratio W / H (left, top, right, bottom)."""
    if w * H > h * W:  # too wide
        cw = h * W / H
        return (w - cw) / 2, 0.0, (w + cw) / 2, float(h)
    ch = w * H / W
    return 0.0, (h - ch) / 2, float(w), (h + ch) / 2


def load_image(path, shape) -> tuple[torch.Tensor, list[str]]:
    """Read an image file as the model's (1, C, H, W) in [-1, 1]; returns (image, notes on what was changed).

    PNG/JPEG/WebP/BMP: EXIF orientation applied, transparency composited on white, converted to grayscale (BT.601
    luma) or RGB as the model needs, 16-bit grey scaled to 8 bits; another size is centre-cropped to the model's
    aspect ratio and resized (Lanczos), as image folders are read for training. .npy: (H, W), (C, H, W) or (1, C, H, W),
    scaled by the rule of `diffusekit.data.arrays` (uint8 0..255, floats in [0, 1] or [-1, 1]), resized bilinearly
    with antialiasing."""
    C, H, W = _check_image_model(shape)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input image {path} does not exist")
    if path.is_dir():
        raise ValueError(f"--input must be one image file, got the folder {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _load_npy(path, C, H, W)
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"{path}: unsupported image type {suffix or '(none)'!r}; give a "
                         f"{', '.join(IMAGE_SUFFIXES)} or .npy file")
    notes = []
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            mode0 = im.mode
            if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
                white = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, im.convert("RGBA")).convert("RGB")
                notes.append("transparency composited on white")
            elif im.mode.startswith("I") or im.mode == "F":  # 16- or 32-bit grey
                a = np.asarray(im, dtype=np.float64)
                a = a / 257 if a.max() > 255 else a
                im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
            gray = im.mode in ("1", "L") or (im.mode == "RGB" and _is_gray_rgb(im))
            if C == 1 and not gray:
                notes.append(f"colour ({mode0}) converted to grayscale (BT.601 luma)")
            elif C == 3 and gray:
                notes.append("grayscale repeated to 3 channels")
            im = im.convert("L" if C == 1 else "RGB")
            if im.size != (W, H):
                w, h = im.size
                box = _crop_to_aspect(w, h, W, H)
                cropped = (box[2] - box[0], box[3] - box[1]) != (w, h)
                im = im.resize((W, H), Image.Resampling.LANCZOS, box=box)
                notes.append(f"resized {w}x{h} -> {W}x{H}" + (" (centre crop)" if cropped else "") +
                             " to fit the model")
            v = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read {path} as an image ({type(e).__name__}: {e})") from e
    v = v[None] if v.ndim == 2 else v.transpose(2, 0, 1)  # (C, H, W)
    x = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) / 127.5 - 1
    return x.unsqueeze(0), notes


def _is_gray_rgb(im: Image.Image) -> bool:
    a = np.asarray(im)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def _load_npy(path: Path, C: int, H: int, W: int) -> tuple[torch.Tensor, list[str]]:
    from ..data.arrays import scale_to_unit
    from ..data.dataset import convert_channels

    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise ValueError(f"{path}: not a plain numeric .npy array ({e}); pickled data is refused") from e
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[0] != 1:
        raise ValueError(f"{path}: expected one image, (H, W), (C, H, W) or (1, C, H, W); got shape {a.shape}")
    x, note = scale_to_unit(a, str(path))
    notes = [note]
    x, ch_note = convert_channels(x, C, path.name)
    notes += [ch_note] if ch_note else []
    h, w = x.shape[-2:]
    if (h, w) != (H, W):
        left, top, right, bottom = (int(round(v)) for v in _crop_to_aspect(w, h, W, H))
        x = x[..., top:bottom, left:right]
        x = F.interpolate(x, size=(H, W), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)
        notes.append(f"resized {w}x{h} -> {W}x{H} to fit the model")
    return x.float().contiguous(), notes


def load_mask(path, spatial) -> tuple[torch.Tensor, list[str]]:
    """A mask image (PNG or any format Pillow reads) -> (H, W) bool, True = known. White (>= 128 after converting
    to grayscale) is a known pixel, black a missing one. It must have the model's size exactly: a resized mask
    would blur the border between known and missing."""
    H, W = spatial
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask {path} does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            v = np.asarray(im.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read the mask {path} as an image ({type(e).__name__}: {e})") from e
    if v.shape != (H, W):
        raise ValueError(f"the mask {path} is {v.shape[1]}x{v.shape[0]} but the model's images are {W}x{H}: make "
                         f"the mask {W}x{H} (white = known pixels, black = missing)")
    notes = []
    grey = int(((v > 32) & (v < 224)).sum())
    if grey:
        notes.append(f"mask has {grey} grey pixels; thresholded at 128 (white = known)")
    m = torch.from_numpy(v >= 128)
    if m.all():
        notes.append("the mask marks every pixel known: nothing to fill")
    elif not m.any():
        notes.append("the mask marks every pixel missing: the reconstruction is an unconditional sample")
    return m, notes


# ---------------------------------------------------------------------------------------------------------------------
# Operators and baselines


def task_operator(task: str, spatial, *, mask: torch.Tensor | None = None, mask_kind: str = "box",
                  missing: float = 0.8, scale: int = 4, acceleration: float = 4.0, sampling: str = "cartesian",
                  mask_seed: int = 0, sigma_y: float = 0.0) -> Operator:
    """The measurement of a task for images of spatial shape (H, W).

    inpaint   a Mask: `mask` (H, W) bool, True = known, else `mask_kind`: box (the central box of half the height and
              width missing), half (the right half missing), random (a `missing` share of pixels, from mask_seed)
    superres  average pooling by `scale` (H and W must divide by it)
    mri       the orthonormal 2-D FFT with round(W / acceleration) k-space lines (`sampling` cartesian, fully
              sampled centre as fastMRI) or single points (random), drawn from mask_seed"""
    H, W = spatial
    if task == "inpaint":
        if mask is not None:
            if tuple(mask.shape) != (H, W):
                raise ValueError(f"the mask is {tuple(mask.shape)}; the images are {(H, W)}")
            return Mask(mask, sigma_y)
        if mask_kind == "box":
            return Mask(box_mask((H, W)), sigma_y)
        if mask_kind == "half":
            return Mask(half_mask((H, W), "right"), sigma_y)
        if mask_kind == "random":
            return Mask(random_pixel_mask((H, W), missing, mask_seed), sigma_y)
        raise ValueError(f"unknown mask kind {mask_kind!r}; allowed: {', '.join(MASK_KINDS)}")
    if task == "superres":
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
            raise ValueError(f"scale must be an integer >= 2, got {scale!r}")
        if H % scale or W % scale:
            ok = [f for f in (2, 3, 4, 7, 8) if H % f == 0 and W % f == 0]
            raise ValueError(f"the model's {W}x{H} images do not divide by scale {scale}; scales that do: "
                             f"{', '.join(map(str, ok)) or 'none'}")
        return Downsample(scale, sigma_y)
    if task == "mri":
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown k-space sampling {sampling!r}; allowed: {', '.join(SAMPLINGS)}")
        if not acceleration > 1:
            raise ValueError(f"acceleration must be > 1 (1 is a fully sampled k-space), got {acceleration}")
        return FourierSubsample.from_acceleration((H, W), acceleration, sampling, seed=mask_seed, sigma_y=sigma_y)
    raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")


def task_baselines(task: str, operator: Operator, y: torch.Tensor, tv_lambda: float | None = None,
                   tv_iters: int = 300) -> dict[str, torch.Tensor]:
    """The classical reconstructions of a task, clipped to [-1, 1], by name (see `baselines`)."""
    if task == "inpaint":
        return {"harmonic_fill": harmonic_fill(operator, y).clamp(-1, 1)}
    if task == "superres":
        return {"bicubic": bicubic(operator, y).clamp(-1, 1)}
    if task == "mri":
        if tv_lambda is None:
            raise ValueError("the MRI baselines need tv_lambda (tune it with `tune_tv_for_model` or "
                             "`inverse.tune_tv_lambda` on training images)")
        return {"zero_filled": zero_filled(operator, y).clamp(-1, 1),
                "tv": tv_reconstruct(operator, y, tv_lambda, tv_iters)}
    raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")


def tune_tv_for_model(model, operator: Operator, n: int = TV_TUNE_IMAGES, seed: int = 0,
                      iters: int = 300) -> tuple[float, str]:
    """The TV weight for `operator`, tuned (`tune_tv_lambda`) on n images of the model's own training data (never
    the image to reconstruct), measured with the operator's noise. Returns (lambda, a note saying on what)."""
    from ..data import load_data

    spec = model.info["train"]["data"]
    ds = load_data(spec, image_size=model.info["train"].get("image_size"), channels=model.shape[0])
    if tuple(ds.x.shape[1:]) != tuple(model.shape):
        raise ValueError(f"the training data {spec!r} now loads as {tuple(ds.x.shape[1:])}, not the model's "
                         f"{tuple(model.shape)}: pass tv_lambda (--tv-lambda)")
    pick = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
    lam, _ = tune_tv_lambda(operator, ds.x[torch.from_numpy(pick)], iters=iters,
                            generator=torch.Generator().manual_seed(seed))
    return lam, f"tuned by PSNR on {len(pick)} training images of {spec!r}"


# ---------------------------------------------------------------------------------------------------------------------
# The whole task


def _scores(x: torch.Tensor, truth: torch.Tensor) -> dict:
    p = psnr(x, truth)
    s = ssim(x, truth) if min(truth.shape[2:]) >= SSIM_MIN_SIDE else None
    return {"psnr": p, "ssim": s}


def _mean(v) -> float | None:
    if v is None:
        return None
    v = v[torch.isfinite(v)]
    return float(v.mean()) if len(v) else math.inf


def measurement_picture(task: str, operator: Operator, y: torch.Tensor) -> torch.Tensor:
    """What y looks like, in [-1, 1]: inpaint y itself (missing pixels are 0, mid-grey), superres the
    low-resolution image, mri log(1 + |k|) of the centred k-space per image and channel, scaled to its maximum
    (unmeasured k black)."""
    if task == "mri":
        k = torch.fft.fftshift(y, dim=(-2, -1)).abs()
        v = torch.log1p(k / k.flatten(2).amax(-1).clamp(min=1e-12)[..., None, None] * 1000)  # ~3 decades visible
        return 2 * v / v.flatten(2).amax(-1).clamp(min=1e-12)[..., None, None] - 1
    return y.real.clamp(-1, 1) if y.is_complex() else y.clamp(-1, 1)


def reconstruct_image(model, image: torch.Tensor, task: str, *, method: str = "ddnm", steps: int | None = None,
                      seed: int = 0, sigma_y: float = 0.0, mask: torch.Tensor | None = None, mask_kind: str = "box",
                      missing: float = 0.8, scale: int = 4, acceleration: float = 4.0, sampling: str = "cartesian",
                      mask_seed: int = 0, tv_lambda: float | None = None, tv_iters: int = 300,
                      samples: int = 1, baselines: bool = True, progress: Callable[[int, int], None] | None = None,
                      **options) -> dict:
    """Simulate the task's measurement of `image` and reconstruct it with the model as prior.

    model     a `diffusekit.model.TrainedModel` of 2-D images (anything with .denoiser, .shape, .info, .device,
              .precision works)
    image     (C, H, W) or (B, C, H, W) in [-1, 1] at model.shape: the truth; a batch is reconstructed at once,
              one posterior sample per row (repeat an image along B for several samples of it)
    task      inpaint | superres | mri, with the options of `task_operator`
    method    ddnm | repaint | dps, `steps` (default DEFAULT_STEPS[method]) and any `METHOD_OPTIONS[method]`
    seed      seeds the measurement noise, then the solver's noise (the masks use mask_seed)
    samples   K > 1: draw K posterior samples of each measurement and return their mean, the estimate of the
              posterior mean (the MMSE estimate, which PSNR rewards: one sample has twice its expected squared error
              for a Gaussian posterior, the mean of K has 1 + 1/K times it); one sample is sharper
    tv_lambda (mri) the TV weight; None tunes it on the model's training images (`tune_tv_for_model`)
    progress  progress(done, total) after each denoising step

    Returns a dict: truth, y (the measurement), operator, measurement (`measurement_picture`), reconstruction
    (clipped), raw (unclipped), baselines {name: images}, metrics {name: {psnr, ssim}} (means over the batch;
    "reconstruction" and each baseline, and "single_sample" (each image's first sample) when samples > 1; ssim
    None where the image is smaller than SSIM's window), per_image (the same as lists), samples ((B, K, C, H, W),
    when samples > 1), consistency (||A x_hat - y|| / ||y|| of the unclipped reconstruction: ~0 for noiseless DDNM and
    RePaint, about the noise for noisy y), settings, seconds, notes."""
    t_start = time.perf_counter()
    C, H, W = _check_image_model(model.shape)
    truth = torch.as_tensor(image, dtype=torch.float32)
    truth = truth.unsqueeze(0) if truth.ndim == 3 else truth
    if truth.ndim != 4 or tuple(truth.shape[1:]) != (C, H, W):
        raise ValueError(f"the image has shape {tuple(truth.shape)}; the model works on (B, {C}, {H}, {W}) "
                         "(read files with `load_image`, which resizes)")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    unknown = set(options) - set(METHOD_OPTIONS[method])
    if unknown:
        raise ValueError(f"method {method!r} has no option(s) {sorted(unknown)}; allowed: "
                         f"{sorted(METHOD_OPTIONS[method])}")
    steps = DEFAULT_STEPS[method] if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    notes: list[str] = []
    op = task_operator(task, (H, W), mask=mask, mask_kind=mask_kind, missing=missing, scale=scale,
                       acceleration=acceleration, sampling=sampling, mask_seed=mask_seed, sigma_y=sigma_y)
    g = torch.Generator().manual_seed(seed)
    y = op.measure(truth, g)

    seconds = {}
    tv_note = None
    if task == "mri" and baselines and tv_lambda is None:
        t0 = time.perf_counter()
        tv_lambda, tv_note = tune_tv_for_model(model, op, iters=tv_iters)
        seconds["tv_tuning"] = round(time.perf_counter() - t0, 3)

    device = torch.device(getattr(model, "device", "cpu"))
    sigmas = default_sigmas(model.denoiser, steps)
    y_k = y.repeat_interleave(samples, dim=0) if samples > 1 else y  # K copies of each measurement, side by side
    total = denoiser_calls(method, op, tuple(y_k.shape), sigmas, **options)
    done = [0]

    def callback(info):
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    amp = nullcontext()
    if getattr(model, "precision", "fp32") == "auto":
        from .. import fast

        amp = fast.autocast(device, 2)  # the network in bf16 where the CPU has it; the solver's arithmetic in fp32
    t0 = time.perf_counter()
    with amp:
        raw = reconstruct(model.denoiser, op, y_k.to(device), method, sigmas=sigmas, callback=callback,
                          generator=torch.Generator(device=device).manual_seed(seed), **options)
    raw = raw.float().cpu()
    seconds["solver"] = round(time.perf_counter() - t0, 3)
    draws = None
    if samples > 1:  # (B K, C, H, W) -> (B, K, C, H, W); the mean of clipped samples is in [-1, 1] too
        draws = raw.clamp(-1, 1).reshape(truth.shape[0], samples, *truth.shape[1:])
        raw = raw.reshape(draws.shape).mean(1)
    x_hat = raw.clamp(-1, 1) if draws is None else draws.mean(1)

    t0 = time.perf_counter()
    base = task_baselines(task, op, y, tv_lambda, tv_iters) if baselines else {}
    seconds["baselines"] = round(time.perf_counter() - t0, 3)

    per_image = {"reconstruction": _scores(x_hat, truth)}
    if draws is not None:
        per_image["single_sample"] = _scores(draws[:, 0], truth)
    per_image.update({name: _scores(b, truth) for name, b in base.items()})
    if min(H, W) < SSIM_MIN_SIDE:
        notes.append(f"no SSIM: its {SSIM_MIN_SIDE}-pixel window does not fit {W}x{H} images")
    residual = torch.linalg.vector_norm(op.forward(raw) - y) / torch.linalg.vector_norm(y).clamp(min=1e-12)
    settings = {"task": task, "method": method, "steps": steps, "samples": samples, "denoiser_calls": total,
                "seed": seed,
                "sigma_y": sigma_y, "method_options": {**METHOD_OPTIONS[method], **options},
                "operator": f"{type(op).__name__}({op.describe()})", "images": truth.shape[0]}
    if task == "inpaint":
        settings.update(mask="file" if mask is not None else mask_kind,
                        missing_fraction=round(op.missing_fraction, 4))
        if mask is None and mask_kind == "random":
            settings.update(missing=missing, mask_seed=mask_seed)
    elif task == "superres":
        settings.update(scale=scale)
    else:
        settings.update(acceleration=acceleration, measured_acceleration=round(op.acceleration, 3),
                        sampling=sampling, mask_seed=mask_seed)
        if baselines:
            settings.update(tv_lambda=tv_lambda, tv_lambda_source=tv_note or "given", tv_iters=tv_iters)
    seconds["total"] = round(time.perf_counter() - t_start, 3)
    return {
        "truth": truth, "y": y, "operator": op, "measurement": measurement_picture(task, op, y),
        "reconstruction": x_hat, "raw": raw, "baselines": base,
        "metrics": {k: {"psnr": _mean(v["psnr"]), "ssim": _mean(v["ssim"])} for k, v in per_image.items()},
        "per_image": {k: {m: None if t is None else [float(a) for a in t] for m, t in v.items()}
                      for k, v in per_image.items()},
        "consistency": float(residual), "settings": settings, "seconds": seconds, "notes": notes,
        **({"samples": draws} if draws is not None else {}),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Pictures and files


def side_by_side(columns: list[tuple[str, torch.Tensor]], path=None, captions: dict[str, list[str]] | None = None,
                 min_cell: int = 96, pad: int = 4) -> Image.Image:
    """Panels in columns with a title above each and an optional caption line under each cell (e.g. PSNR), one row
    per image: columns = [(title, images (B, C, H, W) in [-1, 1]), ...], all of one size; captions = {title:
    [one string per row]}. Small images are enlarged (nearest neighbour) to at least min_cell pixels wide.
    Returns the RGB picture and saves it when `path` is given."""
    from ..data.dataset import to_uint8
    from ..viz.draw import caption_font, draw_text, text_width

    if not columns:
        raise ValueError("side_by_side needs at least one column")
    ims = []
    for title, x in columns:
        x = torch.as_tensor(x)
        x = x.unsqueeze(0) if x.ndim == 3 else x
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"side_by_side: column {title!r} must be (B, C, H, W) with C = 1 or 3, got "
                             f"{tuple(x.shape)}")
        ims.append(to_uint8(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x))  # (B, H, W, 3)
    shapes = {a.shape for a in ims}
    if len(shapes) != 1:
        raise ValueError(f"side_by_side: every column must have the same (B, C, H, W) shape, got {sorted(shapes)}")
    b, h, w, _ = ims[0].shape
    font = caption_font()
    captions = captions or {}
    texts = [t for t, _ in columns] + [c for cs in captions.values() for c in cs]
    widest = max(text_width(font, t) for t in texts)
    s = max(1, math.ceil(max(min_cell, widest + 4) / w))
    cw, ch = w * s + pad, h * s + pad
    line = 14  # px per text line (10 px font + margins)
    row_h = ch + (line if captions else 0)
    canvas = Image.new("RGB", (len(columns) * cw + pad, line + b * row_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, ((title, _), a) in enumerate(zip(columns, ims)):
        x0 = pad + j * cw
        draw_text(draw, (x0 + w * s / 2, line / 2 + 1), title, font, 3, anchor="mm")
        for i in range(b):
            y0 = line + i * row_h
            canvas.paste(Image.fromarray(a[i].repeat(s, 0).repeat(s, 1), "RGB"), (x0, y0))
            cap = captions.get(title)
            if cap:
                draw_text(draw, (x0 + w * s / 2, y0 + h * s + line / 2 + 1), cap[i], font, 3, anchor="mm")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        canvas.save(path)
    return canvas


def _score_caption(per_image: dict, name: str, i: int) -> str:
    p = per_image[name]["psnr"][i]
    s = per_image[name]["ssim"]
    return f"{p:.1f} dB" + ("" if s is None else f", SSIM {s[i]:.2f}")


def _save_png(x: torch.Tensor, path: Path) -> Path:
    from ..viz.grids import save_grid

    # one image: its own pixels at its own size (pad 0, no enlarging); several: a grid
    return save_grid(x, path, nrow=None, pad=0 if x.shape[0] == 1 else 2, upscale=1)


def save_grid_rows(draws: torch.Tensor, path: Path) -> Path:
    """(B, K, C, H, W) -> a grid of B rows of K images."""
    from ..viz.grids import save_grid

    return save_grid(draws.flatten(0, 1), path, nrow=draws.shape[1], pad=2, upscale=1)


def save_reconstruction(result: dict, out_dir, extra: dict | None = None) -> dict[str, Path]:
    """Write a `reconstruct_image` result to out_dir: measurement.png (the measured image; for MRI the log k-space
    magnitude), reconstruction.png, baseline.png (harmonic fill / bicubic / TV) and baseline-<name>.png for any
    other baseline (MRI: zero-filled), truth.png, side_by_side.png (labelled panels with PSNR/SSIM) and
    metrics.json (metrics, settings, seconds, notes, plus `extra`). With samples > 1, reconstruction.png is the
    mean of the samples and samples.png holds them all (one row per image). Returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = result["settings"]
    task, method = s["task"], s["method"]
    paths = {"measurement": _save_png(result["measurement"], out / "measurement.png"),
             "reconstruction": _save_png(result["reconstruction"], out / "reconstruction.png"),
             "truth": _save_png(result["truth"], out / "truth.png")}
    if "samples" in result:
        draws = result["samples"]
        paths["samples"] = save_grid_rows(draws, out / "samples.png")
    base = result["baselines"]
    main = MAIN_BASELINE[task]
    for name, x in base.items():
        file = "baseline.png" if name == main else f"baseline-{name.replace('_', '-')}.png"
        paths["baseline" if name == main else f"baseline-{name}"] = _save_png(x, out / file)
    shown = result["measurement"]
    if task == "superres":  # show the low-resolution image at full size, nearest neighbour
        shown = result["operator"].pinv(result["y"]).clamp(-1, 1)
    measured = {"inpaint": "measured", "superres": f"low-res (1/{s.get('scale')})", "mri": "k-space (log)"}[task]
    columns = [("truth", result["truth"]), (measured, shown)]
    columns += [(LABELS.get(n, n), x) for n, x in base.items()]
    per = result["per_image"]
    b = result["truth"].shape[0]
    captions = {LABELS.get(n, n): [_score_caption(per, n, i) for i in range(b)] for n in base}
    title = method
    if "samples" in result:  # one sample beside the mean of K
        columns.append((f"{method}, 1 sample", result["samples"][:, 0]))
        captions[f"{method}, 1 sample"] = [_score_caption(per, "single_sample", i) for i in range(b)]
        title = f"{method}, mean of {s['samples']}"
    columns.append((title, result["reconstruction"]))
    captions[title] = [_score_caption(per, "reconstruction", i) for i in range(b)]
    captions["truth"] = [""] * b
    if task == "inpaint":
        what = f"{100 * s['missing_fraction']:.0f}% missing"
    elif task == "superres":
        what = f"{result['y'].shape[-1]}x{result['y'].shape[-2]} pixels"
    else:
        what = f"{s['measured_acceleration']:.1f}x, {s['sampling']}"
    noise = f", sigma_y {s['sigma_y']:g}" if s["sigma_y"] > 0 else ""
    captions[measured] = [what + noise] * b
    paths["side_by_side"] = out / "side_by_side.png"
    side_by_side(columns, paths["side_by_side"], captions)
    record = {**(extra or {}), "task": task, "method": method, "metrics": result["metrics"],
              "consistency": result["consistency"], "settings": s, "seconds": result["seconds"],
              "notes": result["notes"], "files": {k: p.name for k, p in paths.items()}}
    if b > 1:
        record["per_image"] = result["per_image"]
    paths["metrics"] = out / "metrics.json"
    paths["metrics"].write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    return paths


def _json_default(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


__all__ = [
    "TASKS", "MASK_KINDS", "SAMPLINGS", "DEFAULT_STEPS", "load_image", "load_mask", "task_operator",
    "task_baselines", "tune_tv_for_model", "measurement_picture", "reconstruct_image", "side_by_side",
    "save_reconstruction",
]
