"""1-D signals (diffusekit.data.signals): WAV folders and windows, signal arrays, the waves and mnist1d data sets."""

import random

import numpy as np
import pytest
import torch

from diffusekit.data.wav import WavError, read_wav, write_wav
from diffusekit.data import DataError
from diffusekit.data.signals import (GeneratedDataset, is_wav_folder, load_mnist1d, load_signals, load_wav_folder,
                                     make_waves)


RATE = 16_000


def _on_grid(shape, bits, seed=0):
    """Random samples that are exactly representable in `bits`-bit PCM: v / 2^(bits-1), v over the whole range."""
    full = 2 ** (bits - 1)
    v = np.random.default_rng(seed).integers(-full, full, size=shape)
    v.flat[:2] = (-full, full - 1)  # both extremes
    return v / full


# ---- WAV folders, windows and arrays --------------------------------------------------------------------------


def test_wav_folder_with_classes(tmp_path):
    for cls in ("dog", "cat"):
        for i in range(3):
            write_wav(tmp_path / cls / f"{i}.wav", _on_grid((1, 512), 16, seed=i + 10 * len(cls)), 8000)
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    assert is_wav_folder(tmp_path)
    ds = load_signals(tmp_path)
    assert isinstance(ds, GeneratedDataset) and ds.x.shape == (6, 1, 512) and ds.rate == 8000
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(ds.x[3], torch.from_numpy(read_wav(tmp_path / "dog" / "0.wav")[0]))  # sorted by path


def test_wav_folder_unequal_lengths_error_or_explicit_fit(tmp_path):
    for i, n in enumerate([1000, 1000, 1000, 640]):
        write_wav(tmp_path / f"{i}.wav", np.full((2, n), 0.5), RATE)
    with pytest.raises(DataError, match=r"different lengths \(1000 samples \(3 files, e\.g\. 0\.wav\), "
                                        r"640 samples \(1 file: 3\.wav\)\).*fit='crop'.*fit='pad'"):
        load_signals(tmp_path)
    crop = load_wav_folder(tmp_path, fit="crop")
    assert crop.x.shape == (4, 2, 640) and "3 clips cropped to 640 samples" in crop.notes
    pad = load_wav_folder(tmp_path, fit="pad")
    assert pad.x.shape == (4, 2, 1000) and float(pad.x[3, :, 640:].abs().max()) == 0 and pad.x[3, 0, 639] == 0.5
    assert pad.params["length"].tolist() == [1000, 1000, 1000, 640]


def test_wav_folder_rates_and_channels_must_agree(tmp_path):
    write_wav(tmp_path / "a.wav", np.zeros((1, 100)), 8000)
    write_wav(tmp_path / "b.wav", np.full((2, 100), 0.5), 8000)
    with pytest.raises(DataError, match=r"different channel counts .*channels=1"):
        load_signals(tmp_path)
    mono = load_wav_folder(tmp_path, channels=1)
    assert mono.x.shape == (2, 1, 100) and float(mono.x[1].mean()) == 0.5
    write_wav(tmp_path / "c.wav", np.zeros((1, 100)), 16000)
    with pytest.raises(DataError, match=r"different sample rates \(8000 Hz \(2 files.*16000 Hz \(1 file: c\.wav\)"):
        load_wav_folder(tmp_path, channels=1)
    (tmp_path / "c.wav").write_bytes(b"RIFF....WAVEjunk")  # a bad file inside a folder is an error naming it
    with pytest.raises(WavError, match=r"c\.wav"):
        load_wav_folder(tmp_path, channels=1)


