"""Image folders (diffusekit.data.folder), built in tmp_path: mixed formats and modes, cropping and resizing, alpha,
corrupt files, subfolder labels."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from diffusekit.data import DataError, load_data


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
