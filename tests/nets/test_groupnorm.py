"""The fused GroupNorm + FiLM + SiLU (nets.layers.GroupNormAct) against PyTorch's own GroupNorm (an independent
implementation), forward and backward, in both memory formats, by gradcheck, and in bf16 channels_last."""

import pytest
import torch
import torch.nn.functional as F

from diffusekit.nets.layers import GroupNormAct


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
