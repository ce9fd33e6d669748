"""The factorised space-time UNet for video (UNetConfig.factorised; nets/layers.py SpaceConv3d, time_conv,
Attention over "space" / "time").

Shapes with odd T and sizes; T kept at every level; an untrained net is an image net run on every frame (frame
permutations commute with it until the temporal layers are trained); the per-frame conv and the split attentions
against independent plain implementations; JSON round trip; the bf16 / channels_last fast path against fp32.
The generic interface tests (tests/test_nets.py) run over this layout too.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from diffusekit import fast
from diffusekit.nets import UNet, UNetConfig, param_count, unet_config
from diffusekit.nets.layers import Attention, Downsample, SpaceConv3d, space_conv

torch.set_num_threads(1)
needs_bf16 = pytest.mark.skipif(not fast.native_bf16(),
                                reason="CPU lacks native bf16 (AVX512-BF16/AMX): its fast path is fp32")


def perturbed(model, seed=0, skip=()):
    """Add noise to every parameter whose name contains none of `skip`: zero-initialised layers would otherwise
    hide what a trained net does (the output conv alone makes every output exactly 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not any(s in name for s in skip):
                fan_in = p[0].numel() if p.dim() > 1 else 4
                p.add_(torch.randn(p.shape, generator=g) * 0.5 / fan_in**0.5)
    return model


def clip_inputs(B, C, T, H, W, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, C, T, H, W, generator=g), torch.rand(B, generator=g) * 999


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


@pytest.mark.parametrize("preset,shape", [("tiny", (2, 1, 3, 5, 6)), ("tiny", (1, 2, 7, 9, 13)),
                                          ("small", (2, 1, 5, 11, 7)), ("small", (1, 1, 1, 8, 8))])
def test_shapes_odd_frames_and_sizes(preset, shape):
    cfg = unet_config(preset, shape[1], 3, out_channels=3)
    net = perturbed(UNet(cfg))
    x, c = clip_inputs(*shape)
    out = net(x, c)
    assert out.shape == (shape[0], 3, *shape[2:]) and torch.isfinite(out).all() and out.abs().mean() > 0


def test_time_is_kept_and_space_halved_at_every_level():
    net = UNet(unet_config("small", 1, 3))
    seen = []
    for m in net.modules():
        if isinstance(m, Downsample):
            m.register_forward_hook(lambda mod, inp, out: seen.append((tuple(inp[0].shape[2:]), tuple(out.shape[2:]))))
    net(*clip_inputs(1, 1, 5, 12, 20))  # H, W padded to multiples of 4; T = 5 never padded
    assert seen == [((5, 12, 20), (5, 6, 10)), ((5, 6, 10), (5, 3, 5))]


def test_untrained_net_treats_frames_alike_and_training_the_temporal_layers_breaks_that():
    """Untrained, the temporal layers are the identity: permuting the frames of the input permutes the output
    frames the same way. Once the temporal weights are non-zero (as after training) frame order matters."""
    cfg = unet_config("tiny", 1, 3, cond_dim=4)
    net = UNet(cfg)
    temporal = [p for n, p in net.named_parameters() if any(s in n for s in TEMPORAL)]
    assert temporal and all(torch.count_nonzero(p) == 0 for p in temporal)  # zero-initialised branches
    net = perturbed(net, skip=TEMPORAL)  # train everything else: still no mixing across frames
    x, c = clip_inputs(2, 1, 6, 8, 8)
    cond = torch.randn(2, 4)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        out, out_perm = net(x, c, cond), net(x[:, :, perm], c, cond)
        torch.testing.assert_close(out_perm, out[:, :, perm], atol=1e-5, rtol=1e-4)
        assert out.abs().mean() > 1e-2
        trained = perturbed(copy.deepcopy(net), seed=1)  # now the temporal layers too
        out, out_perm = trained(x, c, cond), trained(x[:, :, perm], c, cond)
        assert (out_perm - out[:, :, perm]).abs().max() > 1e-2 * out.abs().max()


def test_space_conv_channels_last_route_matches_conv3d():
    """SpaceConv3d computes channels_last_3d inputs as a Conv2d over frames: the same numbers as the Conv3d it is,
    forward and backward, for 'same' and strided convs."""
    torch.manual_seed(0)
    for stride in (1, 2):
        conv = space_conv(6, 10, stride=stride).double()
        ref = torch.nn.Conv3d(6, 10, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1)).double()
        ref.load_state_dict(conv.state_dict())
        x = torch.randn(2, 6, 5, 9, 7, dtype=torch.float64)
        x_cl = x.to(memory_format=torch.channels_last_3d).requires_grad_()
        conv_cl = conv.to(memory_format=torch.channels_last_3d)
        y, y_ref = conv_cl(x_cl), ref(x.requires_grad_())
        assert y.is_contiguous(memory_format=torch.channels_last_3d)
        torch.testing.assert_close(y, y_ref)
        gy = torch.randn_like(y_ref)
        got = torch.autograd.grad(y, (x_cl, conv_cl.weight, conv_cl.bias), gy)
        want = torch.autograd.grad(y_ref, (x, ref.weight, ref.bias), gy)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
    assert isinstance(space_conv(2, 2), SpaceConv3d)


