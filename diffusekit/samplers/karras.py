"""Euler, Euler-ancestral and Heun's 2nd-order method on the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma
(Karras et al. 2022, Algorithms 1-2), with optional churn (stochastic noise injection, S_churn)."""

from __future__ import annotations

import math

import torch

from .base import check_sigmas, notify, randn_like


def _churn(s: list[float], s_churn: float, s_tmin: float, s_tmax: float) -> list[float]:
    """gamma_i of Algorithm 2: raise sigma by a factor (1 + gamma) before the step, within [s_tmin, s_tmax]."""
    if s_churn < 0:
        raise ValueError(f"s_churn must be >= 0, got {s_churn}")
    n = len(s) - 1
    g = min(s_churn / n, math.sqrt(2) - 1)
    return [g if s_churn > 0 and s_tmin <= sig <= s_tmax else 0.0 for sig in s[:-1]]


def _raise_noise(x, generator, sig: float, gamma: float, s_noise: float):
    """Add noise to move x from sigma to sigma_hat = sigma (1 + gamma); returns (x, sigma_hat)."""
    if gamma == 0:
        return x, sig
    sig_hat = sig * (1 + gamma)
    return x + randn_like(x, generator) * (s_noise * math.sqrt(sig_hat**2 - sig**2)), sig_hat


def sample_euler(denoiser, x, sigmas, *, cond=None, generator=None, callback=None,
                 s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0):
    """Euler's method (1st order); with s_churn > 0 the stochastic sampler of Karras et al. Algorithm 2 with an Euler
    step."""
    s = check_sigmas(sigmas)
    gammas = _churn(s, s_churn, s_tmin, s_tmax)
    for i, gamma in enumerate(gammas):
        x, sig_hat = _raise_noise(x, generator, s[i], gamma, s_noise)
        x0_hat = denoiser(x, sig_hat, cond)
        notify(callback, i, x, sig_hat, s[i + 1], x0_hat)
        x = x0_hat.lerp(x, s[i + 1] / sig_hat)  # x + (x - x0_hat) / sig_hat * (sig_next - sig_hat)
    return x


def sample_heun(denoiser, x, sigmas, *, cond=None, generator=None, callback=None,
                s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0):
    """Heun's 2nd-order method (Karras et al. Algorithm 1; Algorithm 2 with s_churn > 0). Two denoiser calls a step,
    one on the last step to sigma = 0, where the correction is undefined."""
    s = check_sigmas(sigmas)
    gammas = _churn(s, s_churn, s_tmin, s_tmax)
    for i, gamma in enumerate(gammas):
        x, sig_hat = _raise_noise(x, generator, s[i], gamma, s_noise)
        sig_next = s[i + 1]
        x0_hat = denoiser(x, sig_hat, cond)
        notify(callback, i, x, sig_hat, sig_next, x0_hat)
        x = heun_step(denoiser, x, x0_hat, sig_hat, sig_next, cond)
    return x


def heun_step(denoiser, x, x0_hat, sig: float, sig_next: float, cond=None):
    """The rest of one Heun step from sig to sig_next, given x0_hat = D(x; sig): one more denoiser call, or none when
    sig_next = 0 (the step is then Euler's, to the denoised estimate: the correction is undefined there)."""
    if sig_next == 0:
        return x0_hat
    # x_2 = x + d dt with d = (x - x0_hat) / sig; then x + (d + d_2) dt / 2, with d_2 = (x_2 - D(x_2)) / sig_next
    dt = sig_next - sig
    x_2 = x0_hat.lerp(x, sig_next / sig)
    x = torch.add(x, x - x0_hat, alpha=dt / (2 * sig))
    return x.add_(x_2 - denoiser(x_2, sig_next, cond), alpha=dt / (2 * sig_next))


def sample_euler_ancestral(denoiser, x, sigmas, *, cond=None, generator=None, callback=None,
                           eta: float = 1.0, s_noise: float = 1.0):
    """Euler steps down to sigma_down, then fresh noise up to sigma_next (the ancestral split of k-diffusion:
    sigma_up^2 = eta^2 sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2, sigma_down^2 = sigma_next^2 - sigma_up^2)."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    s = check_sigmas(sigmas)
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        sig_up = min(sig_next, eta * math.sqrt(sig_next**2 * (sig**2 - sig_next**2) / sig**2))
        sig_down = math.sqrt(sig_next**2 - sig_up**2)
        x0_hat = denoiser(x, sig, cond)
        notify(callback, i, x, sig, sig_next, x0_hat)
        x = x0_hat.lerp(x, sig_down / sig)
        if sig_up > 0:
            x.add_(randn_like(x, generator), alpha=sig_up * s_noise)
    return x
