"""The forward process: noise added in closed form, the training targets, loss weights and training noise levels.

Notation as in `diffusekit.schedules`. In the VP view x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps; in the sigma
view x = x0 + sigma eps = x_t / sqrt(alpha_bar). Training happens in the sigma view through the denoiser
(`Denoiser.loss` noises with `add_noise` and takes its targets from `training_target`); the VP functions are the
closed forms of Ho et al. 2020 that diffusers' `add_noise` and the targets of eps-, x0- and v-prediction (Salimans &
Ho 2022) are written in.
"""

from __future__ import annotations

import math

import torch

from .schedules import DiscreteSchedule, Schedule, sigma_to_snr

PREDICTIONS = ("eps", "x0", "v")
LOSS_WEIGHTINGS = ("uniform", "min-snr", "edm")
NOISE_SAMPLERS = ("uniform", "lognormal")


def bcast(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) in x's dtype, to broadcast a per-sample value over x (B, C, *spatial)."""
    return a.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def q_sample(schedule: DiscreteSchedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Sample q(x_t | x0) at integer timesteps t (B,): sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps."""
    ab = bcast(schedule.alphas_cumprod.to(x0.device)[t], x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def add_noise(x0: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The sigma view of the same process: x = x0 + sigma eps, sigma (B,)."""
    return x0 + bcast(sigma, x0) * eps


def training_target(prediction: str, x0: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """What a network of the given parameterization is trained to output for x_t = sqrt(ab) x0 + sqrt(1-ab) eps.

    eps: eps;  x0: x0;  v: sqrt(ab) eps - sqrt(1 - ab) x0   (Salimans & Ho 2022, sec. 4)."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        ab = bcast(alpha_bar, x0)
        return ab.sqrt() * eps - (1 - ab).sqrt() * x0
    raise ValueError(f"unknown prediction {prediction!r}; allowed: {', '.join(PREDICTIONS)}")


def x0_loss_weight(weighting: str, sigma: torch.Tensor, gamma: float = 5.0, sigma_data: float = 0.5) -> torch.Tensor:
    """The loss weight lambda(sigma) on ||D(x; sigma) - x0||^2, the error of the denoised estimate.

    uniform:  1/c_out^2 is applied by the caller instead (plain MSE on the network output, the DDPM 'simple' loss)
    min-snr:  min(SNR, gamma) (Hang et al. 2023, eq. 8; gamma = 5 as in the paper)
    edm:      (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (Karras et al. 2022, Table 1)"""
    if weighting == "min-snr":
        return sigma_to_snr(sigma).clamp(max=gamma)
    if weighting == "edm":
        return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    raise ValueError(f"unknown loss weighting {weighting!r}; allowed: {', '.join(LOSS_WEIGHTINGS)}")


def sample_training_sigmas(
    schedule: Schedule,
    batch: int,
    kind: str = "uniform",
    generator: torch.Generator | None = None,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Noise levels for one training batch: (sigma (B,) float64, t (B,) int64 or None).

    uniform:    t ~ U{0..T-1} on a discrete schedule (Ho et al. 2020); on a Karras range, log sigma ~ U.
    lognormal:  log sigma ~ N(p_mean, p_std^2) (Karras et al. 2022, sec. 5; their defaults -1.2, 1.2),
                clamped to the schedule's range."""
    if kind not in NOISE_SAMPLERS:
        raise ValueError(f"unknown noise sampler {kind!r}; allowed: {', '.join(NOISE_SAMPLERS)}")
    if kind == "uniform" and isinstance(schedule, DiscreteSchedule):
        t = torch.randint(0, schedule.num_timesteps, (batch,), generator=generator)
        return schedule.sigmas_table[t].to(device), t.to(device)
    if kind == "uniform":
        u = torch.rand(batch, generator=generator, dtype=torch.float64)
        lo, hi = math.log(schedule.sigma_min), math.log(schedule.sigma_max)
        return (lo + u * (hi - lo)).exp().to(device), None
    z = torch.randn(batch, generator=generator, dtype=torch.float64)
    sigma = (p_mean + p_std * z).exp().clamp(schedule.sigma_min, schedule.sigma_max)
    return sigma.to(device), None


__all__ = [
    "PREDICTIONS",
    "LOSS_WEIGHTINGS",
    "NOISE_SAMPLERS",
    "bcast",
    "q_sample",
    "add_noise",
    "training_target",
    "x0_loss_weight",
    "sample_training_sigmas",
]
