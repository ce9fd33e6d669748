"""What every sampler shares: the signature, the noise draws (the starting noise too), the per-step callback, the
check of a sampler's options.

A sampler is `sample_<name>(denoiser, x, sigmas, *, cond=None, generator=None, callback=None, **options) -> x0`:
    denoiser   D(x, sigma, cond) -> x0_hat in the sigma view (`diffusekit.denoiser.Denoiser` or any callable)
    x          the starting sample at sigmas[0], any shape (B, C, *spatial)
    sigmas     1-D, high to low, ending with 0 (`schedule.sigmas(steps, spacing)`); len(sigmas) - 1 steps
    generator  a torch.Generator for the noise of stochastic samplers (same seed, same result)
    callback   called once per step with a dict: i, x (before the step), sigma, sigma_next, x0_hat
All per-step coefficients are Python floats computed before the loop: the loop itself only does tensor work the
mathematics needs.
"""

from __future__ import annotations

import torch


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like x. One draw per call, in the order diffusers' schedulers draw theirs, so
    a loop seeded the same way reproduces theirs."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def check_sigmas(sigmas: torch.Tensor) -> list[float]:
    """Validate a sigma ladder and return it as Python floats."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError("sigmas must be a 1-D tensor of at least 2 noise levels, high to low, ending with 0")
    s = sigmas.tolist()
    if s[-1] != 0 or any(a <= b for a, b in zip(s[:-1], s[1:])) or not all(v == v and v < float("inf") for v in s):
        raise ValueError(f"sigmas must be finite, strictly decreasing and end with 0, got {s[:3]}...{s[-3:]}")
    return s


def notify(callback, i: int, x: torch.Tensor, sigma: float, sigma_next: float, x0_hat: torch.Tensor,
           step: int | None = None) -> None:
    """Call the per-step callback, if any, with i, x, sigma, sigma_next, x0_hat; and `step` (the count of denoising
    steps so far) when given, for loops that walk the ladder more than once (`diffusekit.inverse`'s solvers)."""
    if callback is not None:
        info = {"i": i} if step is None else {"i": i, "step": step}
        callback({**info, "x": x, "sigma": sigma, "sigma_next": sigma_next, "x0_hat": x0_hat})


def prior_std(denoiser, sigma_max: float) -> float:
    """The std of the noise a sampler starts from at sigma_max: the denoiser's `prior_std` (see
    `diffusekit.denoiser.Denoiser.prior_std`), or sigma_max for a bare callable without one."""
    prior = getattr(denoiser, "prior_std", None)
    return prior(sigma_max) if callable(prior) else sigma_max


def starting_noise(denoiser, shape, sigma_max: float, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The sample a reverse process starts from at sigma_max: N(0, prior_std^2) of the given shape, one draw."""
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device) * prior_std(denoiser, sigma_max)


def check_options(what: str, options, allowed) -> None:
    """ValueError naming the unknown keys of `options` and the allowed ones (listed in the order given; pass them
    sorted for a sorted list). what: e.g. "sampler 'euler'", "method 'ddnm'", "operator 'sr'"."""
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"{what} has no option(s) {sorted(unknown)}; allowed: {list(allowed) or 'none'}")
