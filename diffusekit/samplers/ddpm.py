"""The reverse processes of DDPM (Ho et al. 2020) and DDIM (Song et al. 2021), written in the sigma view.

With alpha_bar = 1 / (1 + sigma^2) the VP formulas below map onto x = x_t / sqrt(alpha_bar), so these loops drive any
denoiser; between sigma and sigma_next the single-step alpha is alpha_bar / alpha_bar_next (diffusers' choice for
strided timesteps).
"""

from __future__ import annotations

import math

from .base import check_sigmas, notify, randn_like

DDPM_VARIANCES = ("fixed_small", "fixed_large")


def sample_ddpm(denoiser, x, sigmas, *, cond=None, generator=None, callback=None, variance: str = "fixed_small"):
    """Ancestral sampling from the posterior q(x_{t-1} | x_t, x0_hat) (Ho et al. 2020, Algorithm 2, eq. 6-7).

    variance: `fixed_small` is the posterior variance beta_tilde = (1 - ab_prev) / (1 - ab) beta (best for
    x0 ~ a point, the usual choice); `fixed_large` is beta itself (best for x0 ~ N(0, I)); Ho et al. sec. 3.2."""
    if variance not in DDPM_VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; allowed: {', '.join(DDPM_VARIANCES)}")
    s = check_sigmas(sigmas)
    steps = []
    for sig, sig_next in zip(s[:-1], s[1:]):
        ab, ab_next = 1 / (1 + sig**2), 1 / (1 + sig_next**2)
        alpha = ab / ab_next
        beta = 1 - alpha
        # posterior mean in the VP view: c0 x0 + ct x_t  (Ho et al. eq. 7)
        c0 = math.sqrt(ab_next) * beta / (1 - ab)
        ct = math.sqrt(alpha) * (1 - ab_next) / (1 - ab)
        var = (1 - ab_next) / (1 - ab) * beta if variance == "fixed_small" else beta
        # back to the sigma view: x = x_t / sqrt(ab)
        a = ct * math.sqrt(ab) / math.sqrt(ab_next)
        b = c0 / math.sqrt(ab_next)
        std = math.sqrt(var) / math.sqrt(ab_next) if sig_next > 0 else 0.0
        steps.append((a, b, std))
    for i, (a, b, std) in enumerate(steps):
        x0_hat = denoiser(x, s[i], cond)
        notify(callback, i, x, s[i], s[i + 1], x0_hat)
        x = x0_hat.mul(b).add_(x, alpha=a)
        if std > 0:
            x.add_(randn_like(x, generator), alpha=std)
    return x


def sample_ddim(denoiser, x, sigmas, *, cond=None, generator=None, callback=None, eta: float = 0.0):
    """DDIM (Song et al. 2021, eq. 12): eta = 0 is deterministic (and is Euler's method in the sigma view), eta = 1
    has DDPM's posterior variance."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    s = check_sigmas(sigmas)
    steps = []
    for sig, sig_next in zip(s[:-1], s[1:]):
        ab, ab_next = 1 / (1 + sig**2), 1 / (1 + sig_next**2)
        std_vp = eta * math.sqrt((1 - ab_next) / (1 - ab) * (1 - ab / ab_next))  # eq. 16
        keep = math.sqrt(max(1 - ab_next - std_vp**2, 0.0)) / math.sqrt(ab_next) / sig  # weight of eps = (x-x0)/sig
        steps.append((keep, std_vp / math.sqrt(ab_next)))
    for i, (keep, std) in enumerate(steps):
        x0_hat = denoiser(x, s[i], cond)
        notify(callback, i, x, s[i], s[i + 1], x0_hat)
        x = x0_hat.lerp(x, keep)  # x0_hat + sqrt(1 - ab_next - std^2) / sqrt(ab_next) * eps_hat
        if std > 0:
            x.add_(randn_like(x, generator), alpha=std)
    return x
