"""The procedural `phantoms` data set and the Shepp-Logan test image."""

import sys

import numpy as np
import pytest
import torch

from diffusekit.data import InMemoryDataset
from diffusekit.data import phantoms as ph
from diffusekit.data.dataset import DataError


def test_shape_range_dtype():
    x = ph.make_phantoms(50, 32, seed=0)
    assert x.shape == (50, 1, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    assert float(x.min()) == -1.0 and float(x.max()) <= 1.0
    assert float(x[:, 0, 0, 0].max()) == -1.0, "background (outside the head) is -1"
    assert (x.flatten(1).std(1) > 0.1).all(), "every image has structure"
    assert len({tuple(v.flatten().tolist()) for v in x}) == 50, "all different"


def test_deterministic_for_a_seed_and_prefix_stable():
    a = ph.make_phantoms(20, 24, seed=7)
    assert torch.equal(a, ph.make_phantoms(20, 24, seed=7))
    assert torch.equal(a[:5], ph.make_phantoms(5, 24, seed=7)), "image i depends on (seed, i) only"
    assert torch.equal(a, ph.make_phantoms(20, 24, seed=7, chunk=3)), "chunking changes nothing"
    assert not torch.equal(a, ph.make_phantoms(20, 24, seed=8))


def test_ellipse_parameters_follow_the_recipe():
    draws = np.random.default_rng(0).random((500, ph._DRAWS))
    params = np.stack([ph._ellipse_params(u) for u in draws])  # (500, 12, 6)
    assert (params[:, 0, 5] == 1).all(), "skull intensity 1"
    assert ((params[:, 1, 5] >= -0.9) & (params[:, 1, 5] <= -0.7)).all(), "brain level 0.1-0.3"
    counts = (params[:, 2:, 5] != 0).sum(1)
    assert counts.min() == 5 and counts.max() == 10, "5-10 interior ellipses"
    inner = params[:, 2:][params[:, 2:, 5] != 0]
    assert ((np.abs(inner[:, 5]) >= 0.05) & (np.abs(inner[:, 5]) <= 0.35)).all()
    assert ((inner[:, 2:4] >= 0.025) & (inner[:, 2:4] <= 0.3)).all()
    assert (np.hypot(inner[:, 0], inner[:, 1]) < 0.95).all(), "centres inside the head"


def test_builtin_loader():
    ds = ph.load_phantoms()
    assert isinstance(ds, InMemoryDataset) and ds.name == "phantoms" and ds.labels is None
    assert ds.x.shape == (2000, 1, 64, 64)
    assert torch.equal(ds.x[:3], ph.make_phantoms(3, 64, seed=0))
    from diffusekit.data import builtin

    if "phantoms" in builtin.REGISTRY:  # registered by the lead in diffusekit/data/builtin.py
        from diffusekit.data import load_data

        assert torch.equal(load_data("phantoms").x[:3], ds.x[:3])


def test_shepp_logan_matches_scikit_image():
    skdata = pytest.importorskip("skimage.data")
    ref = torch.from_numpy(skdata.shepp_logan_phantom()).float()
    full = ph.shepp_logan(400)
    assert full.shape == (1, 1, 400, 400) and torch.allclose(full[0, 0], 2 * ref - 1, atol=1e-6)
    small = ph.shepp_logan(64)
    assert small.shape == (1, 1, 64, 64) and small.dtype == torch.float32
    assert float(small.min()) >= -1 and float(small.max()) <= 1
    # area resizing averages: the mean stays (up to the uneven 400 / 64 windows)
    assert abs(float(small.mean()) - float(full.mean())) < 2e-3
    # never in the training set: far from every training phantom
    train = ph.make_phantoms(2000, 64, seed=0)
    assert float((train - small).pow(2).flatten(1).mean(1).min()) > 0.01


def test_shepp_logan_without_scikit_image(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.data", None)  # makes the import fail
    with pytest.raises(DataError, match="pip install scikit-image"):
        ph.shepp_logan(64)
