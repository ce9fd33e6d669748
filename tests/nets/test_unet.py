"""Tests for diffusekit.nets and the CPU fast path (diffusekit.fast).

One interface test runs over every dimensionality and preset with odd sizes; the fused GroupNorm is checked against
PyTorch's own GroupNorm (an independent implementation) forward and backward; the fast path against fp32.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from diffusekit import fast
from diffusekit.nets import PRESETS, UNet, UNetConfig, param_count, unet_config
from diffusekit.nets.layers import GroupNormAct

needs_bf16 = pytest.mark.skipif(not fast.native_bf16(),
                                reason="CPU lacks native bf16 (AVX512-BF16/AMX): its fast path is fp32")


def randomized(model, seed=0):
    """Perturb every parameter: the zero-initialised output layer would otherwise make every output exactly 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 4
            p.add_(torch.randn(p.shape, generator=g) * 0.5 / math.sqrt(fan_in))
    return model


def inputs(cfg, spatial, B=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, cfg.in_channels, *spatial, generator=g)
    c_noise = torch.rand(B, generator=g) * 999  # fractional timesteps
    return x, c_noise


# (preset, dims, spatial, overrides): odd sizes everywhere, so padding and cropping always run; 3-D in both
# layouts (factorised space-time, the default, and full 3x3x3)
CASES = [
    ("tiny", 1, (37,), {}),
    ("tiny", 2, (9, 7), {}),
    ("tiny", 3, (3, 5, 6), {}),
    ("tiny", 3, (3, 5, 6), {"factorised": False}),
    ("small", 1, (50,), {}),
    ("small", 2, (28, 28), {}),
    ("small", 3, (2, 6, 5), {}),
    ("small", 3, (2, 6, 5), {"factorised": False}),
]


@pytest.mark.parametrize("preset,dims,spatial,overrides", CASES)
def test_interface(preset, dims, spatial, overrides):
    cfg = unet_config(preset, in_channels=3, dims=dims, **overrides)
    torch.manual_seed(0)
    net = randomized(UNet(cfg))
    x, c_noise = inputs(cfg, spatial)
    out = net(x, c_noise)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    assert out.abs().mean() > 0
    torch.manual_seed(0)
    again = randomized(UNet(cfg))
    assert torch.equal(again(x, c_noise), out), "same seed must give the same network and output"


def test_output_layer_starts_at_zero():
    cfg = unet_config("tiny", 1, 2)
    x, c_noise = inputs(cfg, (8, 8))
    assert torch.equal(UNet(cfg)(x, c_noise), torch.zeros_like(x))


def test_c_noise_scalar_and_out_channels():
    cfg = unet_config("tiny", 1, 2, out_channels=2)
    net = randomized(UNet(cfg))
    x, c_noise = inputs(cfg, (8, 8))
    out = net(x, torch.tensor(500.0))
    assert out.shape == (2, 2, 8, 8)
    assert torch.allclose(out, net(x, torch.full((2,), 500.0)))


def test_cond_hook_changes_output():
    cfg = unet_config("tiny", 1, 2, cond_dim=8)
    net = randomized(UNet(cfg))
    x, c_noise = inputs(cfg, (8, 8))
    cond = torch.randn(2, 8)
    a, b, c = net(x, c_noise), net(x, c_noise, cond), net(x, c_noise, cond + 1)
    assert not torch.allclose(a, b) and not torch.allclose(b, c)


def test_cross_attention_context_changes_output():
    cfg = unet_config("tiny", 1, 2, context_dim=12)
    net = randomized(UNet(cfg))
    x, c_noise = inputs(cfg, (8, 8))
    ctx = torch.randn(2, 5, 12)
    a, b, c = net(x, c_noise), net(x, c_noise, context=ctx), net(x, c_noise, context=ctx * 2)
    assert a.shape == b.shape == x.shape
    assert not torch.allclose(a, b) and not torch.allclose(b, c)


