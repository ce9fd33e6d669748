"""Point-cloud pictures (diffusekit.viz.points): points land where the projection says, the shading follows depth,
NaN is skipped, and the PNG / GIF files reopen in Pillow with the right size and frame count."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from diffusekit.viz.grids import CAPTION_H
from diffusekit.viz.points import (MARGIN, cloud_grid, save_cloud_strip, render_cloud, save_cloud_grid,
                                   save_rotating_gif)


def _ink(img):
    """Boolean mask of the non-white pixels of an (H, W, 3) picture."""
    return (np.asarray(img) < 250).any(-1)


def _centre_of_ink(img):
    ys, xs = np.nonzero(_ink(img))
    return xs.mean(), ys.mean()  # pixel indices: pixel k spans [k, k+1), so the picture's centre is size/2 - 0.5


def _cloud(p=300, seed=0):
    """A lopsided cloud: a ring in the x-z plane plus a short stalk along +x, (3, p)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, p)
    ring = np.stack([0.7 * np.cos(t), 0.1 * rng.normal(size=p), 0.4 * np.sin(t)])
    ring[:, : p // 5] = np.stack([np.linspace(0.7, 1.0, p // 5), np.zeros(p // 5), np.zeros(p // 5)])
    return torch.from_numpy(ring.astype(np.float32))


def test_single_points_land_where_expected():
    size = 128
    scale = (size / 2 - MARGIN) / math.sqrt(3)  # px per data unit at the default extent
    img = render_cloud(torch.zeros(3, 1), size=size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    cx, cy = _centre_of_ink(img)
    assert abs(cx - (size / 2 - 0.5)) < 0.5 and abs(cy - (size / 2 - 0.5)) < 0.5
    assert 4 <= _ink(img).sum() <= 16  # a disc of radius 1.5 px, soft-edged: about 7 px
    cases = {  # (point, azim, elev) -> (dx, dy) on screen in data units, dy positive = up
        ((0.5, 0, 0), 0, 0): (0.5, 0), ((0, 0.5, 0), 0, 0): (0, 0.5), ((0, 0, 0.5), 0, 0): (0, 0),
        ((0.5, 0, 0), 90, 0): (0, 0), ((0, 0, 0.5), 90, 0): (-0.5, 0), ((0, 0, 0.5), 0, 90): (0, -0.5),
    }
    for (pt, azim, elev), (dx, dy) in cases.items():
        cx, cy = _centre_of_ink(render_cloud(torch.tensor(pt).view(3, 1), size, azim=azim, elev=elev))
        assert cx == pytest.approx(size / 2 - 0.5 + dx * scale, abs=0.6)
        assert cy == pytest.approx(size / 2 - 0.5 - dy * scale, abs=0.6), (pt, azim, elev)
    z_up = render_cloud(torch.tensor([0.0, 0.0, 0.5]).view(3, 1), size, azim=0, elev=0, up="z")
    assert _centre_of_ink(z_up)[1] == pytest.approx(size / 2 - 0.5 - 0.5 * scale, abs=0.6)
    # the corner (1, 1, -1) seen with the cube's diagonal upright projects sqrt(3) above the centre: the farthest any
    # point of the [-1, 1] cube can land, and still inside the picture (the default extent)
    upright = math.degrees(math.atan(2**0.5))
    corner = render_cloud(torch.tensor([1.0, 1.0, -1.0]).view(3, 1), size, azim=-45, elev=upright)
    cx, cy = _centre_of_ink(corner)
    assert cx == pytest.approx(size / 2 - 0.5, abs=0.6) and cy == pytest.approx(MARGIN - 0.5, abs=0.6)


def test_near_points_are_darker_and_cover_far_ones():
    pts = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.6, -0.6]])  # one in front of the other, seen head-on
    img = render_cloud(pts, azim=0, elev=0)
    front = render_cloud(pts[:, :1], azim=0, elev=0)
    back = render_cloud(pts[:, 1:], azim=0, elev=0)
    assert np.array_equal(img, front)  # the nearer point hides the farther one entirely
    assert front.min() < back.min()  # near is dark, far pale


