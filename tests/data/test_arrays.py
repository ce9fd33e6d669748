"""Array files (diffusekit.data.arrays), built in tmp_path: .npy of 1-D, 2-D and 3-D data, .npz keys and labels,
and the errors that name the file."""

import numpy as np
import pytest
import torch

from diffusekit.data import DataError, load_data


def test_npy_shapes_1d_2d_3d(tmp_path):
    rng = np.random.default_rng(0)
    sig = rng.uniform(-1, 1, (5, 2, 64)).astype(np.float32)  # (N, C, L), already in [-1, 1]
    np.save(tmp_path / "sig.npy", sig)
    ds = load_data(str(tmp_path / "sig.npy"))
    assert ds.x.shape == (5, 2, 64) and torch.equal(ds.x, torch.from_numpy(sig)) and ds.labels is None

    img = rng.integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)  # (N, C, H, W) uint8
    np.save(tmp_path / "img.npy", img)
    ds = load_data(str(tmp_path / "img.npy"))
    assert ds.x.shape == (4, 3, 8, 8)
    assert torch.allclose(ds.x, torch.from_numpy(img).float() / 127.5 - 1)
    assert np.array_equal(ds.to_uint8(), img.transpose(0, 2, 3, 1))  # round trip

    vid = rng.uniform(0, 1, (2, 1, 3, 4, 4))  # (N, C, T, H, W) float64 in [0, 1]
    np.save(tmp_path / "vid.npy", vid)
    ds = load_data(str(tmp_path / "vid.npy"))
    assert ds.x.shape == (2, 1, 3, 4, 4) and ds.x.dtype == torch.float32
    assert torch.allclose(ds.x, torch.from_numpy(2 * vid - 1).float())

    other = rng.normal(5, 3, (3, 1, 16))  # outside [-1, 1]: min/max over the whole array
    np.save(tmp_path / "other.npy", other)
    ds = load_data(str(tmp_path / "other.npy"))
    assert float(ds.x.min()) == -1 and float(ds.x.max()) == 1 and "min/max" in ds.notes[0]


def test_npz_keys_and_labels(tmp_path):
    x = np.zeros((6, 1, 4, 4), np.uint8)
    np.savez(tmp_path / "a.npz", x=x, labels=np.array([0, 1, 2, 0, 1, 2]))
    ds = load_data(str(tmp_path / "a.npz"))
    assert ds.labels.tolist() == [0, 1, 2, 0, 1, 2] and ds.num_classes == 3
    np.savez(tmp_path / "b.npz", images=x, y=np.arange(6.0))  # integer-valued float labels are accepted
    assert load_data(str(tmp_path / "b.npz")).labels.dtype == torch.int64
    np.savez(tmp_path / "c.npz", data=x)  # the single array
    assert load_data(str(tmp_path / "c.npz")).x.shape == (6, 1, 4, 4)
    np.savez(tmp_path / "d.npz", a=x, b=x)
    with pytest.raises(DataError, match=r"d\.npz.*keys are \['a', 'b'\]"):
        load_data(str(tmp_path / "d.npz"))
    np.savez(tmp_path / "e.npz", x=x, labels=np.arange(5))
    with pytest.raises(DataError, match=r"e\.npz.*labels have shape \(5,\); expected \(6,\)"):
        load_data(str(tmp_path / "e.npz"))


def test_array_errors_name_the_file(tmp_path):
    bad = np.zeros((3, 1, 8))
    bad[1, 0, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match=r"nan\.npy.*1 NaN"):
        load_data(str(tmp_path / "nan.npy"))
    bad[1, 0, 2] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    with pytest.raises(DataError, match=r"inf\.npy.*1 inf"):
        load_data(str(tmp_path / "inf.npy"))
    np.save(tmp_path / "flat.npy", np.zeros((10, 64)))
    with pytest.raises(DataError, match=r"flat\.npy.*shape \(10, 64\) \(rank 2\).*\(N, C, \*spatial\)"):
        load_data(str(tmp_path / "flat.npy"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj\.npy.*pickle"):
        load_data(str(tmp_path / "obj.npy"))
    (tmp_path / "fake.npz").write_bytes(b"PK not a zip")
    with pytest.raises(DataError, match=r"fake\.npz"):
        load_data(str(tmp_path / "fake.npz"))


def test_array_image_size_needs_2d(tmp_path):
    np.save(tmp_path / "sig.npy", np.zeros((2, 1, 32), np.float32))
    with pytest.raises(DataError, match=r"sig.*image_size applies to 2-D images"):
        load_data(str(tmp_path / "sig.npy"), image_size=16)
    with pytest.raises(DataError, match="channels must be 1"):
        load_data("digits", channels=4)
