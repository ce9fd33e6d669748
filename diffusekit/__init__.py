"""diffusekit: train your own diffusion models, on your data, on the machine you have.

The core, in the order data flows (notation in `diffusekit.schedules`):
    schedules   noise schedules, sigma/alpha_bar/SNR conversions, timestep spacings
    process     the forward process: closed-form noising, training targets, loss weights
    denoiser    one denoiser D(x, sigma, cond) -> x0_hat over eps-, x0-, v- or EDM-parameterized networks
    samplers    the reverse process: ddpm, ddim, euler, euler-ancestral, heun, dpmpp-2m, dpmpp-2m-sde, dpmpp-3m,
                restart

Sampling a model trained elsewhere (diffusers' convention: eps-prediction, t in 0..999):

    import diffusekit as dk
    denoiser = dk.Denoiser(lambda x, t: unet(x, t).sample, dk.DiscreteSchedule("linear"), prediction="eps")
    images = dk.sample(denoiser, (16, 3, 32, 32), sampler="dpmpp-2m", steps=20, generator=torch.Generator().manual_seed(0))
"""

from .denoiser import Denoiser
from .samplers import SAMPLERS, SamplerConfig, get_sampler, sample, sampler_options
from .schedules import DiscreteSchedule, KarrasSchedule, get_schedule, schedule_from_dict

__version__ = "0.1.0"

__all__ = [
    "Denoiser",
    "DiscreteSchedule",
    "KarrasSchedule",
    "SAMPLERS",
    "SamplerConfig",
    "get_sampler",
    "get_schedule",
    "sample",
    "sampler_options",
    "schedule_from_dict",
]
