"""Pictures of signals, fields and clips (diffusekit.viz.signals, to be diffusekit/viz/signals.py): waveform and
spectrogram PNGs, clip GIFs and strips, and the picture chosen by the data's shape."""

import numpy as np
import pytest
import torch
from PIL import Image

from diffusekit.data.fields import make_grf
from diffusekit.data.signals import make_waves
from diffusekit.data.video import make_moving_digits
from diffusekit.viz.signals import save_clip_gif, save_clip_strip, save_spectrograms, save_waveforms, spectrogram_db

RATE = 16_000


# ---- signals ----------------------------------------------------------------------------------------------------


def test_waveform_png(tmp_path):
    x = make_waves(10, seed=0).x
    path = save_waveforms(x, tmp_path / "w.png")  # 10 signals: 2 columns of 5 rows (<= 8 rows)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (2 * 258 + 2, 5 * 66 + 2)
        a = np.asarray(im)
    assert (a != 255).any(axis=2).mean() > 0.05  # something is drawn
    one = save_waveforms(torch.zeros(40), tmp_path / "z.png", width=100, height=30)  # (L,) -> one panel
    with Image.open(one) as im:
        assert im.size == (104, 34)
        column = np.asarray(im)[2:32, 2 + 50]  # a zero signal is drawn on the zero line, y = 14.5
    drawn = np.flatnonzero((column != 255).any(-1))
    line = set(drawn.tolist()) - {0, 29}  # rows 0 and 29 are the panel's border
    assert line and line <= {14, 15}


def test_spectrogram_png_and_peak(tmp_path):
    t = np.arange(2048) / RATE
    x = torch.from_numpy(np.sin(2 * np.pi * 1000 * t)[None, None])  # full-scale 1 kHz sine
    db = spectrogram_db(x)  # n_fft 256, hop 64, no padding: 1 + (2048 - 256) // 64 frames
    assert db.shape == (1, 129, 29)
    peak_bin = db[0].mean(-1).argmax().item()
    assert peak_bin == 16 and abs(float(db[0, 16].mean())) < 0.1  # 1000 Hz = bin 16 of 62.5 Hz, at 0 dB
    path = save_spectrograms(torch.cat([x, 0.01 * x]), tmp_path / "s.png", rate=RATE, ncol=2)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (2 * 258 + 2, 130 + 2)
        a = np.asarray(im).astype(int)
    row = 2 + round((128 - 1) * (1 - 16.5 / 129))  # the 1 kHz row, counted from the top of the first panel
    assert a[row, 100].sum() > a[row, 258 + 100].sum() > a[row - 30, 100].sum()  # loud > quiet > silence


def test_clip_gif_and_strip(tmp_path, mnist5k):
    ds = make_moving_digits(6, seed=0, frames=10, digits=mnist5k)
    path = save_clip_gif(ds.x, tmp_path / "clips.gif", nrow=3, upscale=2)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 10
        assert im.size == (3 * (64 + 2) + 2, 2 * (64 + 2) + 2)  # viz grid: ncol * (W*s + pad) + pad
        frames = []
        for t in range(im.n_frames):
            im.seek(t)
            frames.append(np.asarray(im.convert("L")).copy())
            assert im.info.get("duration") == 120
    assert not np.array_equal(frames[0], frames[5])  # the digits move
    strip = save_clip_strip(ds.x[0], tmp_path / "strip.png", upscale=2)  # one clip (C, T, H, W)
    with Image.open(strip) as im:
        assert im.format == "PNG" and im.size[0] == 10 * (64 + 2) + 2 and im.size[1] == 14 + 64 + 2 + 2
    rows = save_clip_strip(ds.x[:3], tmp_path / "rows.png", upscale=2, captions=False)
    with Image.open(rows) as im:
        assert im.size == (10 * 66 + 2, 3 * 66 + 2)
    with pytest.raises(ValueError, match=r"expected clips \(B, C, T, H, W\)"):
        save_clip_gif(torch.zeros(2, 2, 3, 8, 8), tmp_path / "x.gif")


def test_save_samples_picks_the_picture_by_shape(tmp_path, mnist5k):
    from diffusekit.viz.signals import save_samples

    clips = make_moving_digits(3, seed=0, digits=mnist5k).x
    with Image.open(save_samples(clips, tmp_path / "v.gif")) as im:
        assert im.format == "GIF" and im.n_frames == 8
    with Image.open(save_samples(clips, tmp_path / "v.png")) as im:
        assert im.format == "PNG" and im.size[1] > im.size[0] / 8 * 2  # 3 rows of 8 frames
    with Image.open(save_samples(make_grf(4).x, tmp_path / "f.png")) as im:
        assert im.format == "PNG"
    save_samples(torch.zeros(2, 1, 512), tmp_path / "s.png", rate=8000)
    assert (tmp_path / "s.png").is_file() and (tmp_path / "s-spectrogram.png").is_file()
