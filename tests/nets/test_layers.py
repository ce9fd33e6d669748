"""The UNet's layers (diffusekit/nets/layers.py) against independent plain implementations: the per-frame conv of
video nets (SpaceConv3d) against Conv3d, attention split over space / time against per-frame and per-pixel loops,
the short-sequence attention path against PyTorch's scaled_dot_product_attention, and the bf16 conv workaround for
tiny inputs."""

import pytest
import torch
import torch.nn.functional as F

from diffusekit import fast
from diffusekit.nets.layers import Attention, SpaceConv3d, space_conv

needs_bf16 = pytest.mark.skipif(not fast.native_bf16(),
                                reason="CPU lacks native bf16 (AVX512-BF16/AMX): its fast path is fp32")


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
def test_split_attention_matches_a_per_frame_and_per_pixel_reference(perturbed, over, size):
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


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


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
