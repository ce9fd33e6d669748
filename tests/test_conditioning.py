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


# ---- text conditioning: synthetic token states, so these run without the text encoder ---------------------------

from diffusekit.conditioning import TextCond, TextConditioned  # noqa: E402
from diffusekit.nets import UNet, unet_config  # noqa: E402


@pytest.fixture
def text_model(perturbed):
    """text_model(p_uncond=0.1) -> (denoiser, net): a tiny UNet with cross-attention (context width 8), every weight
    perturbed: zero-initialised output layers would otherwise hide the context's effect. Null: a 2-token "empty
    prompt"."""

    def make(p_uncond=0.1):
        torch.manual_seed(0)
        unet = perturbed(UNet(unet_config("tiny", in_channels=1, context_dim=8)), seed=None, std=0.2)
        null = TextCond(torch.randn(1, 2, 8), torch.ones(1, 2, dtype=torch.bool))
        net = TextConditioned(unet, null, p_uncond).eval()
        return dk.Denoiser(net, dk.DiscreteSchedule()), net

    return make


def prompts(lengths, L=None, seed=1):
    """Random token states for prompts of the given lengths, zero-padded to L (default: the longest)."""
    g = torch.Generator().manual_seed(seed)
    L = L or max(lengths)
    mask = torch.arange(L)[None] < torch.tensor(lengths)[:, None]  # (B, L)
    return TextCond(torch.randn(len(lengths), L, 8, generator=g) * mask[..., None], mask)


def test_text_padding_changes_nothing_and_trim_cat(text_model):
    den, _ = text_model()
    x, c = torch.randn(3, 1, 8, 8), prompts([3, 5, 2])
    ref = den(x, 2.0, c)
    assert torch.allclose(den(x, 2.0, c.pad_to(9)), ref, atol=1e-5)
    assert c.pad_to(9).trim().tokens.shape[1] == 5 and c.select([0, 2]).tokens.shape[1] == 3
    both = TextCond.cat([c.select([2]), c.select([1])])  # lengths 2 and 5 -> padded to 5
    assert both.tokens.shape == (2, 5, 8) and both.mask.sum(1).tolist() == [2, 5]


def test_text_guidance_scale_one_is_the_conditional_model_and_w_extrapolates(text_model):
    den, net = text_model()
    x, c = torch.randn(3, 1, 8, 8), prompts([3, 5, 2])
    cond, uncond = den(x, 3.0, c), den(x, 3.0, None)  # None: the empty prompt
    assert torch.allclose(uncond, den(x, 3.0, net.null(3)))
    assert (cond - uncond).abs().max() > 1e-3, "the context must matter for this test to mean anything"
    null = lambda c: net.null(c.batch)  # noqa: E731
    assert torch.equal(Guided(den, 1.0, null)(x, 3.0, c), cond)
    for w in (0.0, 3.0):
        assert torch.allclose(Guided(den, w, null)(x, 3.0, c), uncond + w * (cond - uncond), atol=1e-4)
    neg = prompts([4, 4, 4], seed=2)  # a negative prompt replaces the empty one in the unconditional pass
    negd = den(x, 3.0, neg)
    assert torch.allclose(Guided(den, 3.0, lambda c: neg)(x, 3.0, c), negd + 3.0 * (cond - negd), atol=1e-4)


def test_text_guided_passes_are_one_batch(text_model):
    _, net = text_model()
    calls = []

    def counting(x, c_noise, cond):
        calls.append((x.shape[0], cond.tokens.shape[0]))
        return net(x, c_noise, cond)

    den = dk.Denoiser(counting, dk.DiscreteSchedule())
    Guided(den, 3.0, lambda c: net.null(c.batch))(torch.randn(3, 1, 8, 8), 2.0, prompts([3, 5, 2]))
    assert calls == [(6, 6)]


def test_empty_prompt_dropout_rate_and_rows(text_model):
    _, net = text_model(p_uncond=0.25)
    c = prompts([6] * 20000)
    out = net.drop_prompts(c, torch.Generator().manual_seed(0))
    null = net.null(1).pad_to(6)
    is_null = (out.mask == null.mask).all(1) & (out.tokens == null.tokens).all(2).all(1)
    assert abs(is_null.double().mean() - 0.25) < 0.01
    kept = ~is_null
    assert torch.equal(out.tokens[kept], c.tokens[kept]) and torch.equal(out.mask[kept], c.mask[kept])
    again = net.drop_prompts(c, torch.Generator().manual_seed(0))  # the draw comes from the generator alone
    assert torch.equal(again.tokens, out.tokens)


def test_text_conditioned_errors(text_model):
    _, net = text_model()
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="TextCond"):
        net(x, torch.zeros(2), torch.tensor([1, 2]))  # labels to a text model
    with pytest.raises(ValueError, match="batch of 2"):
        net(x, torch.zeros(2), prompts([3, 3, 3]))
    with pytest.raises(ValueError, match="one encoded prompt"):
        TextConditioned(net.net, prompts([2, 2]))
