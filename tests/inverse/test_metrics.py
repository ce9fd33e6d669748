"""diffusekit.inverse's metrics: PSNR by hand, SSIM against scikit-image."""

import math

import pytest
import torch

from diffusekit import inverse as inv

F64 = torch.float64


def test_psnr():
    x = torch.zeros(2, 1, 4, 4)
    ref = x.clone()
    ref[0] += 0.1
    v = inv.psnr(x, ref)
    mse = float(torch.tensor(0.1)) ** 2  # the float32 0.1, squared in float64 as psnr does
    assert abs(float(v[0]) - 10 * math.log10(4 / mse)) < 1e-9 and math.isinf(float(v[1]))


def test_ssim_identity_and_errors():
    x = torch.rand(3, 2, 16, 16) * 2 - 1
    assert torch.allclose(inv.ssim(x, x), torch.ones(3, dtype=F64))
    assert (inv.ssim(x, x + 0.3 * torch.randn_like(x)) < 0.95).all()
    with pytest.raises(ValueError, match="window"):
        inv.ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        inv.ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 17))


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    from diffusekit.data.phantoms import make_phantoms

    g = torch.Generator().manual_seed(0)
    ref = make_phantoms(2, 32, seed=3).double()
    cases = [ref + 0.1 * torch.randn(ref.shape, generator=g, dtype=F64),
             torch.rand(2, 3, 20, 24, generator=g, dtype=F64) * 2 - 1,
             torch.rand(2, 1, 12, 13, 14, generator=g, dtype=F64) * 2 - 1]
    refs = [ref, torch.rand(2, 3, 20, 24, generator=g, dtype=F64) * 2 - 1,
            torch.rand(2, 1, 12, 13, 14, generator=g, dtype=F64) * 2 - 1]
    for a, b in zip(cases, refs):
        ours = inv.ssim(a, b)
        for i in range(a.shape[0]):
            theirs = metrics.structural_similarity(
                a[i].numpy(), b[i].numpy(), data_range=2.0, channel_axis=0, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False)
            assert abs(float(ours[i]) - theirs) < 1e-6, (float(ours[i]), theirs)
        assert abs(float(inv.psnr(a, b)[0]) - metrics.peak_signal_noise_ratio(b[0].numpy(), a[0].numpy(),
                                                                               data_range=2.0)) < 1e-9
