"""Posterior sampling for inverse problems with an unconditional denoiser: DDNM, RePaint, DPS, and a data-consistency
wrapper that turns any of our samplers into a DDNM-like solver.

All of it works in the sigma view of `diffusekit.schedules` (x = x0 + sigma eps) with a denoiser D(x, sigma, cond)
-> x0_hat, and a measurement y = A(x0) + sigma_y n from `operators`. Each solver walks a sigma ladder (high to low,
ending in 0) with the same ancestral step: DDIM's (Song et al. 2021, eq. 12) written in the sigma view,

    x_next = x0_hat' + sqrt(sigma_next^2 - std^2) eps_hat + std z,   eps_hat = (x - x0_hat) / sigma,
    std    = eta sigma_next sqrt(1 - sigma_next^2 / sigma^2),

where eta = 1 is DDPM's posterior q(x_next | x, x0_hat) (Ho et al. 2020, eq. 7; the VP and sigma views give the
same posterior) and eta = 0 the deterministic DDIM. The solvers differ in how y enters:

    ddnm     x0_hat' = x0_hat + A^+ (y - A x0_hat): the null-space projection of Wang et al. 2023 (eq. 13,
             Algorithm 1), with the step's eps_hat from the unprojected x0_hat. Noisy y: by default y is used
             as the row space's state at the noise level sigma_r it carries (see `sample_ddnm`); the paper's
             DDNM+ scaling (sec. 3.3, eq. 17-19) is the option noisy='ddnm+'.
    repaint  an unconditional step, then the row-space part of x_next replaced by y noised to sigma_next
             (Lugmayr et al. 2022, eq. 8-9, Algorithm 1), with resampling: jumps back up the ladder by
             `jump_length` steps, `resample` times, so the two parts harmonize. For noisy y the known part is
             A^+ y + sqrt(sigma_next^2 - sigma_r^2) noise while sigma_next >= sigma_r (the noise A^+ y carries),
             the unconditional chain below it: y is itself a sample of the row space at level sigma_r.
    dps      x_next -= zeta grad_x ||y - A(D(x, sigma))||, the gradient through the denoiser (Chung et al. 2023,
             Algorithm 1): works for noisy and non-linear A.

Exactness, measured on Gaussian data against the closed-form posterior (tests/test_inverse.py):
    ddnm     matched the posterior's mean and covariance within sampling error (N = 2000-4000, 500-1000 steps)
             on every problem tried: masks and dense operators, correlated priors, noiseless and noisy y (the
             default 'anchor' noise handling), eta = 1, and eta = 0 for noiseless y. We have no proof; it hinges
             on taking the step's eps_hat from the network's own x0_hat, as the official code does. Noisy y
             with eta = 0, or noisy='ddnm+', gives too little spread along the row space.
    repaint  converges to the posterior with resampling (it is a Gibbs-like sampler of the unknown part at every
             level); without resampling it is far off (covariance errors of 50-60%).
    dps      approximate at any step count (covariance errors 7-40%, means 0.1-0.3 posterior stds off); zeta
             trades data fit against it.
    `consistent_denoiser` with any sampler: A x = y exactly (noiseless), but biased as a posterior sampler
             (mean errors ~0.4 posterior stds, covariance errors 50-100%): the sampler takes eps_hat from the
             projected x0_hat, so each step applies the correction only partly.
None is exact for non-Gaussian priors: on a two-component mixture with a noiseless mask, the posterior weight of
the favoured mode (0.92) came out 0.85 (ddnm), 0.76 (repaint, 250 steps x 10 resamplings) and 0.95 (dps).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..samplers import DEFAULT_SPACING, get_sampler
from ..samplers.base import check_sigmas
from .operators import Operator

METHODS = ("ddnm", "repaint", "dps")
NOISY_MODES = ("anchor", "ddnm+")

# Defaults: eta = 1 (DDPM steps) in all three, as the papers' Algorithm 1s. RePaint: jump_length = 10,
# resample = 10 (Lugmayr et al. sec. 5, with 250 steps). DDNM: no time travel by default (the paper's Algorithm 1;
# its sec. 3.4 "time-travel" is the same jump schedule). DPS: zeta = 1 (the official configs use 0.3-1.0).
METHOD_OPTIONS: dict[str, dict] = {
    "ddnm": {"eta": 1.0, "jump_length": 1, "resample": 1, "noisy": "anchor"},
    "repaint": {"eta": 1.0, "jump_length": 10, "resample": 10},
    "dps": {"eta": 1.0, "zeta": 1.0},
}


# ---------------------------------------------------------------------------------------------------------------------
# Shared pieces


def jump_schedule(n: int, jump_length: int = 10, resample: int = 10, last: int | None = None) -> list[int]:
    """The ladder indices RePaint visits (Lugmayr et al. 2022, sec. 4.2; the official `get_schedule_jump`).

    Index i is the state at sigmas[i]; 0 is the start, n (= len(sigmas) - 1) the clean sample. A step i -> i + 1
    is a denoising step, i + 1 -> i re-noises one level. After reaching each state whose distance from `last`
    (default n - 1, the last noisy state, as the paper) is a multiple of jump_length, the walk goes back up
    jump_length levels, resample - 1 times. resample = 1 is the plain ladder 0, 1, ..., n. No jumps start past
    `last`: the solvers stop jumping below sigma_r (see `_jump_path`) and resample right at it."""
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


def _jump_path(s: list[float], sig_r: float, jump_length: int, resample: int) -> list[int]:
    """RePaint's walk on the ladder s, with jumps only from states at or above sigma_r. Below sigma_r, y is spent:
    the state there is conditioned on y through the level sigma_r above it, and plain forward noise would ignore
    that anchor (the right move would be a Brownian bridge to y), so repeated jumps there drift away from p(x | y);
    the plain reverse chain is already exact given the state at sigma_r."""
    last = max((i for i, v in enumerate(s[:-1]) if v >= sig_r), default=-1)  # -1: y noisier than sigmas[0]
    return jump_schedule(len(s) - 1, jump_length, resample, last)


def _step_coefficients(s: list[float], eta: float) -> list[tuple[float, float]]:
    """(keep, std) for each step sigma -> sigma_next: x_next = x0_hat' + keep (x - x0_hat) + std z."""
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must be in [0, 1] (0: deterministic DDIM, 1: DDPM's posterior variance), got {eta}")
    out = []
    for sig, sig_next in zip(s[:-1], s[1:]):
        std = eta * sig_next * math.sqrt(max(1 - (sig_next / sig) ** 2, 0.0))
        out.append((math.sqrt(max(sig_next**2 - std**2, 0.0)) / sig, std))
    return out


def _randn(x, generator):
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _notify(callback, step, i, x, sigma, sigma_next, x0_hat):
    if callback is not None:
        callback({"i": i, "step": step, "x": x, "sigma": sigma, "sigma_next": sigma_next, "x0_hat": x0_hat})


def _walk(s: list[float], path: list[int], x, generator, denoise_step: Callable):
    """Follow a jump schedule: denoise_step(i, x, step) for i -> i + 1, fresh noise for i + 1 -> i."""
    step = 0
    for a, b in zip(path[:-1], path[1:]):
        if b == a + 1:
            x = denoise_step(a, x, step)
            step += 1
        else:  # back up one level: x_sigma = x_sigma_next + sqrt(sigma^2 - sigma_next^2) z (sigma view is Markov)
            x = x + _randn(x, generator) * math.sqrt(s[b] ** 2 - s[a] ** 2)
    return x


def _row_noise_std(operator: Operator, x_shape, method: str) -> float:
    """sigma_r: the noise level of A^+ y along the row space, or a clear error where it is not one number."""
    sig_r = operator.pinv_noise_std(x_shape)
    if sig_r is None:
        raise ValueError(
            f"method {method!r} handles noisy y only for operators whose singular values are all equal (masks, "
            f"downsampling, Fourier subsampling); {operator.name} with sigma_y={operator.sigma_y:g} is not one: "
            f"use method='dps', or sigma_y=0"
        )
    return float(sig_r)


def _insert_sigma(s: list[float], sig: float) -> list[float]:
    """The ladder with one extra level (kept strictly decreasing)."""
    if sig <= 0 or sig >= s[0] or sig in s:
        return s
    return sorted(s + [sig], reverse=True)


# ---------------------------------------------------------------------------------------------------------------------
# The solvers, under one signature: solver(denoiser, operator, y, x, sigmas, *, cond, generator, callback, **options)


def sample_ddnm(denoiser, operator: Operator, y, x, sigmas, *, cond=None, generator=None, callback=None,
                eta: float = 1.0, jump_length: int = 1, resample: int = 1, noisy: str = "anchor"):
    """DDNM (Wang et al. 2023, Algorithm 1; time travel (sec. 3.4) with resample > 1).

    For noisy y (A^+ y carries noise sigma_r along the row space), `noisy` picks how:
      anchor  (default) y is taken as the row space's state at level sigma_r, which is exactly what it is in law:
              above sigma_r the full correction, with the step's fresh noise cut along the row space to
              sqrt(sigma_next^2 - sigma_r^2) so the total stays sigma_next (eq. 17-19 with lambda = 1); a ladder
              level at sigma_r where the row space is A^+ y; below it plain unconditional steps. Targets p(x | y).
      ddnm+   the paper's eq. 17-19: lambda = min(1, sigma_next / sigma_r) of the correction at every step. Below
              sigma_r it puts y's own noise in place of fresh noise, the same for every sample, so the samples
              have (almost) no spread along the row space: a point estimate there, not a posterior sample."""
    if noisy not in NOISY_MODES:
        raise ValueError(f"unknown noisy mode {noisy!r}; allowed: {', '.join(NOISY_MODES)}")
    sig_r = _row_noise_std(operator, x.shape, "ddnm")
    s = check_sigmas(sigmas)
    if noisy == "anchor":
        s = _insert_sigma(s, sig_r)
    coefs = _step_coefficients(s, eta)
    A, Ap = operator.forward, operator.pinv
    # Per step: the share lambda of the correction A^+ (y - A x0_hat), and how much of the step's noise to cut along
    # the row space (1 - gamma / sigma_next) so that, with the lambda sigma_r that A^+ y brings, the total noise
    # there stays sigma_next: gamma = sqrt(sigma_next^2 - (lambda sigma_r)^2)   (sigma-view form of eq. 17-19)
    plan = []
    for sig_next in s[1:]:
        if sig_r == 0:
            lam = 1.0
        elif noisy == "anchor":
            lam = 1.0 if sig_next >= sig_r else 0.0
        else:
            lam = min(1.0, sig_next / sig_r)
        gamma = math.sqrt(max(sig_next**2 - (lam * sig_r) ** 2, 0.0))
        plan.append((lam, 1.0 - gamma / sig_next if sig_next > 0 else 0.0))

    def step(i, x, n):
        keep, std = coefs[i]
        lam, cut = plan[i]
        x0_hat = denoiser(x, s[i], cond)
        x0_c = x0_hat + lam * Ap(y - A(x0_hat)) if lam > 0 else x0_hat  # eq. 13: A^+ y + (I - A^+ A) x0_hat
        _notify(callback, n, i, x, s[i], s[i + 1], x0_c)
        noise = (x - x0_hat) * keep
        if std > 0:
            noise = noise + _randn(x, generator) * std
        if cut > 0:
            noise = noise - cut * operator.project(noise)
        return x0_c + noise

    path = _jump_path(s, sig_r if noisy == "anchor" else 0.0, jump_length, resample)
    return _walk(s, path, x, generator, step)


def sample_repaint(denoiser, operator: Operator, y, x, sigmas, *, cond=None, generator=None, callback=None,
                   eta: float = 1.0, jump_length: int = 10, resample: int = 10):
    """RePaint (Lugmayr et al. 2022, Algorithm 1), for any operator whose singular values are equal (masks as in the
    paper; also downsampling and Fourier subsampling): the row-space part of each step comes from y."""
    sig_r = _row_noise_std(operator, x.shape, "repaint")
    s = _insert_sigma(check_sigmas(sigmas), sig_r)  # a level at exactly sigma_r, where y is the known part as is
    coefs = _step_coefficients(s, eta)
    A, Ap = operator.forward, operator.pinv
    known_std = [math.sqrt(sig_next**2 - sig_r**2) if sig_next >= sig_r else None for sig_next in s[1:]]

    def step(i, x, n):
        keep, std = coefs[i]
        x0_hat = denoiser(x, s[i], cond)
        _notify(callback, n, i, x, s[i], s[i + 1], x0_hat)
        x_next = x0_hat + (x - x0_hat) * keep  # the unknown part: an unconditional step (eq. 9)
        if std > 0:
            x_next = x_next + _randn(x, generator) * std
        c = known_std[i]
        if c is not None:  # the known part: y noised to sigma_next (eq. 8), swapped in along the row space
            x_next = x_next + Ap(y - A(x_next))
            if c > 0:
                x_next = x_next + c * operator.project(_randn(x, generator))
        return x_next

    return _walk(s, _jump_path(s, sig_r, jump_length, resample), x, generator, step)


def sample_dps(denoiser, operator: Operator, y, x, sigmas, *, cond=None, generator=None, callback=None,
               eta: float = 1.0, zeta: float = 1.0):
    """DPS (Chung et al. 2023, Algorithm 1 for Gaussian noise): after each ancestral step,
    x_next -= zeta' grad_x ||y - A(D(x, sigma))||, with per-sample norms as the official code.

    zeta is the paper's step in the VP coordinates x_t = x / sqrt(1 + sigma^2) it was tuned in; in the sigma view
    that is zeta' = zeta sqrt((1 + sigma^2)(1 + sigma_next^2)), so the paper's values carry over."""
    s = check_sigmas(sigmas)
    coefs = _step_coefficients(s, eta)
    scales = [zeta * math.sqrt((1 + a**2) * (1 + b**2)) for a, b in zip(s[:-1], s[1:])]

    def step(i, x, n):
        keep, std = coefs[i]
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0_hat = denoiser(x_in, s[i], cond)
            r = (y - operator.forward(x0_hat)).reshape(x.shape[0], -1)
            norm = torch.linalg.vector_norm(r, dim=1).sum()  # the sum of per-sample ||r||: per-sample gradients
            (grad,) = torch.autograd.grad(norm, x_in)
        x0_hat = x0_hat.detach()
        _notify(callback, n, i, x, s[i], s[i + 1], x0_hat)
        x_next = x0_hat + (x - x0_hat) * keep - scales[i] * grad
        if std > 0:
            x_next = x_next + _randn(x, generator) * std
        return x_next

    return _walk(s, list(range(len(s))), x, generator, step)


SOLVERS: dict[str, Callable] = {"ddnm": sample_ddnm, "repaint": sample_repaint, "dps": sample_dps}


# ---------------------------------------------------------------------------------------------------------------------
# A data-consistency step for every sampler


class ConsistentDenoiser:
    """D'(x, sigma, cond) = x0_hat + lam(sigma) A^+ (y - A x0_hat), x0_hat = D(x, sigma, cond).

    With noiseless y, lam = 1: x0_hat is projected onto {A x = y} (DDNM's eq. 13), and since every sampler in
    `diffusekit.samplers` returns the last x0_hat, its output satisfies A x = y exactly. With noisy y,
    lam = sigma^2 / (sigma^2 + sigma_r^2): the x0_hat (error ~ sigma) and A^+ y (error sigma_r) combined by their
    inverse variances along the row space, an approximation. It keeps the wrapped denoiser's `schedule` and
    `prior_std`, so `diffusekit.sample(consistent_denoiser(den, op, y), y_shape, sampler="dpmpp-2m")` works.

    Consistent, fast, deterministic with the ODE samplers, but not a posterior sampler: a sampler takes its eps_hat
    from the projected x0_hat, so each step applies only part of the correction (an Euler step, 1 - sigma_next /
    sigma of it) and the null space is steered by less than the data say. On the Gaussian oracle its samples are off
    by ~0.4 posterior stds in the mean; use `reconstruct(method="ddnm", eta=0)` for a deterministic solver that is
    not."""

    def __init__(self, denoiser, operator: Operator, y: torch.Tensor):
        _check_linear(operator, "consistent_denoiser")
        x_shape = operator.check_y(y)
        self.sigma_r = _row_noise_std(operator, x_shape, "consistent_denoiser")
        self.denoiser, self.operator, self.y = denoiser, operator, y
        self.x_shape = x_shape

    def __call__(self, x, sigma, cond=None):
        x0_hat = self.denoiser(x, sigma, cond)
        lam = 1.0 if self.sigma_r == 0 else float(sigma) ** 2 / (float(sigma) ** 2 + self.sigma_r**2)
        return x0_hat + lam * self.operator.pinv(self.y - self.operator.forward(x0_hat))

    @property
    def schedule(self):
        return self.denoiser.schedule

    def prior_std(self, sigma_max: float) -> float:
        return _prior_std(self.denoiser, sigma_max)


def consistent_denoiser(denoiser, operator: Operator, y: torch.Tensor) -> ConsistentDenoiser:
    """Wrap a denoiser so that every sampler becomes a DDNM-like solver (see `ConsistentDenoiser`)."""
    return ConsistentDenoiser(denoiser, operator, y)


# ---------------------------------------------------------------------------------------------------------------------
# One entry point


def _check_linear(operator, method):
    if not isinstance(operator, Operator):
        raise TypeError(f"operator must be a diffusekit.inverse Operator, got {type(operator).__name__}")
    if not operator.linear:
        raise ValueError(f"method {method!r} needs a linear operator; {operator.name} is not linear: use "
                         f"method='dps'")
    if not operator.has_pinv:
        raise ValueError(f"method {method!r} needs the operator's pseudo-inverse; {operator.name} "
                         f"({operator.describe()}) has none: use method='dps'")


def _prior_std(denoiser, sigma_max: float) -> float:
    prior = getattr(denoiser, "prior_std", None)
    return prior(sigma_max) if callable(prior) else sigma_max


def default_sigmas(denoiser, steps: int, spacing: str | None = None, discrete_spacing: str = "leading"):
    """The ladder for a denoiser that carries a schedule: `discrete_spacing` for discrete (DDPM-family) schedules
    (`leading`, as the three papers sample), Karras spacing for continuous ones."""
    schedule = getattr(denoiser, "schedule", None)
    if schedule is None:
        raise ValueError("this denoiser has no schedule: pass sigmas= (1-D, high to low, ending with 0)")
    if spacing is None:
        spacing = discrete_spacing if hasattr(schedule, "timesteps") else "karras"
    return schedule.sigmas(steps, spacing)


def reconstruct(denoiser, operator: Operator, y: torch.Tensor, method: str = "ddnm", *, steps: int = 100,
                sigmas: torch.Tensor | None = None, spacing: str | None = None,
                generator: torch.Generator | None = None, callback: Callable | None = None, cond=None,
                x: torch.Tensor | None = None, **options) -> torch.Tensor:
    """Samples x of p(x | y) for y = A(x) + sigma_y n, with an unconditional denoiser D(x, sigma, cond).

    method    ddnm | repaint | dps (see the module docstring; `METHOD_OPTIONS[method]` lists the options)
    steps     ladder length, from the denoiser's schedule (`spacing` as for `default_sigmas`), unless `sigmas` given
    x         the starting noise at sigmas[0] (default: N(0, prior_std^2) from `generator`)
    callback  called at every denoising step with i (ladder index), step (count), x, sigma, sigma_next, x0_hat
    Returns x of the shape `operator.input_shape(y.shape)` in y's real dtype; one sample per row of y (repeat y
    along the batch for several samples of one measurement)."""
    if method not in SOLVERS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    allowed = METHOD_OPTIONS[method]
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"method {method!r} has no option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    if not isinstance(operator, Operator):
        raise TypeError(f"operator must be a diffusekit.inverse Operator, got {type(operator).__name__}")
    if method != "dps":
        _check_linear(operator, method)
    x_shape = operator.check_y(y)
    if sigmas is None:
        sigmas = default_sigmas(denoiser, steps, spacing)
    dtype = y.real.dtype if y.is_complex() else y.dtype
    if x is None:
        x = torch.randn(x_shape, generator=generator, dtype=dtype, device=y.device) * _prior_std(
            denoiser, float(sigmas[0]))
    elif tuple(x.shape) != tuple(x_shape):
        raise ValueError(f"the starting noise has shape {tuple(x.shape)}; y measures x of shape {tuple(x_shape)}")
    solver = SOLVERS[method]
    if method == "dps":
        return solver(denoiser, operator, y, x, sigmas, cond=cond, generator=generator, callback=callback,
                      **{**allowed, **options})
    with torch.no_grad():
        return solver(denoiser, operator, y, x, sigmas, cond=cond, generator=generator, callback=callback,
                      **{**allowed, **options})


def denoiser_calls(method: str, operator: Operator, x_shape, sigmas, **options) -> int:
    """How many denoising steps (denoiser evaluations, one `callback` each) `reconstruct` makes on this ladder:
    the length of a progress bar. RePaint's resampling and DDNM's time travel walk parts of the ladder several
    times, and the noisy-y solvers add a level at sigma_r, so it is not len(sigmas) - 1. Mirrors each solver's
    ladder and walk (tested against the callbacks)."""
    if method not in SOLVERS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    opts = {**METHOD_OPTIONS[method], **options}
    s = check_sigmas(sigmas)
    if method == "dps":
        return len(s) - 1
    sig_r = _row_noise_std(operator, x_shape, method)
    if method == "ddnm" and opts["noisy"] != "anchor":
        path = _jump_path(s, 0.0, opts["jump_length"], opts["resample"])
    else:  # ddnm's default 'anchor' and repaint: a level at sigma_r, no jumps below it
        s = _insert_sigma(s, sig_r)
        path = _jump_path(s, sig_r, opts["jump_length"], opts["resample"])
    return sum(b == a + 1 for a, b in zip(path[:-1], path[1:]))


def reconstruct_with_sampler(denoiser, operator: Operator, y: torch.Tensor, sampler: str = "dpmpp-2m", *,
                             steps: int = 20, sigmas=None, spacing: str | None = None, generator=None,
                             callback=None, cond=None, x=None, **options) -> torch.Tensor:
    """Any sampler of `diffusekit.samplers` on `consistent_denoiser(denoiser, operator, y)`: a fast, DDNM-like
    solver (deterministic with the ODE samplers); A x = y exactly for noiseless y."""
    wrapped = consistent_denoiser(denoiser, operator, y)
    if sigmas is None:
        sigmas = default_sigmas(denoiser, steps, spacing, DEFAULT_SPACING.get(sampler, "karras"))
    dtype = y.real.dtype if y.is_complex() else y.dtype
    if x is None:
        x = torch.randn(wrapped.x_shape, generator=generator, dtype=dtype, device=y.device) * _prior_std(
            denoiser, float(sigmas[0]))
    with torch.no_grad():
        return get_sampler(sampler)(wrapped, x, sigmas, cond=cond, generator=generator, callback=callback, **options)


__all__ = [
    "METHODS", "METHOD_OPTIONS", "SOLVERS", "ConsistentDenoiser", "consistent_denoiser", "default_sigmas",
    "denoiser_calls", "jump_schedule", "reconstruct", "reconstruct_with_sampler", "sample_ddnm", "sample_dps",
    "sample_repaint",
]
