"""Restart sampling (Xu et al. 2023, "Restart Sampling for Improving Generative Processes", Algorithm 1).

Heun's method down the ladder; on reaching the ladder level nearest `restart_min`, forward noise takes the sample
back up to `restart_max` (x + sqrt(restart_max^2 - sigma^2) eps: the forward process, in closed form) and Heun's
method brings it down again over `restart_steps` steps of a Karras rho = 7 ladder, `restarts` times; then the main
ladder goes on to 0. Why: an ODE solver carries every error of the steps above into the sample, an SDE contracts
those errors but needs many small steps; the large forward jump contracts them (the paper's Theorem 2) while each
descent stays a low-error ODE solve. Network calls: 2 steps - 1 + 2 restarts restart_steps.

The defaults (restart on [0.3, 2], 2 restarts of 5 steps: 39 calls at steps=10) were chosen on mnist5k, on tuning
seeds, among settings of 19 and 39 calls (BENCHMARKS.md, section 5): descents of 2 or 3 steps do not contract the
added noise accurately (on Gaussian data 2-step descents inflate every variance by about 25%, 5-step ones are
accurate: tests/test_oracle.py), so restart does not pay at 19 calls; at 39 it matched DDPM's 1,000-step FD there.
"""

from __future__ import annotations

import math

from ..schedules import karras_sigmas
from .base import check_sigmas, notify, randn_like
from .karras import heun_step


def sample_restart(denoiser, x, sigmas, *, cond=None, generator=None, callback=None, restart_min: float = 0.3,
                   restart_max: float = 2.0, restarts: int = 2, restart_steps: int = 5, s_noise: float = 1.0):
    """Heun's method with `restarts` restarts from the ladder level nearest restart_min up to restart_max (see the
    module docstring). The callback is called once per Heun step, restart steps included (i counts them all)."""
    s = check_sigmas(sigmas)
    restarts, restart_steps = _count(restarts, "restarts", 0), _count(restart_steps, "restart_steps", 1)
    if not 0 < restart_min < restart_max:
        raise ValueError(f"need 0 < restart_min < restart_max, got {restart_min}, {restart_max}")
    # the restart point: the ladder level below restart_max (not the first, not the final 0) nearest restart_min in
    # log sigma, as the paper takes the main ladder's level nearest t_min
    below = [v for v in s[1:-1] if v < restart_max]
    if restarts and not below:
        raise ValueError(f"no level of the ladder lies below restart_max={restart_max} (levels {s[0]:.4g} ... "
                         f"{s[-2]:.4g}): raise restart_max or take more steps")
    restart_from = min(below, key=lambda v: abs(math.log(v / restart_min))) if restarts else None
    i = 0
    for sig, sig_next in zip(s[:-1], s[1:]):
        x, i = _step(denoiser, x, sig, sig_next, cond, callback, i)
        if sig_next == restart_from:
            up = math.sqrt(restart_max**2 - restart_from**2) * s_noise
            descent = karras_sigmas(restart_steps + 1, restart_from, restart_max).tolist()
            for _ in range(restarts):
                x = x + randn_like(x, generator) * up
                for a, b in zip(descent[:-1], descent[1:]):
                    x, i = _step(denoiser, x, a, b, cond, callback, i)
    return x


def _step(denoiser, x, sig, sig_next, cond, callback, i):
    x0_hat = denoiser(x, sig, cond)
    notify(callback, i, x, sig, sig_next, x0_hat)
    return heun_step(denoiser, x, x0_hat, sig, sig_next, cond), i + 1


def _count(v, name: str, least: int) -> int:
    """An integer option that may arrive as a float from a command line (2.0 -> 2)."""
    if isinstance(v, bool) or not float(v).is_integer() or v < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")
    return int(v)
