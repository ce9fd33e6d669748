"""The CPU fast path's pieces besides the network (diffusekit.fast), by what they do: the fused AdamW step is
AdamW's step, and the allocator environment is recognised once set (so the CLI re-executes itself only once). The
fast path's numbers on the UNet (bf16 autocast and channels_last against fp32) are in tests/nets/test_unet.py."""

import copy

import torch

from diffusekit import fast


def test_adamw_steps_like_the_reference_adamw():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.SiLU(), torch.nn.Linear(16, 4))
    ref, start = copy.deepcopy(net), copy.deepcopy(net)
    opt = fast.adamw(net.parameters(), lr=1e-2, weight_decay=0.1)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)  # the plain loop
    x = torch.randn(32, 8)
    for _ in range(5):
        for model, o in ((net, opt), (ref, ref_opt)):
            o.zero_grad()
            model(x).square().mean().backward()
            o.step()
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q)
    assert not torch.equal(net[0].weight, start[0].weight)  # and the steps did move the weights


def test_allocator_environment_is_recognised(monkeypatch):
    env = fast.allocator_env()
    for k in env:
        monkeypatch.delenv(k, raising=False)
    assert not fast.allocator_configured()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert fast.allocator_configured()
