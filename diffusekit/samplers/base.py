"""What every sampler shares: the signature, the noise draws, the per-step callback.

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


def notify(callback, i: int, x: torch.Tensor, sigma: float, sigma_next: float, x0_hat: torch.Tensor) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "x0_hat": x0_hat})
