"""What the solvers share: the walk on the sigma ladder (RePaint's jump schedule, DDIM's step coefficients), the
noise level sigma_r that A^+ y carries, the checks of an operator, the default ladder."""

from __future__ import annotations

import math
from typing import Callable

from ...samplers.base import randn_like
from ..operators import Operator


def jump_schedule(n: int, jump_length: int = 10, resample: int = 10, last: int | None = None) -> list[int]:
    """The ladder indices RePaint visits (Lugmayr et al. 2022, sec. 4.2; the official `get_schedule_jump`).

    Index i is the state at sigmas[i]; 0 is the start, n (= len(sigmas) - 1) the clean sample. A step i -> i + 1
    is a denoising step, i + 1 -> i re-noises one level. After reaching each state whose distance from `last`
    (default n - 1, the last noisy state, as the paper) is a multiple of jump_length, the walk goes back up
    jump_length levels, resample - 1 times. resample = 1 is the plain ladder 0, 1, ..., n. No jumps start past
    `last`: the solvers stop jumping below sigma_r (see `jump_path`) and resample right at it."""
    if jump_length < 1 or resample < 1:
        raise ValueError(f"jump_length and resample must be >= 1, got {jump_length}, {resample}")
    last = n - 1 if last is None else last
    # jumps start from `last`, last - jump_length, ... (states i >= jump_length, so a jump stays on the ladder)
    remaining = {i: resample - 1 for i in range(last, jump_length - 1, -jump_length)}
    path, i = [0], 0
    while i < n:
        i += 1
        path.append(i)
        if remaining.get(i, 0) > 0:
            remaining[i] -= 1
            for _ in range(jump_length):
                i -= 1
                path.append(i)
    return path


def jump_path(s: list[float], sig_r: float, jump_length: int, resample: int) -> list[int]:
    """RePaint's walk on the ladder s, with jumps only from states at or above sigma_r. Below sigma_r, y is spent:
    the state there is conditioned on y through the level sigma_r above it, and plain forward noise would ignore
    that anchor (the right move would be a Brownian bridge to y), so repeated jumps there drift away from p(x | y);
    the plain reverse chain is already exact given the state at sigma_r."""
    last = max((i for i, v in enumerate(s[:-1]) if v >= sig_r), default=-1)  # -1: y noisier than sigmas[0]
    return jump_schedule(len(s) - 1, jump_length, resample, last)


def step_coefficients(s: list[float], eta: float) -> list[tuple[float, float]]:
    """(keep, std) for each step sigma -> sigma_next: x_next = x0_hat' + keep (x - x0_hat) + std z."""
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: DDPM's posterior variance), got {eta}")
    out = []
    for sig, sig_next in zip(s[:-1], s[1:]):
        std = eta * sig_next * math.sqrt(max(1 - (sig_next / sig) ** 2, 0.0))
        out.append((math.sqrt(max(sig_next**2 - std**2, 0.0)) / sig, std))
    return out



def walk(s: list[float], path: list[int], x, generator, denoise_step: Callable):
    """Follow a jump schedule: denoise_step(i, x, step) for i -> i + 1, fresh noise for i + 1 -> i."""
    step = 0
    for a, b in zip(path[:-1], path[1:]):
        if b == a + 1:
            x = denoise_step(a, x, step)
            step += 1
        else:  # back up one level: x_sigma = x_sigma_next + sqrt(sigma^2 - sigma_next^2) z (sigma view is Markov)
            x = x + randn_like(x, generator) * math.sqrt(s[b] ** 2 - s[a] ** 2)
    return x


def row_noise_std(operator: Operator, x_shape, method: str) -> float:
    """sigma_r: the noise level of A^+ y along the row space, or a clear error where it is not one number."""
    sig_r = operator.pinv_noise_std(x_shape)
    if sig_r is None:
        raise ValueError(
            f"method {method!r} handles noisy y only for operators whose singular values are all equal (masks, "
            f"downsampling, Fourier subsampling); {operator.name} with sigma_y={operator.sigma_y:g} is not one: "
            f"use method='dps', or sigma_y=0"
        )
    return float(sig_r)


def insert_sigma(s: list[float], sig: float) -> list[float]:
    """The ladder with one extra level (kept strictly decreasing)."""
    if sig <= 0 or sig >= s[0] or sig in s:
        return s
    return sorted(s + [sig], reverse=True)


def check_linear(operator, method):
    if not isinstance(operator, Operator):
        raise TypeError(f"operator must be a diffusekit.inverse Operator, got {type(operator).__name__}")
    if not operator.linear:
        raise ValueError(f"method {method!r} needs a linear operator; {operator.name} is not linear: use "
                         f"method='dps'")
    if not operator.has_pinv:
        raise ValueError(f"method {method!r} needs the operator's pseudo-inverse; {operator.name} "
                         f"({operator.describe()}) has none: use method='dps'")


def default_sigmas(denoiser, steps: int, spacing: str | None = None, discrete_spacing: str = "leading"):
    """The ladder for a denoiser that carries a schedule: `discrete_spacing` for discrete (DDPM-family) schedules
    (`leading`, as the three papers sample), Karras spacing for continuous ones."""
    schedule = getattr(denoiser, "schedule", None)
    if schedule is None:
        raise ValueError("this denoiser has no schedule: pass sigmas= (1-D, high to low, ending with 0)")
    if spacing is None:
        spacing = discrete_spacing if hasattr(schedule, "timesteps") else "karras"
    return schedule.sigmas(steps, spacing)
