"""1-D signals: WAV files against the standard library and scipy, the waves / mnist1d data sets, WAV folders and
windows, signal statistics, and the waveform / spectrogram pictures."""

import random
import struct
import subprocess
import sys
import wave

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import wavfile
from scipy.stats import ks_2samp, kurtosis, skew, wasserstein_distance

from diffusekit import physics
from diffusekit.audio import WavError, read_wav, write_wav
from diffusekit.data import DataError
from diffusekit.data.signals import (GeneratedDataset, is_wav_folder, load_mnist1d, load_signals, load_wav_folder,
                                     make_waves)
from diffusekit.viz_signals import save_spectrograms, save_waveforms, spectrogram_db

torch.set_num_threads(1)
RATE = 16_000


def _on_grid(shape, bits, seed=0):
    """Random samples that are exactly representable in `bits`-bit PCM: v / 2^(bits-1), v over the whole range."""
    full = 2 ** (bits - 1)
    v = np.random.default_rng(seed).integers(-full, full, size=shape)
    v.flat[:2] = (-full, full - 1)  # both extremes
    return v / full


# ---- WAV ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 16, 24, 32])
@pytest.mark.parametrize("channels", [1, 2])
def test_wav_round_trip_is_exact_on_the_pcm_grid(tmp_path, bits, channels):
    x = _on_grid((channels, 1001), bits)
    path = write_wav(tmp_path / "a.wav", x, 22_050, bits=bits)
    y, rate = read_wav(path)
    assert rate == 22_050 and y.dtype == np.float32 and y.shape == (channels, 1001)
    if bits < 32:
        assert np.array_equal(y, x.astype(np.float32))  # bit-exact: v / 2^(b-1) is exact in float32 for b <= 24
    else:
        assert np.abs(y - x).max() <= 2**-24  # 32-bit ints round to float32's 24-bit mantissa
    assert y.min() >= -1 and y.max() <= 1
    # the standard reader sees the declared layout
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (channels, bits // 8,
                                                                                           22_050, 1001)


def test_16bit_file_read_and_written_again_is_byte_identical(tmp_path):
    rng = np.random.default_rng(1)
    x = np.clip(rng.normal(0, 0.3, (2, 4000)), -1.2, 1.2)  # off-grid, some beyond [-1, 1] (clipped on writing)
    a = write_wav(tmp_path / "a.wav", x, RATE)
    y, rate = read_wav(a)
    b = write_wav(tmp_path / "b.wav", y, rate)
    assert a.read_bytes() == b.read_bytes()
    # quantisation: v = clip(rint(x * 32768), -32768, 32767), documented
    v = np.clip(np.rint(x * 32768), -32768, 32767)
    assert np.array_equal(y, (v / 32768).astype(np.float32))


def test_wav_matches_scipy_reader_and_writer(tmp_path):
    """scipy.io.wavfile as an independent implementation: integer values, channel order, float WAVs."""
    x = _on_grid((2, 300), 16, seed=2)
    write_wav(tmp_path / "a.wav", x, 8000)
    rate, d = wavfile.read(tmp_path / "a.wav")  # (L, C) int16
    assert rate == 8000 and d.dtype == np.int16 and np.array_equal(d.T, np.rint(x * 32768).astype(np.int16))
    rate, d = wavfile.read(write_wav(tmp_path / "b.wav", x, 8000, bits=24))  # 24-bit comes back left-justified
    assert np.array_equal(d.T >> 8, np.rint(x * 2**23).astype(np.int32))
    rate, d = wavfile.read(write_wav(tmp_path / "c.wav", x, 8000, bits=8))
    assert np.array_equal(d.T.astype(np.int32) - 128, np.clip(np.rint(x * 128), -128, 127).astype(np.int32))
    for dtype in (np.float32, np.float64):  # IEEE float WAVs (format tag 3), written by scipy
        f = np.random.default_rng(3).uniform(-1, 1, (500, 2)).astype(dtype)
        wavfile.write(tmp_path / "f.wav", 44_100, f)
        y, rate = read_wav(tmp_path / "f.wav")
        assert rate == 44_100 and np.array_equal(y, f.T.astype(np.float32))
    wavfile.write(tmp_path / "i16.wav", 8000, (x.T * 32768).astype(np.int16))  # scipy's writer, our reader
    assert np.array_equal(read_wav(tmp_path / "i16.wav")[0], x.astype(np.float32))


def _fmt_chunk(tag, channels=1, rate=8000, bits=16, extra=b""):
    block = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits) + extra
    return b"fmt " + struct.pack("<I", len(body)) + body


def _riff(*chunks, magic=b"RIFF"):
    body = b"WAVE" + b"".join(chunks)
    return magic + struct.pack("<I", len(body)) + body


def _data(raw):
    return b"data" + struct.pack("<I", len(raw)) + raw + (b"\0" if len(raw) % 2 else b"")