def test_cloud_is_not_blank_and_changes_with_azimuth():
    c = _cloud()
    a, b = render_cloud(c, azim=0), render_cloud(c, azim=90)
    assert 200 < _ink(a).sum() < 128 * 128 / 2
    assert (a != b).any(-1).sum() > 100


def test_nan_points_are_skipped_and_all_nan_is_blank():
    c = _cloud(50)
    bad = c.clone()
    bad[0, 5], bad[2, 7] = float("nan"), float("inf")
    keep = torch.ones(50, dtype=torch.bool)
    keep[[5, 7]] = False
    assert np.array_equal(render_cloud(bad), render_cloud(c[:, keep]))
    assert (render_cloud(torch.full((3, 20), float("nan"))) == 255).all()
    assert (render_cloud(torch.zeros(3, 0)) == 255).all()
    with pytest.raises(ValueError, match=r"\(3, P\)"):
        render_cloud(torch.zeros(20, 3))


def test_grid_png_size_and_labels(tmp_path):
    clouds = torch.stack([_cloud(seed=s) for s in range(5)])
    path = save_cloud_grid(clouds, tmp_path / "sub" / "grid.png", ncol=3, size=64)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (3 * 66 + 2, 2 * 66 + 2)
        a = np.asarray(im)
    assert _ink(a[2:66, 2:66]).any() and not _ink(a[68:132, 134:198]).any()  # cell 1 drawn, cell 6 empty
    labelled = cloud_grid(clouds[:2], size=64, labels=["chair", "table"])
    assert labelled.size == (2 * 66 + 2, 66 + CAPTION_H + 2)
    assert _ink(np.asarray(labelled)[2 : 2 + CAPTION_H]).any()  # the captions are drawn
    with pytest.raises(ValueError, match="labels"):
        cloud_grid(clouds, labels=["one"])


def test_rotating_gif_frames_and_loop(tmp_path):
    clouds = torch.stack([_cloud(80, seed=s) for s in range(3)])
    path = save_rotating_gif(clouds, tmp_path / "turn.gif", frames=6, size=48, ncol=3, duration_ms=50)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 6 and im.size == (3 * 50 + 2, 50 + 2)
        assert im.info.get("loop") == 0 and im.info.get("duration") == 50
        first = np.asarray(im.convert("RGB"))
        im.seek(3)  # half a turn later
        assert (np.asarray(im.convert("RGB")) != first).any()


def test_process_strip_layout(tmp_path):
    x0 = torch.stack([_cloud(60, seed=s) for s in range(2)])
    g = torch.Generator().manual_seed(0)
    steps = [x0 + s * torch.randn(x0.shape, generator=g) for s in (0.0, 0.3, 1.0)]
    path = save_cloud_strip(steps, tmp_path / "strip.png", titles=["t=0", "t=300", "t=1000"], size=40)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (3 * 42 + 2, CAPTION_H + 2 * 42 + 2)
        a = np.asarray(im)
    assert _ink(a[:CAPTION_H]).any()  # the titles
    assert np.array_equal(a[CAPTION_H + 2 : CAPTION_H + 42, 2:42], render_cloud(x0[0], 40))  # row 0, step 0
    assert np.array_equal(a[CAPTION_H + 44 : CAPTION_H + 84, 2:42], render_cloud(x0[1], 40))  # row 1, step 0
    with Image.open(save_cloud_strip(torch.stack(steps), tmp_path / "plain.png", size=40)) as untitled:
        assert untitled.size == (3 * 42 + 2, 2 * 42 + 2)
    with pytest.raises(ValueError, match="same number of clouds"):
        save_cloud_strip([x0, x0[:1]], tmp_path / "bad.png")


def test_far_off_points_are_off_the_picture():
    far = torch.tensor([[1e30, -1e12, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # a diverged sample's values
    assert np.array_equal(render_cloud(far), render_cloud(far[:, 2:]))


def test_a_cloud_entirely_off_the_canvas_renders_blank():
    from diffusekit.viz.points import render_cloud

    far = torch.full((3, 5), 50.0)  # every point far outside the extent
    assert (render_cloud(far, size=32) == 255).all()
