"""Tests for the UNet (diffusekit.nets) in its four layouts -- 1-D, 2-D, and 3-D both factorised space-time (the
video default: UNetConfig.factorised, per-frame convs and attention, T kept at every level) and full 3x3x3 -- and the
CPU fast path (diffusekit.fast) on it.

The properties every layout shares run as one parametrised test each (odd sizes everywhere, so padding and cropping
always run): the interface, gradients, the JSON round trip, channels_last and the bf16 fast path against fp32; then
what only 2-D (conditioning hooks, cross-attention, errors) or only video (the default layout, T kept, frame
permutations commute with an untrained net) is about; and every preset's parameter count, pinned.
"""

import copy

import pytest
import torch

from diffusekit import fast
from diffusekit.nets import PRESETS, UNet, UNetConfig, param_count, param_counts, unet_config
from diffusekit.nets.layers import Downsample

needs_bf16 = pytest.mark.skipif(not fast.native_bf16(),
                                reason="CPU lacks native bf16 (AVX512-BF16/AMX): its fast path is fp32")

# layout -> (dims, unet_config overrides)
LAYOUTS = {"1d": (1, {}), "2d": (2, {}), "3d-factorised": (3, {}), "3d-full": (3, {"factorised": False})}


def config(preset, in_channels, layout, **overrides):
    dims, layout_overrides = LAYOUTS[layout]
    return unet_config(preset, in_channels, dims, **layout_overrides, **overrides)


def inputs(cfg, spatial, B=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, cfg.in_channels, *spatial, generator=g)
    c_noise = torch.rand(B, generator=g) * 999  # fractional timesteps
    return x, c_noise


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


# ---- every layout -----------------------------------------------------------------------------------------------

# (preset, layout, x shape (B, C, *spatial), out_channels): odd sizes; clips with odd T, one frame, other channels
INTERFACE = [
    ("tiny", "1d", (2, 3, 37), None),
    ("tiny", "2d", (2, 3, 9, 7), None),
    ("tiny", "3d-factorised", (2, 3, 3, 5, 6), None),
    ("tiny", "3d-full", (2, 3, 3, 5, 6), None),
    ("small", "1d", (2, 3, 50), None),
    ("small", "2d", (2, 3, 28, 28), None),
    ("small", "3d-factorised", (2, 3, 2, 6, 5), None),
    ("small", "3d-full", (2, 3, 2, 6, 5), None),
    ("tiny", "3d-factorised", (2, 1, 3, 5, 6), 3),
    ("tiny", "3d-factorised", (1, 2, 7, 9, 13), 3),
    ("small", "3d-factorised", (2, 1, 5, 11, 7), 3),
    ("small", "3d-factorised", (1, 1, 1, 8, 8), 3),
]


@pytest.mark.parametrize("preset,layout,shape,out_channels", INTERFACE)
def test_interface(perturbed, preset, layout, shape, out_channels):
    cfg = config(preset, shape[1], layout, out_channels=out_channels)
    torch.manual_seed(0)
    net = perturbed(UNet(cfg))
    x, c_noise = inputs(cfg, shape[2:], B=shape[0])
    out = net(x, c_noise)
    assert out.shape == (shape[0], out_channels or shape[1], *shape[2:])
    assert torch.isfinite(out).all()
    assert out.abs().mean() > 0
    torch.manual_seed(0)
    again = perturbed(UNet(cfg))
    assert torch.equal(again(x, c_noise), out), "same seed must give the same network and output"


@pytest.mark.parametrize("layout,spatial,context_dim", [("1d", (37,), 5), ("2d", (9, 7), None),
                                                        ("3d-factorised", (4, 8, 8), 5), ("3d-full", (3, 5, 6), 5)])
