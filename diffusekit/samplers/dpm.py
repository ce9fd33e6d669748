"""DPM-Solver++ multistep solvers (Lu et al. 2022, "DPM-Solver++", Algorithm 2 and its SDE variant, sec. 5).

In the sigma view lambda = -log(sigma) (half the logSNR) and h = lambda_next - lambda; each step is an exponential
integrator over the denoised estimates of the last 1-3 steps. Steps to sigma = 0 return the denoised estimate (the
limit of the update, as diffusers' `final_sigmas_type="zero"`), and with fewer than 15 steps the second-to-last step
of the 3rd-order solver drops to 2nd order, as diffusers' `lower_order_final` does, for stability.
"""

from __future__ import annotations

import math

from .base import check_sigmas, notify, randn_like


def sample_dpmpp_2m(denoiser, x, sigmas, *, cond=None, generator=None, callback=None):
    """DPM-Solver++(2M): 2nd-order multistep, one denoiser call a step (the midpoint form, as diffusers' default)."""
    return _dpmpp_multistep(denoiser, x, sigmas, 2, cond, callback)


def sample_dpmpp_3m(denoiser, x, sigmas, *, cond=None, generator=None, callback=None):
    """DPM-Solver++(3M): 3rd-order multistep (Lu et al. 2022, Appendix; diffusers' solver_order=3)."""
    return _dpmpp_multistep(denoiser, x, sigmas, 3, cond, callback)


def _dpmpp_multistep(denoiser, x, sigmas, order, cond, callback):
    s = check_sigmas(sigmas)
    n = len(s) - 1
    hist: list = []  # (x0_hat, lambda) of earlier steps, newest first
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        x0_hat = denoiser(x, sig, cond)
        notify(callback, i, x, sig, sig_next, x0_hat)
        lam = -math.log(sig)
        if sig_next == 0:
            x = x0_hat
            break
        h = -math.log(sig_next) - lam
        k = min(order, len(hist) + 1)
        if i == n - 2 and n < 15:
            k = min(k, 2)
        phi1 = -math.expm1(-h)  # 1 - e^{-h}
        if k == 1:
            d = x0_hat
        elif k == 2:
            m1, lam1 = hist[0]
            r0 = (lam - lam1) / h
            d = x0_hat + (x0_hat - m1) * (0.5 / r0)
        else:
            (m1, lam1), (m2, lam2) = hist[0], hist[1]
            r0, r1 = (lam - lam1) / h, (lam1 - lam2) / h
            d1_0, d1_1 = (x0_hat - m1) / r0, (m1 - m2) / r1
            d1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
            d2 = (d1_0 - d1_1) / (r0 + r1)
            phi2 = 1 - phi1 / h  # (e^{-h} - 1) / h + 1
            phi3 = (h - phi1) / h**2 - 0.5  # (e^{-h} - 1 + h) / h^2 - 1/2
            d = x0_hat + d1 * (phi2 / phi1) - d2 * (phi3 / phi1)
        x = d.lerp(x, sig_next / sig)  # (sig_next / sig) x + (1 - e^{-h}) d, since sig_next / sig = e^{-h}
        hist = [(x0_hat, lam)] + hist[: order - 2]
    return x


def sample_dpmpp_2m_sde(denoiser, x, sigmas, *, cond=None, generator=None, callback=None,
                        eta: float = 1.0, s_noise: float = 1.0):
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, sec. 5; diffusers' `sde-dpmsolver++`, midpoint form). eta scales the
    noise injected per step: eta = 0 is the ODE solver above."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    s = check_sigmas(sigmas)
    old = None
    for i, (sig, sig_next) in enumerate(zip(s[:-1], s[1:])):
        x0_hat = denoiser(x, sig, cond)
        notify(callback, i, x, sig, sig_next, x0_hat)
        if sig_next == 0:
            x = x0_hat
            break
        h = math.log(sig) - math.log(sig_next)
        eta_h = eta * h
        phi = -math.expm1(-h - eta_h)  # 1 - e^{-(1 + eta) h}
        x = x0_hat.mul(phi).add_(x, alpha=sig_next / sig * math.exp(-eta_h))
        if old is not None:
            x0_prev, h_prev = old
            x.add_(x0_hat - x0_prev, alpha=0.5 * phi * h / h_prev)
        if eta > 0:
            x.add_(randn_like(x, generator), alpha=sig_next * math.sqrt(-math.expm1(-2 * eta_h)) * s_noise)
        old = (x0_hat, h)
    return x