@pytest.mark.parametrize("over,size", [("space", (4, 5, 6)), ("time", (7, 3, 2)), ("space", (2, 12, 11))])
def test_split_attention_matches_a_per_frame_and_per_pixel_reference(over, size):
    """Attention within each frame / across frames at each pixel, against a loop over frames or pixels that runs
    the reference F.scaled_dot_product_attention on each sequence. (2, 12, 11): 132 tokens per frame, more than
    Attention.SHORT_SEQ, so the flash-kernel path; the others take the short-sequence matmul path."""
    assert 12 * 11 > Attention.SHORT_SEQ >= 5 * 6
    torch.manual_seed(0)
    C = 8
    attn = perturbed(Attention(C, head_dim=4, groups=4, over=over).double())  # 2 heads
    x = torch.randn(2, C, *size, dtype=torch.float64)
    out = attn(x)
    h = attn.norm(x)  # (B, C, T, H, W)
    B, _, T, H, W = h.shape

    def attend(seq):  # (C, N) -> (C, N): one sequence, 2 heads of 4 channels
        q, k, v = attn.qkv(seq.T).view(-1, 3, 2, C // 2).permute(1, 2, 0, 3)  # (2, N, 4) each
        return attn.proj(F.scaled_dot_product_attention(q, k, v).transpose(0, 1).reshape(-1, C)).T

    ref = torch.zeros_like(x)
    for b in range(B):
        if over == "space":  # each frame's H*W pixels
            for t in range(T):
                ref[b, :, t] = attend(h[b, :, t].reshape(C, H * W)).reshape(C, H, W)
        else:  # each pixel's T frames
            for i in range(H):
                for j in range(W):
                    ref[b, :, :, i, j] = attend(h[b, :, :, i, j])
    torch.testing.assert_close(out, x + ref)
    with pytest.raises(ValueError, match="needs video"):
        attn(torch.randn(1, C, 4, 4, dtype=torch.float64))


def test_config_round_trip_rebuilds_the_same_net():
    cfg = unet_config("tiny", 2, 3, cond_dim=3, context_dim=6)
    cfg2 = UNetConfig.from_json(cfg.to_json())
    assert cfg2 == cfg and cfg2.factorised and '"factorised": true' in cfg.to_json()
    net = perturbed(UNet(cfg))
    net2 = UNet(cfg2)
    net2.load_state_dict(net.state_dict())
    x, c = clip_inputs(2, 2, 3, 6, 5)
    args = (x, c, torch.randn(2, 3), torch.randn(2, 4, 6))
    assert torch.equal(net(*args), net2(*args))
    full = UNet(unet_config("tiny", 2, 3, cond_dim=3, context_dim=6, factorised=False))
    with pytest.raises(RuntimeError, match="size mismatch|Missing key|Unexpected key"):
        full.load_state_dict(net.state_dict())  # the two layouts' weights never load into each other


def test_gradient_reaches_every_parameter():
    cfg = unet_config("tiny", 1, 3, cond_dim=4, context_dim=5)
    net = perturbed(UNet(cfg))
    x, c = clip_inputs(2, 1, 4, 8, 8)
    net(x, c, torch.randn(2, 4), torch.randn(2, 3, 5)).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_channels_last_fp32_matches_contiguous():
    cfg = unet_config("small", 1, 3, cond_dim=4)
    net = perturbed(UNet(cfg))
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last_3d)
    x, c = clip_inputs(2, 1, 5, 16, 16)
    cond = torch.randn(2, 4)
    out_cl = net_cl(x, c, cond)
    torch.testing.assert_close(out_cl, net(x, c, cond), atol=1e-5, rtol=1e-4)


@needs_bf16
def test_fast_path_agrees_with_fp32():
    """bf16 autocast + channels_last_3d against plain fp32, outputs and gradients, with attention at two levels
    (spatial attention on both the flash-kernel and the short-sequence path) and cross-attention."""
    cfg = unet_config("small", 1, 3, cond_dim=4, context_dim=8, attn_levels=(1, 2))
    net = perturbed(UNet(cfg))
    fast_net = fast.prepare_model(copy.deepcopy(net), "cpu", 3)
    x, c = clip_inputs(2, 1, 5, 32, 32)  # 16x16 = 256 tokens per frame at level 1, 64 at level 2
    extra = (torch.randn(2, 4), torch.randn(2, 3, 8))
    out = net(x, c, *extra)
    with fast.autocast("cpu", 3):
        out_fast = fast_net(x, c, *extra)
    assert out_fast.dtype == torch.bfloat16 and out_fast.is_contiguous(memory_format=torch.channels_last_3d)
    assert _rel(out_fast, out) < 0.03
    out.square().mean().backward()
    out_fast.float().square().mean().backward()
    for (name, p), q in zip(net.named_parameters(), fast_net.parameters()):
        assert q.grad.dtype == torch.float32 and torch.isfinite(q.grad).all(), name
        assert _rel(q.grad, p.grad) < 0.1, name
