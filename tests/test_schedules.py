"""Schedules, conversions, the forward process, the denoiser's preconditioning and losses."""

import math

import pytest
import torch

import diffusekit as dk
from diffusekit import process
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


def test_q_sample_is_closed_form_and_matches_sigma_view():
    s = dk.DiscreteSchedule()
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 1, 5, generator=g), torch.randn(4, 1, 5, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    xt = process.q_sample(s, x0, t, eps)
    ab = s.alphas_cumprod[t].float()[:, None, None]
    assert torch.allclose(xt, ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
    x_ve = process.add_noise(x0, s.sigmas_table[t], eps)
    assert torch.allclose(x_ve * ab.sqrt(), xt, atol=1e-5)


def test_q_sample_matches_diffusers_add_noise():
    diffusers = pytest.importorskip("diffusers")
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(6, 3, 4, 4, generator=g), torch.randn(6, 3, 4, 4, generator=g)
    t = torch.tensor([0, 1, 250, 500, 900, 999])
    theirs = diffusers.DDPMScheduler().add_noise(x0, eps, t)
    assert torch.allclose(process.q_sample(dk.DiscreteSchedule(), x0, t, eps), theirs, atol=1e-5)


def test_v_target_definition():
    ab = torch.tensor([0.3, 0.9], dtype=torch.float64)
    x0, eps = torch.randn(2, 1, 3, dtype=torch.float64), torch.randn(2, 1, 3, dtype=torch.float64)
    v = process.training_target("v", x0, eps, ab)
    xt = ab.sqrt()[:, None, None] * x0 + (1 - ab).sqrt()[:, None, None] * eps
    # x0 = sqrt(ab) x_t - sqrt(1 - ab) v  (Salimans & Ho 2022)
    assert torch.allclose(ab.sqrt()[:, None, None] * xt - (1 - ab).sqrt()[:, None, None] * v, x0)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "edm"])
def test_perfect_network_gives_zero_loss_and_exact_x0(prediction):
    """A network that outputs exactly its parameterization's target denoises perfectly: D(x0 + sigma eps) = x0."""
    schedule = dk.KarrasSchedule() if prediction == "edm" else dk.DiscreteSchedule()
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(5, 2, 3, 3, dtype=torch.float64, generator=g), torch.randn(5, 2, 3, 3, dtype=torch.float64,
                                                                                     generator=g)
    sigma = torch.tensor([0.01, 0.3, 1.0, 7.0, 60.0], dtype=torch.float64)
    den = dk.Denoiser(None, schedule, prediction=prediction)
    c_skip, c_out, c_in, _ = den.coefficients(sigma)
    b = lambda c: c[:, None, None, None]  # noqa: E731
    x = x0 + b(sigma) * eps
    target = (x0 - b(c_skip) * x) / b(c_out)
    if prediction != "edm":
        assert torch.allclose(target, process.training_target(prediction, x0, eps, 1 / (1 + b(sigma)[:, 0, 0, 0] ** 2)))
    den.net = lambda x_in, c_noise: target
    assert torch.allclose(den(x, sigma), x0, atol=1e-10)
    assert torch.allclose(den.loss(x0, sigma, eps), torch.zeros(5, dtype=torch.float64), atol=1e-18)


def test_min_snr_weights_match_hang_et_al():
    sigma = torch.tensor([0.05, 0.5, 2.0, 20.0], dtype=torch.float64)
    snr = 1 / sigma**2
    for prediction, expected in [("eps", snr.clamp(max=5) / snr), ("v", snr.clamp(max=5) / (snr + 1)),
                                 ("x0", snr.clamp(max=5))]:
        den = dk.Denoiser(lambda x, c: torch.ones_like(x), dk.DiscreteSchedule(), prediction=prediction)
        x0, eps = torch.zeros(4, 1, 2, dtype=torch.float64), torch.zeros(4, 1, 2, dtype=torch.float64)
        uniform = den.loss(x0, sigma, eps)
        weighted = den.loss(x0, sigma, eps, weighting="min-snr", gamma=5.0)
        ratio = weighted / uniform
        assert torch.allclose(ratio, expected, rtol=1e-9), (prediction, ratio, expected)


def test_training_sigma_samplers():
    g = torch.Generator().manual_seed(0)
    sigma, t = process.sample_training_sigmas(dk.DiscreteSchedule(), 20000, "uniform", g)
    assert t.min() == 0 and t.max() == 999 and abs(t.double().mean() - 499.5) < 10
    assert torch.equal(sigma, dk.DiscreteSchedule().sigmas_table[t])
    sigma, t = process.sample_training_sigmas(dk.KarrasSchedule(), 20000, "lognormal", g)
    assert t is None and abs(sigma.log().mean() + 1.2) < 0.03 and abs(sigma.log().std() - 1.2) < 0.03
    with pytest.raises(ValueError, match="unknown noise sampler 'beta'.*lognormal"):
        process.sample_training_sigmas(dk.KarrasSchedule(), 4, "beta")
