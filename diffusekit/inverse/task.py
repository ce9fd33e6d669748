"""One reconstruction task end to end, as `diffusekit reconstruct` runs it: an image in, a simulated measurement, the
diffusion reconstruction, the classical baselines, metrics and pictures out.

    reconstruct_image   all of it in one call, returns tensors + metrics (a dict, see its docstring)
    (and, for the callers of this module, the names it had before the task registry moved out: load_image,
    load_mask from `images`; TASKS, task_operator, MAIN_BASELINE, ... from `tasks`; side_by_side,
    save_reconstruction, LABELS from `report`)

The input image is the ground truth: the measurement y = A x + sigma_y n is simulated from it, so that the
reconstruction can be scored against it (PSNR, SSIM) next to the baselines. Everything is in [-1, 1]; the
reconstruction and the baselines are clipped to [-1, 1] before scoring (clipping can only bring an estimate closer to a
truth in [-1, 1], so it is the same favour to every method).

    from diffusekit.model import TrainedModel
    from diffusekit.inverse.task import load_image, reconstruct_image, save_reconstruction
    model = TrainedModel.load("runs/phantoms")
    x, notes = load_image("brain.png", model.data_shape)
    res = reconstruct_image(model, x, "mri", acceleration=4, method="ddnm", steps=100, seed=0)
    res["metrics"]   # {"reconstruction": {"psnr": ..., "ssim": ...}, "zero_filled": {...}, "tv": {...}}
    save_reconstruction(res, "out/")
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from typing import Callable

import torch

from .. import fast
from .latent import check_latent_method, latent_operator, pixel_consistency
from .metrics import psnr, ssim
from .operators import Operator
from .solvers import METHOD_OPTIONS, check_method, default_sigmas, denoiser_calls, reconstruct
from .tasks import get_task

# Besides what reconstruct_image uses, the names this module had before the task registry, the image reading and the
# pictures moved out (its callers import them from here):
from .images import IMAGE_SUFFIXES, check_image_model, load_image, load_mask
from .report import LABELS, save_grid_rows, save_reconstruction, side_by_side
from .tasks import (MAIN_BASELINE, MASK_KINDS, SAMPLINGS, TASKS, TV_TUNE_IMAGES, measurement_picture, task_baselines,
                    task_operator, tune_tv_for_model)

# Default ladder lengths. DDNM: 100 steps, the paper's setting (Wang et al. 2023, sec. 4). RePaint: 50 steps, each
# walked ~8 times by its resampling (jump_length 10, resample 10: 410 denoiser calls, ~4x DDNM's cost; the paper
# uses 250 steps, 10x ours, out of reach on a CPU). DPS: 100 steps (the paper uses 1000; each step also
# backpropagates through the network, ~3x a plain step); it is approximate at any length (see `solvers`).
DEFAULT_STEPS = {"ddnm": 100, "repaint": 50, "dps": 100}
SSIM_MIN_SIDE = 11  # SSIM's 11-tap Gaussian window (`metrics.ssim`) must fit the image


def _check_truth(model, image) -> torch.Tensor:
    """The true images as (B, C, H, W) float32 at the model's shape."""
    C, H, W = check_image_model(getattr(model, "data_shape", model.shape))
    truth = torch.as_tensor(image, dtype=torch.float32)
    truth = truth.unsqueeze(0) if truth.ndim == 3 else truth
    if truth.ndim != 4 or tuple(truth.shape[1:]) != (C, H, W):
        raise ValueError(f"the image has shape {tuple(truth.shape)}; the model works on (B, {C}, {H}, {W}) "
                         "(read files with `load_image`, which resizes)")
    return truth


def _check_run(method: str, options: dict, steps: int | None, samples: int) -> int:
    """Check the method, its options and the sample count; returns the number of steps."""
    check_method(method, options)
    steps = DEFAULT_STEPS[method] if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    return steps


def _solve(model, op: Operator, y: torch.Tensor, method: str, steps: int, samples: int, seed: int,
           progress: Callable[[int, int], None] | None, options: dict):
    """The solver on `samples` copies of each measurement: (raw (B, C, H, W) on the CPU, unclipped; the draws
    (B, K, C, H, W), clipped, or None for one sample; the estimate x_hat, clipped; the number of denoiser calls)."""
    device = torch.device(getattr(model, "device", "cpu"))
    sigmas = default_sigmas(model.denoiser, steps)
    y_k = y.repeat_interleave(samples, dim=0) if samples > 1 else y  # K copies of each measurement, side by side
    codec = getattr(model, "codec", None)
    solve_op = op if codec is None else latent_operator(codec, op)  # a latent run: A(decode(z)) (see `latent`)
    total = denoiser_calls(method, solve_op, tuple(y_k.shape), sigmas, **options)
    done = [0]

    def callback(info):
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    # the network in bf16 where the CPU has it; the solver's arithmetic in fp32
    amp = fast.autocast(device, 2) if getattr(model, "precision", "fp32") == "auto" else nullcontext()
    with amp:
        raw = reconstruct(model.denoiser, solve_op, y_k.to(device), method, sigmas=sigmas, callback=callback,
                          generator=torch.Generator(device=device).manual_seed(seed), **options)
    raw = raw.float().cpu()
    if codec is not None:
        raw = pixel_consistency(op, y_k, codec.decode(raw))
    if samples == 1:
        return raw, None, raw.clamp(-1, 1), total
    # (B K, C, H, W) -> (B, K, C, H, W); the mean of clipped samples is in [-1, 1] too
    draws = raw.clamp(-1, 1).reshape(y.shape[0], samples, *raw.shape[1:])
    return raw.reshape(draws.shape).mean(1), draws, draws.mean(1), total


