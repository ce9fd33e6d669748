"""The point-cloud network: permutation equivariance, conditioning, configs that round-trip, and what a run.json
keeps of it."""

import pytest
import torch

from diffusekit.conditioning import LabelConditioned
from diffusekit.nets import POINT_PRESETS, PointNetConfig, PointTransformer, build, config_from_info, net_record
from diffusekit.nets import param_count, point_config


def _perturbed(net, seed=0):
    """Zero-initialised gates and outputs make a fresh net a constant 0: give every weight a random nudge so the
    tests see a generic network."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval()


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_permuting_the_points_permutes_the_output(preset):
    torch.manual_seed(0)
    net = _perturbed(PointTransformer(point_config(preset, cond_dim=8)))
    x, t, c = torch.randn(3, 3, 200), torch.tensor([0.0, 400.0, 999.0]), torch.randn(3, 8)
    perm = torch.randperm(200)
    y = net(x, t, c)
    assert y.shape == x.shape and y.abs().mean() > 1e-3  # a real function of the input, not a constant
    assert torch.allclose(net(x[:, :, perm], t, c), y[:, :, perm], atol=1e-5)


def test_clouds_are_independent_within_a_batch_and_the_point_count_is_free():
    torch.manual_seed(1)
    net = _perturbed(PointTransformer(point_config("tiny")))
    x, t = torch.randn(4, 3, 64), torch.full((4,), 500.0)
    assert torch.allclose(net(x, t)[1:2], net(x[1:2], t[1:2]), atol=1e-5)
    assert net(torch.randn(2, 3, 333), t[:2]).shape == (2, 3, 333)


def test_a_fresh_network_predicts_zero_and_every_input_matters():
    net = PointTransformer(point_config("tiny", cond_dim=4)).eval()
    assert torch.equal(net(torch.randn(2, 3, 50), torch.ones(2)), torch.zeros(2, 3, 50))  # adaLN-Zero start
    net = _perturbed(net)
    x, t, c = torch.randn(2, 3, 50), torch.full((2,), 300.0), torch.randn(2, 4)
    y = net(x, t, c)
    for other in (net(x, t + 200, c), net(x, t, c + 1), net(x + 0.1, t, c)):
        assert (other - y).abs().max() > 1e-3


def test_label_conditioning_wraps_it_like_the_unet():
    torch.manual_seed(2)
    net = LabelConditioned(PointTransformer(point_config("tiny", cond_dim=16)), num_classes=5, cond_dim=16)
    _perturbed(net)
    x, t = torch.randn(2, 3, 40), torch.full((2,), 100.0)
    a, b = net(x, t, torch.tensor([0, 0])), net(x, t, torch.tensor([3, 3]))
    assert (a - b).abs().max() > 1e-3 and net(x, t).shape == x.shape  # None: the null label


def test_config_round_trips_through_run_json_and_rejects_nonsense():
    cfg = point_config("small", cond_dim=128)
    rec = net_record(cfg)
    assert rec["arch"] == "points" and config_from_info(rec) == cfg
    assert isinstance(build(cfg), PointTransformer)
    with pytest.raises(ValueError, match="heads"):
        PointNetConfig(width=30, heads=4)
    with pytest.raises(ValueError, match="unknown PointNetConfig"):
        PointNetConfig.from_dict({"width": 32, "colour": 1})
    with pytest.raises(ValueError, match="unknown network architecture"):
        config_from_info({"arch": "hypernet", "net": {}})
    with pytest.raises(ValueError, match="expected clouds"):
        PointTransformer(cfg)(torch.randn(1, 1, 8, 8), torch.ones(1))


def test_preset_sizes():
    # the figures in POINT_PRESETS' comments, for 3 coordinates and no conditioning
    counts = {name: param_count(PointTransformer(point_config(name))) for name in POINT_PRESETS}
    assert counts == {"tiny": 43_683, "small": 1_276_291, "base": 9_877_251}
