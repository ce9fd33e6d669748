"""Video data (diffusekit.data.video): moving-digits against a step-by-step simulation, and a user's folder of clips.
(`mnist5k`, the source digits, is a session fixture in tests/conftest.py.)"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from diffusekit.data import DataError
from diffusekit.data.video import make_moving_digits


# ---- moving digits --------------------------------------------------------------------------------------------


def test_moving_digits_deterministic_shape_range(mnist5k):
    a = make_moving_digits(64, seed=0, digits=mnist5k)
    b = make_moving_digits(64, seed=0, digits=mnist5k)
    c = make_moving_digits(64, seed=1, digits=mnist5k)
    assert torch.equal(a.x, b.x) and all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    assert not torch.equal(a.x, c.x)
    assert a.x.shape == (64, 1, 8, 32, 32) and a.x.dtype == torch.float32
    assert float(a.x.min()) == -1.0 and float(a.x.max()) <= 1.0 and float(a.x.max()) > 0.9
    assert a.labels is None and set(a.params["n_digits"].tolist()) == {1, 2}
    assert ((a.params["digits"][:, 1] == -1) == (a.params["n_digits"] == 1)).all()
    pos = a.params["position"]
    assert float(pos.min()) >= 0 and float(pos.max()) <= 16  # the digit box never leaves the frame
    long = make_moving_digits(8, seed=0, frames=16, digits=mnist5k)
    assert long.x.shape == (8, 1, 16, 32, 32)
    with pytest.raises(DataError, match="frames >= 2"):
        make_moving_digits(4, frames=1, digits=mnist5k)


def test_moving_digits_match_a_step_by_step_simulation(mnist5k):
    """Independent oracle: move each digit frame by frame, reversing a velocity component at each wall, and paste
    the shrunk source digit at the rounded position."""
    ds = make_moving_digits(40, seed=7, frames=12, num_digits=(1, 1), digits=mnist5k)
    assert torch.equal(ds.labels, mnist5k.labels[ds.params["source_index"][:, 0]])  # one digit: labels = its class
    assert ds.class_names == mnist5k.class_names
    glyphs = F.interpolate((mnist5k.x + 1) / 2, size=(16, 16), mode="bilinear", antialias=True,
                           align_corners=False).clamp(0, 1)[:, 0]
    for i in range(len(ds)):
        p = ds.params["position"][i, 0, 0].double().clone()
        v = ds.params["velocity"][i, 0].double().clone()
        g = glyphs[ds.params["source_index"][i, 0]]
        for t in range(12):
            assert torch.allclose(ds.params["position"][i, t, 0].double(), p, atol=1e-4), (i, t)
            frame = torch.zeros(32, 32)
            y, x = (int(round(float(q))) for q in ds.params["position"][i, t, 0])
            frame[y : y + 16, x : x + 16] = g
            assert torch.allclose(ds.x[i, 0, t], frame * 2 - 1, atol=1e-6)
            p = p + v
            for d in range(2):  # bounce off the walls at 0 and 32 - 16
                if p[d] < 0:
                    p[d], v[d] = -p[d], -v[d]
                elif p[d] > 16:
                    p[d], v[d] = 32 - p[d], -v[d]


def test_two_digits_combine_by_max(mnist5k):
    ds = make_moving_digits(20, seed=3, num_digits=(2, 2), digits=mnist5k)
    one = ds.params["digits"]
    assert (one >= 0).all() and ds.labels is None
    u = (ds.x + 1) / 2
    assert float(u.max()) <= 1 and float(u.sum(dim=(-1, -2)).min()) > 0  # every frame shows something


# ---- a user's folder of clips ------------------------------------------------------------------------------


def _gif(path, frames):
    """frames (T, H, W) or (T, H, W, 3) uint8 -> an animated GIF, every frame kept (no optimisation)."""
    ims = [Image.fromarray(f) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=100, loop=0, optimize=False, disposal=1)


def test_clip_folder_reads_gifs_exactly_with_labels(tmp_path):
    from diffusekit.data import load_data

    rng = np.random.default_rng(0)
    levels = np.array([0, 51, 102, 153, 204, 255], np.uint8)  # gray levels a GIF palette keeps exactly
    truth = {}
    for cls in ("left", "right"):
        for i in range(2):
            clip = levels[rng.integers(0, len(levels), (6, 12, 10))]
            _gif(tmp_path / cls / f"{i}.gif", clip)
            truth[(cls, i)] = clip
    ds = load_data(tmp_path)
    assert ds.x.shape == (4, 1, 6, 12, 10) and ds.class_names == ["left", "right"]
    assert ds.labels.tolist() == [0, 0, 1, 1]
    for k, key in enumerate(sorted(truth)):
        assert torch.equal(ds.x[k, 0], torch.from_numpy(truth[key]).float() / 127.5 - 1)
    rgb = np.zeros((4, 8, 8, 3), np.uint8)
    rgb[..., 0] = np.array([255, 204, 153, 102], np.uint8)[:, None, None]  # red frames (distinct: a GIF writer
    _gif(tmp_path / "rgb" / "a.gif", rgb)                                   # merges repeated frames) stay RGB
    _gif(tmp_path / "rgb" / "b.gif", rgb[..., ::-1].copy())
    two = load_data(tmp_path / "rgb")
    assert two.x.shape == (2, 3, 4, 8, 8) and two.x[0, 0, 0].eq(1).all() and two.x[1, 2, 0].eq(1).all()
    assert two.x[0, 1:].eq(-1).all() and two.x[1, :2].eq(-1).all()


def test_clip_folder_bad_input_says_what_to_do(tmp_path):
    from diffusekit.data import DataError, load_data
    from diffusekit.data.video import load_clip_folder

    rng = np.random.default_rng(1)
    for name, t in (("a.gif", 8), ("b.gif", 8), ("c.gif", 5)):
        _gif(tmp_path / "clips" / name, rng.integers(0, 255, (t, 8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match=r"different lengths \(8 frames \(2 files, e\.g\. a\.gif\), 5 frames "
                                        r"\(1 file: c\.gif\)\); pass fit='crop'"):
        load_data(tmp_path / "clips")
    cropped = load_clip_folder(tmp_path / "clips", fit="crop")
    assert cropped.x.shape == (3, 1, 5, 8, 8) and "cropped to their first 5 frames" in cropped.notes[0]
    _gif(tmp_path / "sizes" / "a.gif", rng.integers(0, 255, (3, 8, 8), dtype=np.uint8))
    _gif(tmp_path / "sizes" / "b.gif", rng.integers(0, 255, (3, 8, 9), dtype=np.uint8))
    with pytest.raises(DataError, match="different frame sizes .*resize them"):
        load_data(tmp_path / "sizes")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.gif").write_bytes(b"GIF89a not really")
    with pytest.raises(DataError, match="x.gif: not a readable GIF"):
        load_data(tmp_path / "broken")