def test_extensible_pcm_and_odd_chunks_are_read(tmp_path):
    v = np.array([[100, -200, 300], [-1, 2, -32768]], np.int16)  # (C, L)
    guid_pcm = struct.pack("<H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    ext = struct.pack("<HHI", 22, 16, 3) + guid_pcm  # cbSize, valid bits, channel mask, sub-format GUID
    blob = _riff(_fmt_chunk(0xFFFE, channels=2, extra=ext), b"LIST" + struct.pack("<I", 3) + b"abc\0",
                 _data(v.T.tobytes()))
    (tmp_path / "e.wav").write_bytes(blob)
    y, rate = read_wav(tmp_path / "e.wav")
    assert rate == 8000 and np.array_equal(y, v / np.float32(32768))


@pytest.mark.parametrize("make, message", [
    (lambda: _riff(_fmt_chunk(6), _data(b"\0" * 8)), r"unsupported WAV format: A-law \(format tag 0x0006\), 16-bit"),
    (lambda: _riff(_fmt_chunk(0x55), _data(b"\0" * 8)), r"MPEG Layer 3"),
    (lambda: _riff(_fmt_chunk(1, bits=12), _data(b"\0" * 8)), r"unsupported WAV format: PCM .*12-bit"),
    (lambda: _riff(_fmt_chunk(3, bits=16), _data(b"\0" * 8)), r"IEEE float .*16-bit"),
    (lambda: _riff(_fmt_chunk(1), _data(b"\0" * 8), magic=b"RIFX"), r"big-endian RIFX"),
    (lambda: b"\x89PNG\r\n\x1a\n" + b"\0" * 40, r"not a WAV file"),
    (lambda: b"RIFF", r"shorter than the 12-byte RIFF header"),
    (lambda: _riff(_fmt_chunk(1))[:24], r"truncated header: the fmt chunk has \d+ bytes"),
    (lambda: _riff(_data(b"\0" * 8)), r"data chunk comes before the fmt chunk"),
    (lambda: _riff(_fmt_chunk(1)), r"no data chunk"),
    (lambda: _riff(_fmt_chunk(1), _data(b"\0" * 100))[:-40], r"truncated file: the data chunk declares 100 bytes"),
    (lambda: _riff(_fmt_chunk(1, channels=2), _data(b"\0" * 6)), r"not a whole number of 4-byte frames"),
])
def test_bad_wavs_give_an_error_naming_the_file_and_format(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(make())
    with pytest.raises(WavError, match=message) as e:
        read_wav(path)
    assert str(path) in str(e.value) and isinstance(e.value, DataError)


def test_truncated_real_file_and_bad_float_values(tmp_path):
    good = write_wav(tmp_path / "good.wav", np.zeros((1, 100)), RATE).read_bytes()
    for cut in (11, 30, len(good) - 50):
        (tmp_path / "cut.wav").write_bytes(good[:cut])
        with pytest.raises(WavError, match=r"cut\.wav: (not a WAV|truncated)"):
            read_wav(tmp_path / "cut.wav")
    wavfile.write(tmp_path / "loud.wav", RATE, np.array([0.5, -1.5], np.float32))
    with pytest.raises(WavError, match=r"loud\.wav: IEEE float WAV has samples up to 1\.5, outside \[-1, 1\]"):
        read_wav(tmp_path / "loud.wav")
    wavfile.write(tmp_path / "nan.wav", RATE, np.array([0.5, np.nan], np.float32))
    with pytest.raises(WavError, match=r"nan\.wav: .*NaN"):
        read_wav(tmp_path / "nan.wav")
    with pytest.raises(WavError, match="NaN"):
        write_wav(tmp_path / "x.wav", np.array([0.0, np.nan]), RATE)
    with pytest.raises(WavError, match="bits must be one of"):
        write_wav(tmp_path / "x.wav", np.zeros(4), RATE, bits=12)


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


def test_dominant_frequency_of_pure_sinusoids():
    rng = np.random.default_rng(0)
    f = np.exp(rng.uniform(np.log(20), np.log(7900), 200))
    t = np.arange(2048) / RATE
    x = rng.uniform(0.1, 1, (200, 1)) * np.sin(2 * np.pi * f[:, None] * t + rng.uniform(0, 6.3, (200, 1)))
    est = physics.dominant_frequency(torch.from_numpy(x).unsqueeze(1), RATE)
    assert np.abs(est - f).max() < 0.1  # Hz; the FFT bin is 7.8 Hz: interpolation does the rest
    stereo = np.stack([x, 0.5 * x], axis=1)  # channels averaged
    assert np.abs(physics.dominant_frequency(stereo, RATE) - f).max() < 0.1


def test_waves_dominant_frequency_recovered():
    ds = make_waves(1000, seed=3)
    est = physics.dominant_frequency(ds.x, ds.rate)
    rel = np.abs(est / ds.params["dominant_freq"].numpy() - 1)
    assert (rel < 0.02).mean() >= 0.99  # misses: a second tone within a bin or two of the first


def test_signal_distances():
    a, b = make_waves(600, seed=0), make_waves(600, seed=1)
    d = physics.compare_signals(a.x, b.x, a.rate)
    assert set(d) == {"dominant_freq", "peak", "rms", "dominant_freq_floor", "peak_floor", "rms_floor"}
    for k in ("dominant_freq", "peak", "rms"):
        assert d[k] < 3 * d[k + "_floor"] + 0.02, (k, d)
    slow = make_waves(600, seed=1, rate=2 * a.rate)  # the same tones at twice the rate: read at 16 kHz, an
    shifted = physics.compare_signals(a.x, slow.x, a.rate)  # octave lower; the peaks are drawn identically
    assert abs(shifted["dominant_freq"] - 1.0) < 0.1 and shifted["peak"] == d["peak"]
    quiet = physics.compare_signals(0.5 * a.x, b.x, a.rate)
    assert quiet["peak"] > 10 * d["peak_floor"]


def test_crest_factor_and_distribution_distances_with_a_floor():
    t = np.arange(4096) / RATE
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)  # whole periods: crest factor exactly sqrt(2) up to sampling
    decay = tone * np.exp(-t / 0.02)
    st = physics.signal_stats(np.stack([tone, decay, 0 * t])[:, None], RATE)
    assert abs(st["crest"][0] - np.sqrt(2)) < 1e-3 and st["crest"][1] > 3 and st["crest"][2] == 0
    assert np.allclose(st["crest"][:2], st["peak"][:2] / st["rms"][:2])
    # per-example statistics of three disjoint sets: samples like the data sit near the floor, others do not
    a, b, c = (make_waves(300, seed=s) for s in (0, 1, 2))
    stats = [physics.signal_stats(d.x, RATE) for d in (a, b, c)]
    for name in ("dominant_freq", "peak", "crest"):
        same = physics.compare_distributions(stats[2][name], stats[0][name], stats[1][name])
        assert same["n"] == same["n_reference"] == same["n_floor"] == 300
        assert same["ks"] < 3 * same["ks_floor"] + 0.05 and same["w1"] < 3 * same["w1_floor"] + 1e-9, (name, same)
    slow = physics.signal_stats(make_waves(300, seed=2, rate=2 * RATE).x, RATE)  # an octave lower
    off = physics.compare_distributions(np.log2(slow["dominant_freq"]), np.log2(stats[0]["dominant_freq"]),
                                        np.log2(stats[1]["dominant_freq"]))
    assert abs(off["w1"] - 1) < 0.1 and off["ks"] > 0.2 > off["ks_floor"]


def test_ks_distance_and_moments_match_scipy():
    rng = np.random.default_rng(0)
    for na, nb in [(100, 100), (37, 250), (1, 5)]:
        a, b = rng.normal(0, 1, na), rng.exponential(1, nb)
        assert physics.ks_distance(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    ties = np.array([0, 0, 1, 1, 2])
    assert physics.ks_distance(ties, ties) == 0 and physics.ks_distance([0, 0], [1, 1]) == 1
    x = rng.gamma(2.0, 1.0, size=(50, 40))
    m = physics.moments(torch.from_numpy(x))
    assert m["mean"] == pytest.approx(x.mean()) and m["std"] == pytest.approx(x.std())
    assert m["skew"] == pytest.approx(skew(x.ravel())) and m["kurtosis"] == pytest.approx(kurtosis(x.ravel()))
    flat = physics.moments(np.ones(5))
    assert flat["mean"] == 1 and flat["std"] == 0 and np.isnan(flat["skew"]) and np.isnan(flat["kurtosis"])


def test_wasserstein1_matches_scipy():
    rng = np.random.default_rng(0)
    for na, nb in [(100, 100), (37, 250), (1, 5)]:
        a, b = rng.normal(0, 1, na), rng.exponential(1, nb)
        assert physics.wasserstein1(a, b) == pytest.approx(wasserstein_distance(a, b), rel=1e-12, abs=1e-12)
    assert physics.wasserstein1([0, 0], [1, 1]) == 1.0


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


def test_mnist1d_needs_neither_matplotlib_nor_network():
    code = (
        "import sys, socket\n"
        "def no_net(*a, **k): raise RuntimeError('network used')\n"
        "socket.socket.connect = no_net\n"
        "from diffusekit.data.signals import load_mnist1d\n"
        "ds = load_mnist1d('all'); assert ds.x.shape == (5000, 1, 40)\n"
        "import importlib.util\n"
        "real = importlib.util.find_spec('matplotlib') is not None\n"
        "assert real or 'matplotlib' not in sys.modules, 'stub left behind'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- pictures -------------------------------------------------------------------------------------------------


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