def test_gradient_flows_to_every_parameter(perturbed, layout, spatial, context_dim):
    cfg = config("tiny", 1, layout, cond_dim=4, context_dim=context_dim)
    net = perturbed(UNet(cfg))
    x, c_noise = inputs(cfg, spatial)
    x.requires_grad_(True)
    context = torch.randn(2, 3, context_dim) if context_dim else None
    net(x, c_noise, torch.randn(2, 4), context).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("layout,spatial", [("1d", (12,)), ("2d", (8, 6)), ("3d-factorised", (3, 6, 5)),
                                            ("3d-full", (3, 6, 5))])
def test_config_json_round_trip_rebuilds_the_same_net(perturbed, layout, spatial):
    cfg = config("tiny", 2, layout, cond_dim=3, context_dim=6, channel_mult=[1, 2])
    cfg2 = UNetConfig.from_json(cfg.to_json())
    assert cfg2 == cfg and isinstance(cfg2.channel_mult, tuple)
    factorised = layout == "3d-factorised"
    assert cfg2.factorised == factorised and ('"factorised": true' in cfg.to_json()) == factorised
    net = perturbed(UNet(cfg))
    net2 = UNet(cfg2)
    net2.load_state_dict(net.state_dict())
    x, c_noise = inputs(cfg, spatial)
    args = (x, c_noise, torch.randn(2, 3), torch.randn(2, 4, 6))
    assert torch.equal(net(*args), net2(*args))
    if cfg.dims == 3:  # the two video layouts' weights never load into each other
        other = UNet(unet_config("tiny", 2, 3, cond_dim=3, context_dim=6, factorised=not factorised))
        with pytest.raises(RuntimeError, match="size mismatch|Missing key|Unexpected key"):
            other.load_state_dict(net.state_dict())


@pytest.mark.parametrize("preset,layout,spatial", [("tiny", "2d", (9, 7)), ("tiny", "3d-factorised", (3, 5, 6)),
                                                   ("tiny", "3d-full", (3, 5, 6)),
                                                   ("small", "3d-factorised", (5, 16, 16))])
def test_channels_last_fp32_matches_contiguous(perturbed, preset, layout, spatial):
    """The memory-format half of the fast path, which is also used where bf16 is not native: same numbers."""
    cfg = config(preset, 1, layout, cond_dim=4)
    net = perturbed(UNet(cfg))
    net_cl = copy.deepcopy(net).to(memory_format=fast.fast_settings("cpu", cfg.dims)[1])
    x, c_noise = inputs(cfg, spatial)
    cond = torch.randn(2, 4)
    torch.testing.assert_close(net_cl(x, c_noise, cond), net(x, c_noise, cond), atol=1e-5, rtol=1e-4)


# (preset, layout, spatial, batch, overrides); the last: video with spatial attention at two levels, on both the
# flash-kernel (16x16 = 256 tokens per frame at level 1) and the short-sequence path (64 at level 2), and
# cross-attention
FAST_PATH = [
    ("tiny", "1d", (37,), 4, {}),
    ("small", "2d", (28, 28), 4, {"context_dim": 8}),
    ("tiny", "3d-factorised", (3, 5, 6), 4, {}),
    ("tiny", "3d-full", (3, 5, 6), 4, {}),
    ("small", "3d-factorised", (5, 32, 32), 2, {"context_dim": 8, "attn_levels": (1, 2)}),
]


@needs_bf16
@pytest.mark.parametrize("preset,layout,spatial,B,overrides", FAST_PATH)
def test_fast_path_agrees_with_fp32(perturbed, preset, layout, spatial, B, overrides):
    """bf16 autocast + channels_last against plain fp32: outputs and gradients to bf16 tolerance."""
    cfg = config(preset, 1, layout, cond_dim=4, **overrides)
    net = perturbed(UNet(cfg))
    fast_net = fast.prepare_model(copy.deepcopy(net), "cpu", cfg.dims)
    x, c_noise = inputs(cfg, spatial, B=B)
    extra = (torch.randn(B, 4),) + ((torch.randn(B, 3, 8),) if cfg.context_dim else ())
    out = net(x, c_noise, *extra)
    with fast.autocast("cpu", cfg.dims):
        out_fast = fast_net(x, c_noise, *extra)
    assert out_fast.dtype == torch.bfloat16
    padded = spatial[1:] if cfg.factorised else spatial  # factorised nets never pad T
    if cfg.dims > 1 and all(s % 2 ** (len(cfg.channel_mult) - 1) == 0 for s in padded):  # not cropped to a view
        assert out_fast.is_contiguous(memory_format=fast.fast_settings("cpu", cfg.dims)[1])
    assert _rel(out_fast, out) < 0.03
    out.square().mean().backward()
    out_fast.float().square().mean().backward()
    for (name, p), q in zip(net.named_parameters(), fast_net.parameters()):
        assert q.grad.dtype == torch.float32 and torch.isfinite(q.grad).all(), name
        assert _rel(q.grad, p.grad) < 0.1, name