def test_cross_attention_levels_apart_from_self_attention():
    """xattn_levels puts cross-attention where there is no self-attention (and None keeps the old rule: the
    attention levels); a config saved before the field existed loads as the net it was."""
    cfg = unet_config("small", 3, 2, context_dim=8, xattn_levels=(1, 2))
    net = UNet(cfg)
    got = {(type(b).__name__, b.res.conv1.out_channels, b.attn is not None, b.xattn is not None)
           for b in net.down if hasattr(b, "res")}
    assert ("UNetBlock", 64, False, True) in got  # level 1 (16x16): cross- but no self-attention
    assert ("UNetBlock", 32, False, False) in got  # level 0: neither
    assert ("UNetBlock", 64, True, True) in got  # level 2: both
    old = unet_config("small", 3, 2, context_dim=8).to_dict()
    del old["xattn_levels"]
    legacy = UNet(UNetConfig.from_dict(old))
    count = lambda n: sum(b.xattn is not None for b in n.modules() if hasattr(b, "xattn"))  # noqa: E731
    assert count(legacy) == 6  # level 2: 2 blocks down, 3 up; and the middle
    assert count(net) == 11  # and level 1's 5
    with pytest.raises(ValueError, match="xattn_levels"):
        unet_config("tiny", 1, 2, context_dim=8, xattn_levels=(2,))
    x, c_noise = inputs(cfg, (32, 32))
    assert randomized(net)(x, c_noise, context=torch.randn(2, 4, 8)).shape == x.shape


def test_noise_level_changes_output_for_both_ranges():
    """Fractional timesteps and continuous log(sigma)/4 levels (with emb_scale) must both be told apart."""
    for scale, c0, c1 in [(1.0, 10.0, 10.5), (170.0, 0.0, 0.01)]:
        cfg = unet_config("tiny", 1, 2, emb_scale=scale)
        net = randomized(UNet(cfg))
        x, _ = inputs(cfg, (8, 8))
        a, b = net(x, torch.full((2,), c0)), net(x, torch.full((2,), c1))
        assert (a - b).abs().max() > 1e-3 * a.abs().max()


def test_gradient_flows_to_every_parameter():
    cfg = unet_config("tiny", 1, 2, cond_dim=4)
    net = randomized(UNet(cfg))
    x, c_noise = inputs(cfg, (9, 7))
    x.requires_grad_(True)
    net(x, c_noise, torch.randn(2, 4)).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_config_json_round_trip_gives_identical_outputs():
    cfg = unet_config("tiny", 2, 2, cond_dim=3, context_dim=6, channel_mult=[1, 2])
    cfg2 = UNetConfig.from_json(cfg.to_json())
    assert cfg2 == cfg and isinstance(cfg2.channel_mult, tuple)
    net = randomized(UNet(cfg))
    net2 = UNet(cfg2)
    net2.load_state_dict(net.state_dict())
    x, c_noise = inputs(cfg, (8, 6))
    args = (x, c_noise, torch.randn(2, 3), torch.randn(2, 4, 6))
    assert torch.equal(net(*args), net2(*args))


def test_presets_sizes():
    tiny = param_count(UNet(unet_config("tiny", 1, 2)))
    small = param_count(UNet(unet_config("small", 1, 2)))
    assert tiny < 500_000 and 1_500_000 < small < 6_000_000


def test_clear_errors():
    with pytest.raises(ValueError, match=r"preset.*allowed.*small.*tiny"):
        unet_config("huge", 1, 2)
    assert set(PRESETS) == {"tiny", "small", "base"}
    with pytest.raises(ValueError, match="dims must be 1, 2 or 3"):
        unet_config("tiny", 1, 4)
    with pytest.raises(ValueError, match="unknown UNetConfig fields"):
        UNetConfig.from_dict({"chanels": 3})
    with pytest.raises(ValueError, match="attn_levels"):
        unet_config("tiny", 1, 2, attn_levels=(2,))
    net = UNet(unet_config("tiny", 3, 2, cond_dim=4))
    c_noise = torch.zeros(2)
    with pytest.raises(ValueError, match=r"x must be \(B, C, \*spatial\) with 2 spatial dims"):
        net(torch.randn(2, 3, 8), c_noise)
    with pytest.raises(ValueError, match="in_channels=3"):
        net(torch.randn(2, 1, 8, 8), c_noise)
    with pytest.raises(ValueError, match="c_noise"):
        net(torch.randn(2, 3, 8, 8), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="cond_dim"):
        net(torch.randn(2, 3, 8, 8), c_noise, torch.randn(2, 5))
    with pytest.raises(ValueError, match="context_dim"):
        net(torch.randn(2, 3, 8, 8), c_noise, context=torch.randn(2, 4, 6))


# ---- the fused GroupNorm against PyTorch's GroupNorm + FiLM + SiLU ----

