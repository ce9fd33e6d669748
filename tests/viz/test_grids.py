"""diffusekit.viz: files written, re-opened with Pillow, checked for size and exact pixel values."""

import numpy as np
import pytest
import torch
from PIL import Image

from diffusekit.viz.draw import caption
from diffusekit.viz.grids import CAPTION_H, image_grid, process_strip, save_gif, save_grid, save_strip, to_uint8


def _known(b, c, h, w, seed=0):
    """Images whose values lie on the uint8 grid, so [-1, 1] -> uint8 is exact: returns (x, uint8 (B, H, W, C))."""
    v = np.random.default_rng(seed).integers(0, 256, (b, h, w, c), dtype=np.uint8)
    x = torch.from_numpy(v).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x, v


def test_to_uint8_values_clamp_and_nan():
    x = torch.tensor([-1.0, 0.0, 1.0, -3.0, 3.0, float("nan"), 1 / 127.5 - 1]).view(1, 1, 1, 7)
    assert to_uint8(x).ravel().tolist() == [0, 128, 255, 0, 255, 128, 1]  # 0 -> 127.5 rounds to even 128
    assert to_uint8(torch.zeros(2, 3, 4, 5)).shape == (2, 4, 5, 3)


def test_grid_png_round_trip(tmp_path):
    x, v = _known(5, 1, 6, 7)
    path = save_grid(x, tmp_path / "sub" / "grid.png", nrow=3, pad=2, upscale=1)
    im = Image.open(path)
    assert im.mode == "L" and im.size == (3 * (7 + 2) + 2, 2 * (6 + 2) + 2)  # (W, H)
    a = np.asarray(im)
    for k in range(5):
        r, q = divmod(k, 3)
        y0, x0 = 2 + r * 8, 2 + q * 9
        assert np.array_equal(a[y0 : y0 + 6, x0 : x0 + 7], v[k, ..., 0])
    assert (a[:2] == 255).all() and (a[:, :2] == 255).all()  # white padding
    assert (a[10:16, 20:27] == 255).all()  # the empty sixth cell


def test_grid_rgb_and_upscale(tmp_path):
    x, v = _known(4, 3, 8, 8, seed=1)
    img = image_grid(x, nrow=2, pad=0, upscale=3)
    assert img.mode == "RGB" and img.size == (48, 48)
    a = np.asarray(img)
    assert np.array_equal(a[:24:3, :24:3], v[0]) and np.array_equal(a[24::3, 24::3], v[3])
    assert np.array_equal(a[1:24:3, 2:24:3], v[0])  # nearest: every pixel of a 3x3 block is the same
    path = save_grid(x, tmp_path / "auto.png")  # default upscale: at least 256 px wide
    w, h = Image.open(path).size
    assert 256 <= w < 256 + 2 * 8 + 4 and w == h


def test_bad_channels_or_rank_raise():
    for shape in ((2, 2, 8, 8), (2, 4, 8, 8), (2, 1, 8), (2, 1, 2, 8, 8)):
        with pytest.raises(ValueError):
            image_grid(torch.zeros(shape))
    with pytest.raises(ValueError, match="channels"):
        process_strip(torch.zeros(3, 1, 4, 8, 8))


def test_process_strip_size_and_pixels(tmp_path):
    x, v = _known(4, 1, 8, 8, seed=2)
    steps = [x[i : i + 1] for i in range(4)]  # forward strip: one row
    img = process_strip(steps, labels=["t=0", "t=250", "t=500", "t=1000"], pad=2, upscale=6)
    assert img.size == (4 * (48 + 2) + 2, CAPTION_H + 48 + 2 + 2)
    a = np.asarray(img)
    top = CAPTION_H + 2
    assert np.array_equal(a[top : top + 48 : 6, 2 + 50 : 2 + 50 + 48 : 6], v[1, ..., 0])
    assert (a[:CAPTION_H] < 128).any()  # some caption text was drawn
    plain = process_strip(torch.stack(steps), pad=2, upscale=6)  # the stacked tensor; no captions, no band
    assert plain.size == (4 * 50 + 2, 50 + 2)
    assert np.array_equal(np.asarray(plain), a[CAPTION_H:])


def test_reverse_strip_two_rows_with_row_labels(tmp_path):
    x_t, _ = _known(3, 3, 8, 8, seed=3)
    x0_hat, _ = _known(3, 3, 8, 8, seed=4)
    rows = [torch.stack([x_t[j], x0_hat[j]]) for j in range(3)]  # each step: (2, C, H, W)
    path = save_strip(rows, tmp_path / "rev.png", labels=["σ=80", "σ=1.2", "σ=0.01"], row_labels=["x_t", "x0_hat"])
    img = Image.open(path)
    cell = img.size[1] - CAPTION_H - 2  # two rows of (H*s + pad)
    assert img.mode == "RGB" and cell % 2 == 0 and (cell // 2 - 2) % 8 == 0 and cell // 2 - 2 >= 48
    assert img.size[0] > 3 * (cell // 2) + 2  # a left margin for the row labels
    assert caption("σ=1.2") == "sigma=1.2"  # the default font has no σ: spelled out, never a box
    with pytest.raises(ValueError, match="one caption per step"):
        process_strip(rows, labels=["a"])


def test_gif_frames_and_hold(tmp_path):
    frames = torch.stack([_known(4, 1, 8, 8, seed=s)[0] for s in range(5)])  # (T, B, C, H, W)
    path = save_gif(frames, tmp_path / "anim.gif", duration_ms=80, hold_last_ms=1000, nrow=2, upscale=2)
    im = Image.open(path)
    assert im.n_frames == 5 and im.size == (2 * (16 + 2) + 2,) * 2
    durations = []
    for k in range(im.n_frames):
        im.seek(k)
        durations.append(im.info["duration"])
    assert durations == [80, 80, 80, 80, 1000]
    im.seek(0)
    first = np.asarray(im.convert("L"))
    _, v = _known(4, 1, 8, 8, seed=0)
    assert np.array_equal(first[2:18:2, 2:18:2], v[0, ..., 0])  # grayscale GIF keeps exact values
    pil_frames = [image_grid(f) for f in frames[:3]]
    assert Image.open(save_gif(pil_frames, tmp_path / "b.gif")).n_frames == 3
