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

    ladder      the walk on the sigma ladder shared by the solvers (jump_schedule, default_sigmas)
    methods     sample_ddnm, sample_repaint, sample_dps (SOLVERS, METHODS, METHOD_OPTIONS)
    solve       reconstruct (the entry point), denoiser_calls
    consistent  ConsistentDenoiser, consistent_denoiser, reconstruct_with_sampler
"""

from .consistent import ConsistentDenoiser, consistent_denoiser, reconstruct_with_sampler
from .ladder import default_sigmas, jump_schedule
from .methods import (METHOD_OPTIONS, METHODS, NOISY_MODES, SOLVERS, check_method, sample_ddnm, sample_dps,
                      sample_repaint)
from .solve import denoiser_calls, reconstruct

__all__ = [
    "METHODS", "METHOD_OPTIONS", "SOLVERS", "ConsistentDenoiser", "consistent_denoiser", "default_sigmas",
    "denoiser_calls", "jump_schedule", "reconstruct", "reconstruct_with_sampler", "sample_ddnm", "sample_dps",
    "sample_repaint",
]