# ---- every preset's size, pinned ----------------------------------------------------------------------------------

# param_count(UNet(unet_config(preset, 1, dims))) for 1-channel data: the figures PRESETS' comments in nets/unet.py
# round. A change to the architecture changes them: update them on purpose, with those comments.
PARAMS = {
    ("tiny", "1d"): 101_089,
    ("tiny", "2d"): 190_369,
    ("tiny", "3d-factorised"): 225_393,
    ("tiny", "3d-full"): 458_209,
    ("small", "1d"): 863_905,
    ("small", "2d"): 1_742_881,
    ("small", "3d-factorised"): 2_007_233,
    ("small", "3d-full"): 4_379_809,
    ("base", "1d"): 18_345_345,
    ("base", "2d"): 38_302_593,
    ("base", "3d-factorised"): 43_477_761,
    ("base", "3d-full"): 98_174_337,
}


def test_preset_parameter_counts_are_pinned():
    assert set(PRESETS) == {preset for preset, _ in PARAMS}, "every preset is pinned"
    with torch.device("meta"):  # shapes only: no memory, no initialisation (base 3-D full is 98M parameters)
        got = {(preset, layout): param_count(UNet(config(preset, 1, layout))) for preset, layout in PARAMS}
        table = param_counts(verbose=False)  # the table param_counts prints: each dims in its default layout
    assert got == PARAMS
    default = {1: "1d", 2: "2d", 3: "3d-factorised"}
    assert table == {(preset, dims): PARAMS[preset, default[dims]] for preset in PRESETS for dims in (1, 2, 3)}


# ---- 2-D: conditioning, cross-attention, errors -------------------------------------------------------------------


def test_output_layer_starts_at_zero():
    cfg = unet_config("tiny", 1, 2)
    x, c_noise = inputs(cfg, (8, 8))
    assert torch.equal(UNet(cfg)(x, c_noise), torch.zeros_like(x))


def test_c_noise_scalar_and_out_channels(perturbed):
    cfg = unet_config("tiny", 1, 2, out_channels=2)
    net = perturbed(UNet(cfg))
    x, c_noise = inputs(cfg, (8, 8))
    out = net(x, torch.tensor(500.0))
    assert out.shape == (2, 2, 8, 8)
    assert torch.allclose(out, net(x, torch.full((2,), 500.0)))


def test_cond_hook_changes_output(perturbed):
    cfg = unet_config("tiny", 1, 2, cond_dim=8)
    net = perturbed(UNet(cfg))
    x, c_noise = inputs(cfg, (8, 8))
    cond = torch.randn(2, 8)
    a, b, c = net(x, c_noise), net(x, c_noise, cond), net(x, c_noise, cond + 1)
    assert not torch.allclose(a, b) and not torch.allclose(b, c)


def test_cross_attention_context_changes_output(perturbed):
    cfg = unet_config("tiny", 1, 2, context_dim=12)
    net = perturbed(UNet(cfg))
    x, c_noise = inputs(cfg, (8, 8))
    ctx = torch.randn(2, 5, 12)
    a, b, c = net(x, c_noise), net(x, c_noise, context=ctx), net(x, c_noise, context=ctx * 2)
    assert a.shape == b.shape == x.shape
    assert not torch.allclose(a, b) and not torch.allclose(b, c)