def reference_gn(x, weight, bias, scale, shift, groups, act):
    h = F.group_norm(x, groups, weight, bias, 1e-5)
    if scale is not None:
        shape = scale.shape + (1,) * (x.dim() - 2)
        h = h * (1 + scale.view(shape)) + shift.view(shape)
    return F.silu(h) if act else h


@pytest.mark.parametrize("film,act", [(True, True), (False, True), (False, False)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_group_norm_matches_pytorch(film, act, memory_format):
    torch.manual_seed(0)
    B, C, G = 3, 16, 4
    x = (torch.randn(B, C, 5, 7, dtype=torch.float64) * 3 + 1).to(memory_format=memory_format).requires_grad_()
    gn = GroupNormAct(G, C, act=act).double()
    with torch.no_grad():
        gn.weight.normal_(1, 0.3), gn.bias.normal_(0, 0.3)
    scale, shift = (torch.randn(B, C, dtype=torch.float64, requires_grad=True) if film else None for _ in range(2))
    out = gn(x, scale, shift)
    ref = reference_gn(x, gn.weight, gn.bias, scale, shift, G, act)
    torch.testing.assert_close(out, ref)
    leaves = [t for t in (x, gn.weight, gn.bias, scale, shift) if t is not None]
    gy = torch.randn_like(out)
    got = torch.autograd.grad(out, leaves, gy)
    want = torch.autograd.grad(ref, leaves, gy)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_group_norm_gradcheck():
    torch.manual_seed(0)
    gn = GroupNormAct(2, 4).double()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    scale, shift = (torch.randn(2, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(gn, (x, scale, shift))


def test_group_norm_bf16_channels_last_close_to_fp32():
    torch.manual_seed(0)
    x = torch.randn(4, 32, 12, 12) * 2 + 0.5
    scale, shift = torch.randn(4, 32) * 0.2, torch.randn(4, 32) * 0.2
    gn = GroupNormAct(8, 32)
    ref = reference_gn(x, gn.weight, gn.bias, scale, shift, 8, True)
    out = gn(x.bfloat16().to(memory_format=torch.channels_last), scale.bfloat16(), shift.bfloat16())
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.float(), ref, atol=0.03, rtol=0.02)


# ---- the fast path ----

def test_fast_settings():
    dtype, fmt = fast.fast_settings("cpu", dims=2)
    assert dtype == (torch.bfloat16 if fast.native_bf16() else None) and fmt == torch.channels_last
    assert fast.fast_settings("cpu", dims=3)[1] == torch.channels_last_3d
    assert fast.fast_settings("cpu", dims=1)[1] == torch.contiguous_format
    opt = fast.adamw(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    assert opt.defaults["fused"] is True
    assert set(fast.allocator_env()) == {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("dims,spatial,overrides", [(2, (9, 7), {}), (3, (3, 5, 6), {}),
                                                    (3, (3, 5, 6), {"factorised": False})])
def test_channels_last_fp32_matches_contiguous(dims, spatial, overrides):
    """The memory-format half of the fast path, which is also used where bf16 is not native: same numbers."""
    cfg = unet_config("tiny", 1, dims, cond_dim=4, **overrides)
    net = randomized(UNet(cfg))
    net_cl = copy.deepcopy(net).to(memory_format=fast.fast_settings("cpu", dims)[1])
    x, c_noise = inputs(cfg, spatial)
    cond = torch.randn(2, 4)
    torch.testing.assert_close(net_cl(x, c_noise, cond), net(x, c_noise, cond), atol=1e-5, rtol=1e-4)


@needs_bf16
@pytest.mark.parametrize("preset,dims,spatial,overrides", [("tiny", 1, (37,), {}), ("small", 2, (28, 28), {}),
                                                            ("tiny", 3, (3, 5, 6), {}),
                                                            ("tiny", 3, (3, 5, 6), {"factorised": False})])
def test_fast_path_agrees_with_fp32(preset, dims, spatial, overrides):
    """bf16 autocast + channels_last against plain fp32: outputs and gradients to bf16 tolerance."""
    cfg = unet_config(preset, 1, dims, cond_dim=4, context_dim=8 if dims == 2 else None, **overrides)
    net = randomized(UNet(cfg))
    fast_net = fast.prepare_model(copy.deepcopy(net), "cpu", dims)
    x, c_noise = inputs(cfg, spatial, B=4)
    extra = (torch.randn(4, 4),) + ((torch.randn(4, 3, 8),) if dims == 2 else ())
    out = net(x, c_noise, *extra)
    with fast.autocast("cpu", dims):
        out_fast = fast_net(x, c_noise, *extra)
    assert out_fast.dtype == torch.bfloat16
    assert _rel(out_fast, out) < 0.03
    out.square().mean().backward()
    out_fast.float().square().mean().backward()
    for (name, p), q in zip(net.named_parameters(), fast_net.parameters()):
        assert q.grad.dtype == torch.float32
        assert _rel(q.grad, p.grad) < 0.1, name


@needs_bf16
@pytest.mark.parametrize("dims,spatial,stride", [(3, (2, 4, 4), 1), (3, (4, 4, 1), 2), (3, (3, 1, 2), 2),
                                                 (2, (4, 1), 2), (1, (1,), 2)])
def test_conv_bf16_tiny_dims(dims, spatial, stride):
    """Guards the workaround in nets.layers (_SmallInputsInFp32): oneDNN's bf16 conv weight gradient is wrong, often
    inf/NaN, for these shapes. To see whether a newer torch fixed it, run this test with the workaround disabled."""
    from diffusekit.nets.layers import conv_nd

    torch.manual_seed(0)
    conv = conv_nd(dims, 16, 32, 3, stride=stride)
    x = torch.randn(2, 16, *spatial, requires_grad=True)
    y = conv(x)
    gy = torch.randn_like(y)
    (gw,) = torch.autograd.grad(y, conv.weight, gy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y2 = conv(x)
    (gw2,) = torch.autograd.grad(y2, conv.weight, gy.bfloat16())
    assert y2.dtype == torch.bfloat16
    assert _rel(gw2, gw) < 0.02


def test_cross_attention_ignores_masked_padding_tokens():
    """Text prompts are padded to the batch's longest: padding tokens masked out must not change the output."""
    torch.manual_seed(0)
    net = UNet(unet_config("tiny", 1, 2, context_dim=6)).eval()
    for p in net.parameters():  # zero-initialised output layers would hide any difference
        torch.nn.init.normal_(p, std=0.2)
    x, c = torch.randn(2, 1, 8, 8), torch.tensor([10.0, 500.0])
    ctx = torch.randn(2, 3, 6)
    padded = torch.cat([ctx, 100 * torch.randn(2, 2, 6)], dim=1)
    mask = torch.tensor([[True] * 3 + [False] * 2] * 2)
    with torch.no_grad():
        ref = net(x, c, context=ctx)
        assert torch.allclose(net(x, c, context=padded, context_mask=mask), ref, atol=1e-5)
        assert not torch.allclose(net(x, c, context=padded), ref, atol=1e-3)
    with pytest.raises(ValueError, match="context_mask must be a bool tensor"):
        net(x, c, context=ctx, context_mask=mask)


@pytest.mark.parametrize("cross, size", [(False, 7), (True, 7), (True, 16)])
def test_short_sequence_attention_matches_sdpa(cross, size, monkeypatch):
    """Up to SHORT_SEQ**2 query-key pairs Attention uses plain softmax matmuls (faster on CPU); it must equal the
    scaled_dot_product_attention path, masks included, forward and backward (16x16: 256 queries, cross only)."""
    from diffusekit.nets.layers import Attention

    torch.manual_seed(0)
    att = Attention(64, 32, 8, context_dim=24 if cross else None)
    torch.nn.init.normal_(att.proj.weight)  # proj starts at zero: make the attention visible
    x = torch.randn(3, 64, size, size)
    ctx = torch.randn(3, 5, 24) if cross else None
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool) if cross else None

    def run():
        xi = x.clone().requires_grad_(True)
        out = att(xi, ctx, mask)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return out.detach(), xi.grad

    from diffusekit.nets import layers

    calls, plain = [], layers._softmax_attention
    monkeypatch.setattr(layers, "_softmax_attention", lambda *a: calls.append(1) or plain(*a))
    short = run()
    assert calls, "the matmul path was not taken"
    monkeypatch.setattr(Attention, "SHORT_SEQ", 0)  # force the SDPA path
    flash = run()
    torch.testing.assert_close(short[0], flash[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short[1], flash[1], atol=1e-5, rtol=1e-5)
