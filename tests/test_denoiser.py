"""The denoiser (diffusekit.denoiser): its preconditioning (a perfect network denoises exactly, with zero loss, for
every parameterization) and the min-SNR loss weights."""

import pytest
import torch

import diffusekit as dk
from diffusekit import process


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
