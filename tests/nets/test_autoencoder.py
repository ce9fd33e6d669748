"""The autoencoder of latent diffusion: shapes for f = 4 and 8 in 1-D and 2-D (padding to a multiple of f and cropping
back), its checks, and its KL against torch.distributions."""

import pytest
import torch

from diffusekit.nets.autoencoder import Autoencoder, AutoencoderConfig, autoencoder_config, kl_divergence


@pytest.mark.parametrize("factor, spatial, latent", [
    (4, (28, 28), (7, 7)), (8, (64, 64), (8, 8)), (8, (28, 28), (4, 4)),  # 28 is padded to 32, cropped back
    (4, (2048,), (512,)), (8, (100,), (13,)),
])
def test_autoencoder_shapes(factor, spatial, latent):
    cfg = autoencoder_config(factor, 1, spatial, latent_channels=3, channels=8)
    assert cfg.factor == factor and cfg.latent_spatial == latent
    ae = Autoencoder(cfg)
    x = torch.rand(2, 1, *spatial) * 2 - 1
    x_hat, mean, logvar = ae(x, torch.Generator().manual_seed(0))
    assert mean.shape == logvar.shape == (2, 3, *latent)
    assert x_hat.shape == x.shape
    assert ae.decode(mean).shape == x.shape


def test_autoencoder_refuses_other_shapes_and_configs():
    ae = Autoencoder(autoencoder_config(4, 1, (28, 28), channels=8))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        ae.posterior(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="factor"):
        autoencoder_config(3, 1, (28, 28))
    with pytest.raises(ValueError, match="one size per spatial dim"):
        AutoencoderConfig(dims=2, spatial=(28,))


def test_kl_divergence_matches_torch_distributions():
    mean, logvar = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(1)
    torch.testing.assert_close(kl_divergence(mean, logvar), expected)