def test_cross_attention_levels_apart_from_self_attention(perturbed):
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
    assert perturbed(net)(x, c_noise, context=torch.randn(2, 4, 8)).shape == x.shape


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


def test_noise_level_changes_output_for_both_ranges(perturbed):
    """Fractional timesteps and continuous log(sigma)/4 levels (with emb_scale) must both be told apart."""
    for scale, c0, c1 in [(1.0, 10.0, 10.5), (170.0, 0.0, 0.01)]:
        cfg = unet_config("tiny", 1, 2, emb_scale=scale)
        net = perturbed(UNet(cfg))
        x, _ = inputs(cfg, (8, 8))
        a, b = net(x, torch.full((2,), c0)), net(x, torch.full((2,), c1))
        assert (a - b).abs().max() > 1e-3 * a.abs().max()


def test_clear_errors():
    with pytest.raises(ValueError, match=r"preset.*allowed.*small.*tiny"):
        unet_config("huge", 1, 2)
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


# ---- video: the factorised space-time layout ----------------------------------------------------------------------

# the zero-initialised output of every layer that mixes frames: temporal convs, temporal attention's projection
TEMPORAL = ("res.time.", "time_attn.proj.")


def test_layout_is_the_3d_default_and_saved():
    cfg = unet_config("small", 1, 3)
    assert cfg.factorised and not unet_config("small", 1, 3, factorised=False).factorised
    assert not unet_config("small", 1, 2).factorised and not unet_config("tiny", 1, 1).factorised
    with pytest.raises(ValueError, match="factorised=True is the space-time layout for video"):
        unet_config("tiny", 1, 2, factorised=True)
    # a run saved before the field existed was a full 3-D net, and must reload as one
    old = cfg.to_dict()
    del old["factorised"]
    assert not UNetConfig.from_dict(old).factorised
    fac, full = UNet(cfg), UNet(unet_config("small", 1, 3, factorised=False))
    assert param_count(fac) < 0.5 * param_count(full)  # 9 + 3 weights per conv pair instead of 27 + 27


def test_time_is_kept_and_space_halved_at_every_level():
    cfg = unet_config("small", 1, 3)
    net = UNet(cfg)
    seen = []
    for m in net.modules():
        if isinstance(m, Downsample):
            m.register_forward_hook(lambda mod, inp, out: seen.append((tuple(inp[0].shape[2:]), tuple(out.shape[2:]))))
    net(*inputs(cfg, (5, 12, 20), B=1))  # H, W padded to multiples of 4; T = 5 never padded
    assert seen == [((5, 12, 20), (5, 6, 10)), ((5, 6, 10), (5, 3, 5))]


def test_untrained_net_treats_frames_alike_and_training_the_temporal_layers_breaks_that(perturbed):
    """Untrained, the temporal layers are the identity: permuting the frames of the input permutes the output
    frames the same way. Once the temporal weights are non-zero (as after training) frame order matters."""
    cfg = unet_config("tiny", 1, 3, cond_dim=4)
    net = UNet(cfg)
    temporal = [p for n, p in net.named_parameters() if any(s in n for s in TEMPORAL)]
    assert temporal and all(torch.count_nonzero(p) == 0 for p in temporal)  # zero-initialised branches
    net = perturbed(net, skip=TEMPORAL)  # train everything else: still no mixing across frames
    x, c = inputs(cfg, (6, 8, 8))
    cond = torch.randn(2, 4)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        out, out_perm = net(x, c, cond), net(x[:, :, perm], c, cond)
        torch.testing.assert_close(out_perm, out[:, :, perm], atol=1e-5, rtol=1e-4)
        assert out.abs().mean() > 1e-2
        trained = perturbed(copy.deepcopy(net), seed=1)  # now the temporal layers too
        out, out_perm = trained(x, c, cond), trained(x[:, :, perm], c, cond)
        assert (out_perm - out[:, :, perm]).abs().max() > 1e-2 * out.abs().max()