def _scores(x: torch.Tensor, truth: torch.Tensor) -> dict:
    p = psnr(x, truth)
    s = ssim(x, truth) if min(truth.shape[2:]) >= SSIM_MIN_SIDE else None
    return {"psnr": p, "ssim": s}


def _mean(v) -> float | None:
    if v is None:
        return None
    v = v[torch.isfinite(v)]
    return float(v.mean()) if len(v) else math.inf


def _score_all(x_hat, draws, base: dict, truth: torch.Tensor) -> tuple[dict, dict]:
    """PSNR and SSIM of the reconstruction, its first sample (several samples) and each baseline: (metrics {name:
    {psnr, ssim}} the means over the batch, per_image {name: {psnr: [...], ssim: [...] or None}})."""
    per_image = {"reconstruction": _scores(x_hat, truth)}
    if draws is not None:
        per_image["single_sample"] = _scores(draws[:, 0], truth)
    per_image.update({name: _scores(b, truth) for name, b in base.items()})
    metrics = {k: {"psnr": _mean(v["psnr"]), "ssim": _mean(v["ssim"])} for k, v in per_image.items()}
    return metrics, {k: {m: None if t is None else [float(a) for a in t] for m, t in v.items()}
                     for k, v in per_image.items()}


def reconstruct_image(model, image: torch.Tensor, task: str, *, method: str = "ddnm", steps: int | None = None,
                      seed: int = 0, sigma_y: float = 0.0, mask: torch.Tensor | None = None, mask_kind: str = "box",
                      missing: float = 0.8, scale: int = 4, acceleration: float = 4.0, sampling: str = "cartesian",
                      mask_seed: int = 0, tv_lambda: float | None = None, tv_iters: int = 300,
                      samples: int = 1, baselines: bool = True, progress: Callable[[int, int], None] | None = None,
                      **options) -> dict:
    """Simulate the task's measurement of `image` and reconstruct it with the model as prior.

    model     a `diffusekit.model.TrainedModel` of 2-D images (anything with .denoiser, .shape, .info, .device,
              .precision works)
    image     (C, H, W) or (B, C, H, W) in [-1, 1] at model.data_shape: the truth; a batch is reconstructed at once,
              one posterior sample per row (repeat an image along B for several samples of it)
    task      inpaint | superres | mri (`TASKS`), with the options of `task_operator`
    method    ddnm | repaint | dps, `steps` (default DEFAULT_STEPS[method]) and any `METHOD_OPTIONS[method]`;
              a latent run (model.codec) takes dps through its decoder, then pixel-space consistency (`latent`)
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
    truth = _check_truth(model, image)
    steps = _check_run(method, options, steps, samples)
    if getattr(model, "codec", None) is not None:
        check_latent_method(method)
    spec = get_task(task)
    given = {"mask": mask, "mask_kind": mask_kind, "missing": missing, "scale": scale, "acceleration": acceleration,
             "sampling": sampling, "mask_seed": mask_seed}
    op = spec.make_operator(truth.shape[2:], sigma_y, **given)
    y = op.measure(truth, torch.Generator().manual_seed(seed))
    seconds, tv_note = {}, None
    if spec.tunes_tv and baselines and tv_lambda is None:
        t0 = time.perf_counter()
        tv_lambda, tv_note = tune_tv_for_model(model, op, iters=tv_iters)
        seconds["tv_tuning"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    raw, draws, x_hat, total = _solve(model, op, y, method, steps, samples, seed, progress, options)
    seconds["solver"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    base = spec.baselines(op, y, tv_lambda, tv_iters) if baselines else {}
    seconds["baselines"] = round(time.perf_counter() - t0, 3)
    metrics, per_image = _score_all(x_hat, draws, base, truth)
    H, W = truth.shape[2:]
    small = min(H, W) < SSIM_MIN_SIDE
    notes = [f"no SSIM: its {SSIM_MIN_SIDE}-pixel window does not fit {W}x{H} images"] if small else []
    residual = torch.linalg.vector_norm(op.forward(raw) - y) / torch.linalg.vector_norm(y).clamp(min=1e-12)
    settings = {"task": task, "method": method, "steps": steps, "samples": samples, "denoiser_calls": total,
                "seed": seed, "sigma_y": sigma_y, "method_options": {**METHOD_OPTIONS[method], **options},
                "operator": f"{type(op).__name__}({op.describe()})", "images": truth.shape[0],
                **spec.settings(op, {k: given[k] for k in spec.options})}
    if spec.tunes_tv and baselines:
        settings.update(tv_lambda=tv_lambda, tv_lambda_source=tv_note or "given", tv_iters=tv_iters)
    seconds["total"] = round(time.perf_counter() - t_start, 3)
    return {
        "truth": truth, "y": y, "operator": op, "measurement": spec.picture(y), "reconstruction": x_hat, "raw": raw,
        "baselines": base, "metrics": metrics, "per_image": per_image, "consistency": float(residual),
        "settings": settings, "seconds": seconds, "notes": notes,
        **({"samples": draws} if draws is not None else {}),
    }


__all__ = [
    "TASKS", "MASK_KINDS", "SAMPLINGS", "DEFAULT_STEPS", "MAIN_BASELINE", "LABELS", "load_image", "load_mask",
    "task_operator", "task_baselines", "tune_tv_for_model", "measurement_picture", "reconstruct_image",
    "side_by_side", "save_reconstruction",
]
