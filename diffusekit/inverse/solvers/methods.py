"""The three posterior samplers, under one signature:
solver(denoiser, operator, y, x, sigmas, *, cond, generator, callback, **options) -> x0 (see the package docstring)."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ...samplers.base import check_options, check_sigmas, notify, randn_like
from ..operators import Operator
from .ladder import insert_sigma, jump_path, row_noise_std, step_coefficients, walk

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


def check_method(method: str, options: dict | None = None) -> None:
    """ValueError for a method not in METHODS, or (given `options`) an option it does not take."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if options is not None:
        check_options(f"method {method!r}", options, sorted(METHOD_OPTIONS[method]))


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
    sig_r = row_noise_std(operator, x.shape, "ddnm")
    s = check_sigmas(sigmas)
    if noisy == "anchor":
        s = insert_sigma(s, sig_r)
    coefs = step_coefficients(s, eta)
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
        notify(callback, i, x, s[i], s[i + 1], x0_c, step=n)
        noise = (x - x0_hat) * keep
        if std > 0:
            noise = noise + randn_like(x, generator) * std
        if cut > 0:
            noise = noise - cut * operator.project(noise)
        return x0_c + noise

    path = jump_path(s, sig_r if noisy == "anchor" else 0.0, jump_length, resample)
    return walk(s, path, x, generator, step)


def sample_repaint(denoiser, operator: Operator, y, x, sigmas, *, cond=None, generator=None, callback=None,
                   eta: float = 1.0, jump_length: int = 10, resample: int = 10):
    """RePaint (Lugmayr et al. 2022, Algorithm 1), for any operator whose singular values are equal (masks as in the
    paper; also downsampling and Fourier subsampling): the row-space part of each step comes from y."""
    sig_r = row_noise_std(operator, x.shape, "repaint")
    s = insert_sigma(check_sigmas(sigmas), sig_r)  # a level at exactly sigma_r, where y is the known part as is
    coefs = step_coefficients(s, eta)
    A, Ap = operator.forward, operator.pinv
    known_std = [math.sqrt(sig_next**2 - sig_r**2) if sig_next >= sig_r else None for sig_next in s[1:]]

    def step(i, x, n):
        keep, std = coefs[i]
        x0_hat = denoiser(x, s[i], cond)
        notify(callback, i, x, s[i], s[i + 1], x0_hat, step=n)
        x_next = x0_hat + (x - x0_hat) * keep  # the unknown part: an unconditional step (eq. 9)
        if std > 0:
            x_next = x_next + randn_like(x, generator) * std
        c = known_std[i]
        if c is not None:  # the known part: y noised to sigma_next (eq. 8), swapped in along the row space
            x_next = x_next + Ap(y - A(x_next))
            if c > 0:
                x_next = x_next + c * operator.project(randn_like(x, generator))
        return x_next

    return walk(s, jump_path(s, sig_r, jump_length, resample), x, generator, step)


def sample_dps(denoiser, operator: Operator, y, x, sigmas, *, cond=None, generator=None, callback=None,
               eta: float = 1.0, zeta: float = 1.0):
    """DPS (Chung et al. 2023, Algorithm 1 for Gaussian noise): after each ancestral step,
    x_next -= zeta' grad_x ||y - A(D(x, sigma))||, with per-sample norms as the official code.

    zeta is the paper's step in the VP coordinates x_t = x / sqrt(1 + sigma^2) it was tuned in; in the sigma view
    that is zeta' = zeta sqrt((1 + sigma^2)(1 + sigma_next^2)), so the paper's values carry over."""
    s = check_sigmas(sigmas)
    coefs = step_coefficients(s, eta)
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
        notify(callback, i, x, s[i], s[i + 1], x0_hat, step=n)
        x_next = x0_hat + (x - x0_hat) * keep - scales[i] * grad
        if std > 0:
            x_next = x_next + randn_like(x, generator) * std
        return x_next

    return walk(s, list(range(len(s))), x, generator, step)


SOLVERS: dict[str, Callable] = {"ddnm": sample_ddnm, "repaint": sample_repaint, "dps": sample_dps}
