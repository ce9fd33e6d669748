"""The forward process (diffusekit.process): q_sample in closed form and against diffusers, the v target, and the
training noise-level samplers."""

import pytest
import torch

import diffusekit as dk
from diffusekit import process


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


def test_training_sigma_samplers():
    g = torch.Generator().manual_seed(0)
    sigma, t = process.sample_training_sigmas(dk.DiscreteSchedule(), 20000, "uniform", g)
    assert t.min() == 0 and t.max() == 999 and abs(t.double().mean() - 499.5) < 10
    assert torch.equal(sigma, dk.DiscreteSchedule().sigmas_table[t])
    sigma, t = process.sample_training_sigmas(dk.KarrasSchedule(), 20000, "lognormal", g)
    assert t is None and abs(sigma.log().mean() + 1.2) < 0.03 and abs(sigma.log().std() - 1.2) < 0.03
    with pytest.raises(ValueError, match="unknown noise sampler 'beta'.*lognormal"):
        process.sample_training_sigmas(dk.KarrasSchedule(), 4, "beta")
