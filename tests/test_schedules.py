"""Noise schedules (diffusekit.schedules): conversions, the discrete tables, the sampling ladders and their ends,
and the tables and timesteps against diffusers' schedulers (an independent implementation, test-only dependency)."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit.schedules import (alpha_bar_to_sigma, karras_sigmas, logsnr_to_sigma, sigma_to_alpha_bar,
                                  sigma_to_logsnr, sigma_to_snr, snr_to_sigma)


def test_conversions_round_trip():
    ab = torch.linspace(0.001, 0.999, 50, dtype=torch.float64)
    s = alpha_bar_to_sigma(ab)
    assert torch.allclose(sigma_to_alpha_bar(s), ab, atol=1e-14)
    assert torch.allclose(sigma_to_snr(s), ab / (1 - ab), rtol=1e-12)
    assert torch.allclose(snr_to_sigma(sigma_to_snr(s)), s, rtol=1e-12)
    assert torch.allclose(logsnr_to_sigma(sigma_to_logsnr(s)), s, rtol=1e-12)


def test_linear_schedule_is_ddpm():
    s = dk.DiscreteSchedule()
    assert s.betas[0] == pytest.approx(1e-4) and s.betas[-1] == pytest.approx(0.02) and len(s.betas) == 1000
    assert s.sigma_max == pytest.approx(math.sqrt((1 - s.alphas_cumprod[-1]) / s.alphas_cumprod[-1]))


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "cosine", "sigmoid"])
def test_zero_terminal_snr(name):
    s = dk.get_schedule(name, zero_terminal_snr=True)
    assert s.alphas_cumprod[-1] == 0 and s.alphas_cumprod[0] == pytest.approx(dk.get_schedule(name).alphas_cumprod[0])
    assert math.isfinite(s.sigma_max), "the sigma view clamps the terminal alpha_bar (2**-24)"


def test_sigma_to_t_inverts_the_table():
    s = dk.DiscreteSchedule("cosine")
    t = torch.tensor([0, 1, 17, 500, 998, 999])
    assert torch.allclose(s.sigma_to_t(s.sigmas_table[t]), t.double(), atol=1e-9)
    frac = torch.tensor([10.25, 600.5], dtype=torch.float64)
    assert torch.allclose(s.sigma_to_t(s.sigma_at(frac)), frac, atol=0.01)


def test_karras_spacing():
    k = karras_sigmas(10, 0.002, 80.0)
    assert k[0] == pytest.approx(80.0) and k[-1] == pytest.approx(0.002) and (k.diff() < 0).all()
    ladder = dk.KarrasSchedule().sigmas(10)
    assert len(ladder) == 11 and ladder[-1] == 0


def test_logsnr_spacing_and_ladder_ends():
    s = dk.DiscreteSchedule()
    ladder = s.sigmas(10, "logsnr")
    assert len(ladder) == 11 and ladder[-1] == 0
    assert ladder[0] == pytest.approx(s.sigma_max) and ladder[-2] == pytest.approx(s.sigma_min)
    steps = ladder[:-1].log().diff()  # uniform in log sigma, i.e. in logSNR
    assert torch.allclose(steps, steps[0].expand_as(steps)) and steps[0] < 0
    moved = s.sigmas(10, "logsnr", sigma_min=0.05, sigma_max=80.0)
    assert moved[0] == pytest.approx(80.0) and moved[-2] == pytest.approx(0.05)
    k = s.sigmas(10, "karras", sigma_min=0.05)
    assert k[-2] == pytest.approx(0.05) and k[0] == pytest.approx(s.sigma_max)
    assert torch.equal(s.sigmas(10, "karras"), s.sigmas(10, "karras", sigma_min=s.sigma_min))
    with pytest.raises(ValueError, match="within the schedule"):
        s.sigmas(10, "logsnr", sigma_max=2 * s.sigma_max)  # the network never saw that much noise
    with pytest.raises(ValueError, match="within the schedule"):
        s.sigmas(10, "karras", sigma_min=s.sigma_min / 2)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        s.sigmas(10, "logsnr", sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="timesteps"):
        s.sigmas(10, "leading", sigma_min=0.05)
    c = dk.KarrasSchedule().sigmas(8, "logsnr", sigma_min=0.01)
    assert torch.allclose(c, dk.KarrasSchedule(sigma_min=0.01).sigmas(8, "linspace"))


def test_unknown_schedule_lists_names():
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'.*cosine"):
        dk.get_schedule("quadratic")
    with pytest.raises(ValueError, match="unknown spacing 'uniform'.*karras"):
        dk.DiscreteSchedule().sigmas(10, "uniform")


# ---- against diffusers ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diffusers():
    return pytest.importorskip("diffusers")


SCHEDULES = [("linear", "linear"), ("scaled_linear", "scaled_linear"), ("cosine", "squaredcos_cap_v2"),
             ("sigmoid", "sigmoid")]


@pytest.mark.parametrize("ours_name,theirs", SCHEDULES)
@pytest.mark.parametrize("zero_snr", [False, True])
def test_alphas_cumprod_match(diffusers, ours_name, theirs, zero_snr):
    s = dk.DiscreteSchedule(ours_name, zero_terminal_snr=zero_snr)
    d = diffusers.DDPMScheduler(beta_schedule=theirs, rescale_betas_zero_snr=zero_snr)
    assert torch.allclose(s.alphas_cumprod, d.alphas_cumprod.double(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps_match(diffusers, spacing):
    s = dk.DiscreteSchedule()
    theirs = diffusers.DPMSolverMultistepScheduler(timestep_spacing=spacing)
    for steps in (1, 7, 20, 50):
        theirs.set_timesteps(steps)
        if spacing == "leading":  # DDIM's and DDPM's leading rule (DPM-Solver's divides by steps + 1)
            theirs = diffusers.DDIMScheduler(timestep_spacing="leading")
            theirs.set_timesteps(steps)
        assert s.timesteps(steps, spacing).tolist() == theirs.timesteps.tolist(), (spacing, steps)
