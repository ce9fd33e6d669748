"""WAV files (diffusekit.data.wav, to be diffusekit/data/wav.py) against the standard library's wave module and scipy:
exact round trips on the PCM grid, odd chunks, and the errors for bad files that name the file and the format."""

import struct
import wave

import numpy as np
import pytest
from scipy.io import wavfile

from diffusekit.data.wav import WavError, read_wav, write_wav
from diffusekit.data import DataError


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
