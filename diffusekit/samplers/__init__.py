"""The reverse process: every sampler under one signature (see `base.py`), by the names users type.

    ddpm              ancestral sampling of Ho et al. 2020          (option: variance = fixed_small | fixed_large)
    ddim              Song et al. 2021                              (option: eta)
    euler             Euler on the probability-flow ODE             (options: s_churn, s_tmin, s_tmax, s_noise)
    euler-ancestral   Euler with ancestral noise                    (options: eta, s_noise)
    heun              Heun's 2nd-order method, Karras et al. 2022  (options: s_churn, s_tmin, s_tmax, s_noise)
    dpmpp-2m          DPM-Solver++(2M), Lu et al. 2022
    dpmpp-2m-sde      SDE-DPM-Solver++(2M)                          (options: eta, s_noise)
    dpmpp-3m          DPM-Solver++(3M)
    restart           Heun with restarts, Xu et al. 2023            (options: restart_min, restart_max, restarts,
                                                                     restart_steps, s_noise)

`sample(denoiser, shape, sampler=..., steps=...)` does the whole job: sigmas from the denoiser's schedule, the
starting noise, the loop.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from .base import check_options, check_sigmas, starting_noise
from .ddpm import sample_ddim, sample_ddpm
from .dpm import sample_dpmpp_2m, sample_dpmpp_2m_sde, sample_dpmpp_3m
from .karras import sample_euler, sample_euler_ancestral, sample_heun
from .restart import sample_restart

SAMPLERS: dict[str, Callable] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "euler-ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpmpp-2m": sample_dpmpp_2m,
    "dpmpp-2m-sde": sample_dpmpp_2m_sde,
    "dpmpp-3m": sample_dpmpp_3m,
    "restart": sample_restart,
}

# Spacing by default: DDPM and DDIM as published and as diffusers runs them (leading timesteps) on a discrete
# schedule; everything else, and every sampler on a continuous (Karras) schedule, which has no timesteps, on
# Karras et al.'s rho = 7 ladder, which suits the ODE and multistep solvers best at few steps.
DEFAULT_SPACING = {"ddpm": "leading", "ddim": "leading"}
_COMMON = {"denoiser", "x", "sigmas", "cond", "generator", "callback"}


def get_sampler(name: str) -> Callable:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def sampler_options(name: str) -> dict:
    """The options a sampler takes beyond the common signature, with their defaults."""
    sig = inspect.signature(get_sampler(name))
    return {k: p.default for k, p in sig.parameters.items() if k not in _COMMON}


@dataclass
class SamplerConfig:
    """Everything that decides a sampling run except the model and the seed; saved as JSON beside samples."""

    sampler: str = "dpmpp-2m"
    steps: int = 20
    spacing: str | None = None  # None: DEFAULT_SPACING for the sampler (on a discrete schedule), else karras
    options: dict = field(default_factory=dict)
    sigma_min: float | None = None  # the karras / logsnr ladder's ends; None: the schedule's
    sigma_max: float | None = None

    def __post_init__(self):
        get_sampler(self.sampler)
        check_options(f"sampler {self.sampler!r}", self.options, sorted(sampler_options(self.sampler)))
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")

    @property
    def resolved_spacing(self) -> str:
        """The spacing on a discrete schedule; `spacing_for(schedule)` answers for any schedule."""
        return self.spacing or DEFAULT_SPACING.get(self.sampler, "karras")

    def spacing_for(self, schedule) -> str:
        if self.spacing or hasattr(schedule, "timesteps"):
            return self.resolved_spacing
        return "karras"  # a continuous schedule has no timesteps to space: leading / trailing mean nothing there

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "SamplerConfig":
        return cls(**json.loads(text))


def sample(
    denoiser,
    shape=None,
    *,
    sampler: str = "dpmpp-2m",
    steps: int = 20,
    spacing: str | None = None,
    generator: torch.Generator | None = None,
    cond=None,
    callback: Callable | None = None,
    x: torch.Tensor | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    **options,
) -> torch.Tensor:
    """Draw samples: noise at the ladder's top level (the schedule's sigma_max unless moved), then `steps` steps of
    the named sampler down to sigma = 0.

    denoiser  a `Denoiser` (it carries the schedule and knows the starting noise's scale)
    shape     (B, C, *spatial) of the samples, or give the starting noise `x` (already scaled) instead
    spacing   leading | trailing | linspace | karras | logsnr (default: leading for ddpm/ddim on a discrete schedule,
              karras otherwise)
    sigma_min, sigma_max   the karras / logsnr ladder's ends (default: the schedule's); at 10 steps a higher
              sigma_min gives the last network call work to do, which helped on digits, not everywhere
              (BENCHMARKS.md, section 5)
    options   the sampler's own options (`sampler_options(name)` lists them), e.g. eta=0.5 for ddim"""
    config = SamplerConfig(sampler, steps, spacing, options, sigma_min, sigma_max)
    sigmas = denoiser.schedule.sigmas(steps, config.spacing_for(denoiser.schedule), sigma_min=sigma_min, sigma_max=sigma_max)
    if x is None:
        if shape is None:
            raise ValueError("give the samples' shape (B, C, *spatial) or the starting noise x")
        shape = tuple(shape)
        if len(shape) < 3:
            raise ValueError(f"shape must be (B, C, *spatial) with at least one spatial dimension, got {shape}")
        x = starting_noise(denoiser, shape, float(sigmas[0]), generator, dtype, device)
    elif shape is not None and tuple(shape) != tuple(x.shape):
        raise ValueError(f"shape {tuple(shape)} does not match the starting noise's shape {tuple(x.shape)}")
    return get_sampler(sampler)(denoiser, x, sigmas, cond=cond, generator=generator, callback=callback, **options)


__all__ = ["SAMPLERS", "SamplerConfig", "check_sigmas", "get_sampler", "sample", "sampler_options"] + [
    f.__name__ for f in SAMPLERS.values()
]