def test_one_wav_cut_into_windows(tmp_path):
    x = _on_grid((2, 10_000), 16, seed=5)
    path = write_wav(tmp_path / "long.wav", x, RATE)
    ds = load_signals(path, length=2048)
    assert ds.x.shape == (4, 2, 2048) and ds.rate == RATE and ds.labels is None
    assert torch.equal(ds.x[2], torch.from_numpy(x[:, 4096:6144].astype(np.float32)))
    assert "last 1808 samples dropped" in ds.notes[0]
    hop = load_signals(path, length=2048, hop=1024)
    assert len(hop) == 8  # (10000 - 2048) // 1024 + 1
    assert torch.equal(hop.x[1], torch.from_numpy(x[:, 1024:3072].astype(np.float32)))
    with pytest.raises(DataError, match=r"long\.wav: 10000 samples .* shorter than one window of 20000"):
        load_signals(path, length=20_000)


def test_npy_signals_and_unsupported_files(tmp_path):
    np.save(tmp_path / "s.npy", np.random.default_rng(0).uniform(-1, 1, (5, 2, 64)).astype(np.float32))
    ds = load_signals(tmp_path / "s.npy")
    assert ds.x.shape == (5, 2, 64)
    np.save(tmp_path / "img.npy", np.zeros((5, 1, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"img\.npy: signals must be \(N, C, L\); got shape \(5, 1, 8, 8\)"):
        load_signals(tmp_path / "img.npy")
    (tmp_path / "a.mp3").write_bytes(b"ID3")
    with pytest.raises(DataError, match=r"a\.mp3: unsupported signal file '\.mp3'"):
        load_signals(tmp_path / "a.mp3")


# ---- waves ----------------------------------------------------------------------------------------------------


def test_waves_deterministic_shape_range_and_params():
    a, b, c = make_waves(300, seed=0), make_waves(300, seed=0), make_waves(300, seed=1)
    assert torch.equal(a.x, b.x) and all(torch.equal(a.params[k], b.params[k]) for k in a.params)
    assert not torch.equal(a.x, c.x)
    assert a.x.shape == (300, 1, 2048) and a.x.dtype == torch.float32 and a.rate == 16_000
    peak = a.x.abs().amax(dim=(1, 2))
    assert torch.allclose(peak, a.params["peak"], atol=1e-6)  # stored peak is exactly the signal's max |x|
    assert float(peak.min()) >= 0.3 - 1e-6 and float(peak.max()) <= 0.95 + 1e-6
    assert a.labels.tolist() == (a.params["n_tones"] - 1).tolist() and set(a.labels.tolist()) == {0, 1, 2}
    f = a.params["freqs"]
    assert float(f[f > 0].min()) >= 50 and float(f.max()) <= 2000
    assert torch.equal(a.params["dominant_freq"], f[:, 0])
    amps = a.params["amps"]
    assert (amps[:, 1:] <= 0.6 * amps[:, :1] + 1e-6).all()  # the first tone dominates
    assert ((f > 0).sum(1) == a.params["n_tones"]).all() and ((amps > 0) == (f > 0)).all()


# ---- mnist1d --------------------------------------------------------------------------------------------------


def test_mnist1d_shape_labels_scale_and_determinism():
    np.random.seed(123)
    random.seed(123)
    before = (np.random.rand(), random.random())
    np.random.seed(123)
    random.seed(123)
    ds = load_mnist1d()
    after = (np.random.rand(), random.random())
    assert before == after  # the package's global seeding is undone
    assert ds.x.shape == (4000, 1, 40) and ds.x.dtype == torch.float32 and ds.labels.shape == (4000,)
    assert ds.class_names == [str(i) for i in range(10)] and torch.bincount(ds.labels).min() > 350
    test = load_mnist1d("test")
    both = torch.cat([ds.x, test.x])
    assert len(test) == 1000 and float(both.abs().max()) == 1.0  # x = s / max|s| over both splits
    s = both.double() * ds.params["scale"]  # the package's standardised signals: mean 0, std 1
    assert abs(float(s.mean())) < 1e-6 and abs(float(s.std()) - 1) < 1e-3
    assert torch.equal(load_mnist1d().x, ds.x)
    with pytest.raises(DataError, match="split must be"):
        load_mnist1d("val")
