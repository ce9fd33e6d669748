"""Label conditioning and classifier-free guidance."""

import pytest
import torch

import diffusekit as dk
from diffusekit.conditioning import Guided, LabelConditioned


class CondNet(torch.nn.Module):
    """x * (1 + label embedding), so conditional and unconditional outputs differ."""

    def forward(self, x, c_noise, cond):
        return torch.tanh(x) * (1 + cond[:, :1, None, None]) + 0.01 * c_noise[:, None, None, None] / 1000


def make():
    torch.manual_seed(0)
    net = LabelConditioned(CondNet(), num_classes=3, cond_dim=4, p_uncond=0.25)
    return dk.Denoiser(net, dk.DiscreteSchedule()), net


def test_guidance_scale_one_is_the_conditional_model_and_w_extrapolates():
    den, net = make()
    x, labels = torch.randn(4, 1, 5, 5), torch.tensor([0, 1, 2, 0])
    null = torch.full_like(labels, net.null)
    cond, uncond = den(x, 3.0, labels), den(x, 3.0, null)
    assert not torch.allclose(cond, uncond)
    assert torch.equal(Guided(den, 1.0, lambda c: torch.full_like(c, net.null))(x, 3.0, labels), cond)
    for w in (0.0, 2.5):
        guided = Guided(den, w, lambda c: torch.full_like(c, net.null))(x, 3.0, labels)
        assert torch.allclose(guided, uncond + w * (cond - uncond), atol=1e-6)


def test_guided_passes_are_one_batch():
    _, net = make()
    calls = []

    def counting(x, c_noise, cond):
        calls.append(x.shape[0])
        return net(x, c_noise, cond)

    den = dk.Denoiser(counting, dk.DiscreteSchedule())
    Guided(den, 3.0, lambda c: torch.full_like(c, net.null))(torch.randn(4, 1, 5, 5), 2.0, torch.tensor([0, 1, 2, 0]))
    assert calls == [8]


def test_label_dropout_rate_and_bad_labels():
    _, net = make()
    dropped = net.drop_labels(torch.zeros(20000, dtype=torch.long), torch.Generator().manual_seed(0))
    assert abs((dropped == net.null).double().mean() - 0.25) < 0.01
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        net(torch.randn(1, 1, 5, 5), torch.zeros(1), torch.tensor([7]))
