"""Independent implementation: our sampler loops against diffusers' schedulers (test-only dependency; the schedule
tables and timesteps are checked against them in tests/test_schedules.py).

Every loop is driven by the same deterministic eps-model from the same initial noise, in float32 on both sides."""

import pytest
import torch

import diffusekit as dk

diffusers = pytest.importorskip("diffusers")

SHAPE = (4, 2, 8, 8)


_AB = dk.DiscreteSchedule("linear").alphas_cumprod


def eps_model(x_t, t):
    """A deterministic stand-in for a trained network, in diffusers' convention (VP input, t in 0..999): the exact
    eps-predictor for data N(0, 0.5^2 I) under the linear schedule, plus a smooth non-linear term, so samples stay
    O(1) and the comparison measures the loops, not float32 round-off on huge values."""
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1).expand(x_t.shape[0])
    lo = t.floor().long().clamp(0, 998)
    ab = torch.lerp(_AB[lo], _AB[lo + 1], t - lo).reshape(-1, *([1] * (x_t.ndim - 1))).to(x_t.dtype)
    exact = (1 - ab).sqrt() * x_t / (0.25 * ab + 1 - ab)
    return exact + 0.05 * torch.tanh(x_t) * torch.sin(t.reshape(ab.shape).to(x_t.dtype) / 150)


def noise(seed=0):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def diffusers_loop(scheduler, steps, x, generator=None):
    scheduler.set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = eps_model(scheduler.scale_model_input(x, t), t)
        kwargs = {"generator": generator} if generator is not None else {}
        x = scheduler.step(out, t, x, **kwargs).prev_sample
    return x


def ours(sampler, steps, spacing, x, schedule, generator=None, quantize=False, **options):
    den = dk.Denoiser(eps_model, schedule, prediction="eps", quantize=quantize)
    sigmas = schedule.sigmas(steps, spacing)
    x = x.double().mul(den.prior_std(float(sigmas[0]))).float()  # the same N(0, 1) VP noise in the sigma view
    return dk.get_sampler(sampler)(den, x, sigmas, generator=generator, **options)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("steps", [1000, 50])
def test_ddpm_matches_ddpmscheduler(variance, steps):
    x = noise()
    theirs = diffusers_loop(diffusers.DDPMScheduler(variance_type=variance, clip_sample=False), steps, x,
                            torch.Generator().manual_seed(1))
    mine = ours("ddpm", steps, "leading", x, dk.DiscreteSchedule(), torch.Generator().manual_seed(1),
                variance=variance)
    assert torch.allclose(mine, theirs, atol=1e-4, rtol=0), (mine - theirs).abs().max()


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_ddimscheduler(spacing, eta):
    x = noise()
    sched = diffusers.DDIMScheduler(clip_sample=False, timestep_spacing=spacing, set_alpha_to_one=True)
    sched.set_timesteps(25)
    g = torch.Generator().manual_seed(2)
    y = x.clone()
    for t in sched.timesteps:
        y = sched.step(eps_model(y, t), t, y, eta=eta, generator=g).prev_sample
    mine = ours("ddim", 25, spacing, x, dk.DiscreteSchedule(), torch.Generator().manual_seed(2), eta=eta)
    assert torch.allclose(mine, y, atol=1e-4, rtol=0), (mine - y).abs().max()


@pytest.mark.parametrize("order,name", [(2, "dpmpp-2m"), (3, "dpmpp-3m")])
@pytest.mark.parametrize("steps", [8, 20])
@pytest.mark.parametrize("spacing,karras", [("linspace", False), ("karras", True)])
def test_dpmpp_matches_dpmsolvermultistep(order, name, steps, spacing, karras):
    sched = diffusers.DPMSolverMultistepScheduler(solver_order=order, algorithm_type="dpmsolver++",
                                                  final_sigmas_type="zero", use_karras_sigmas=karras)
    x = noise()
    theirs = diffusers_loop(sched, steps, x)
    # diffusers rounds the model's timesteps (not the sigmas) to integers with Karras sigmas: quantize=True
    mine = ours(name, steps, spacing, x, dk.DiscreteSchedule(), quantize=karras)
    assert torch.allclose(mine, theirs, atol=1e-4, rtol=0), (mine - theirs).abs().max()


@pytest.mark.parametrize("name,cls", [("euler", "EulerDiscreteScheduler"), ("heun", "HeunDiscreteScheduler")])
@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
def test_karras_samplers_match(name, cls, schedule):
    sched = getattr(diffusers, cls)(beta_schedule=schedule, beta_start=1e-4, beta_end=0.02, use_karras_sigmas=True,
                                    **({"timestep_spacing": "linspace"} if name == "euler" else {}))
    x = noise()
    theirs = diffusers_loop(sched, 15, x)
    s = dk.DiscreteSchedule(schedule, beta_start=1e-4, beta_end=0.02)
    den = dk.Denoiser(eps_model, s, prediction="eps")
    sigmas = s.sigmas(15, "karras")
    mine = dk.get_sampler(name)(den, x * sched.init_noise_sigma, sigmas)  # diffusers starts at sigma_max here
    assert torch.allclose(mine, theirs, atol=1e-4, rtol=0), (mine - theirs).abs().max()
