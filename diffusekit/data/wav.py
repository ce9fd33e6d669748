"""WAV files <-> float32 arrays (C, L) in [-1, 1]: numpy and the standard library only.

    from diffusekit.data.wav import read_wav, write_wav
    x, rate = read_wav("clip.wav")       # float32 (C, L), C = 1 (mono) or 2 (stereo) or more
    write_wav("out.wav", x, rate)        # 16-bit PCM; bits=8, 24 or 32 for other integer widths

Scaling (the same rule both ways, so a 16-bit file read and written again is byte-for-byte the same file):
    b-bit integer PCM v (8-bit stored unsigned, v = byte - 128):  x = v / 2^(b-1), in [-1, 1 - 2^(1-b)]
    writing:  v = clip(rint(x * 2^(b-1)), -2^(b-1), 2^(b-1) - 1)  (round half to even; x = 1 -> the largest v)
    so read(write(x)) == x exactly when x is on the grid k / 2^(b-1), which is what reading a file gives.
    32-bit integers do not fit float32's 24-bit mantissa: they read back to the nearest float32 (relative 6e-8).
    IEEE-float WAVs (32- or 64-bit) are read as stored; a value outside [-1, 1], NaN or inf is an error.
No normalisation on reading: a quiet recording stays quiet, so relative loudness between files is kept.

What is read: RIFF/WAVE files whose format tag is PCM (1, 8/16/24/32 bits), IEEE float (3, 32/64 bits), or
WAVE_FORMAT_EXTENSIBLE (0xFFFE) whose sub-format is one of those two. Everything else (A-law, mu-law, ADPCM, MP3
in WAV, big-endian RIFX, RF64, a truncated or corrupt header, a data chunk shorter than it declares) is a
`WavError` naming the file and what was found. The header is parsed here rather than with the standard `wave`
module because Python 3.11's `wave` rejects float and extensible files with only "unknown format: 3"; writing
uses `wave`, so every file written is checked against the standard reader in the tests.
"""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path

import numpy as np
import torch

from .dataset import DataError
from .files import check_file, check_fits

PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
FORMAT_NAMES = {  # the common tags, so an error can say what the file is
    0x0001: "PCM",
    0x0002: "Microsoft ADPCM",
    0x0003: "IEEE float",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MPEG Layer 3 (MP3)",
    0x00FF: "AAC",
    0xF1AC: "FLAC",
    0xFFFE: "WAVE_FORMAT_EXTENSIBLE",
}
PCM_BITS = (8, 16, 24, 32)
FLOAT_BITS = (32, 64)
SUPPORTED = "PCM 8/16/24/32-bit or IEEE float 32/64-bit (plain or WAVE_FORMAT_EXTENSIBLE)"


class WavError(DataError):
    """A WAV file that cannot be read or written: the message names the file and the format found."""


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a WAV file -> (samples float32 (C, L) in [-1, 1], sample rate in Hz). See the module docstring."""
    path = Path(path)
    # the bytes, their int32 widening and the float32 result with its transposed copy: up to ~9x an 8-bit file
    check_fits(path, 9 * check_file(path), "reading this WAV")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WavError(f"{path}: cannot read the file ({type(e).__name__}: {e})") from e
    fmt, raw = _parse(path, data)
    tag, channels, rate, bits = fmt
    frame_bytes = channels * bits // 8
    if len(raw) % frame_bytes:
        raise WavError(
            f"{path}: the data chunk holds {len(raw)} bytes, not a whole number of {frame_bytes}-byte frames "
            f"({channels} channels x {bits} bits)"
        )
    n = len(raw) // frame_bytes
    if tag == IEEE_FLOAT:
        x = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
        if not np.isfinite(x).all():
            raise WavError(f"{path}: IEEE float WAV contains NaN or inf samples")
        peak = float(np.abs(x).max(initial=0.0))
        if peak > 1:
            raise WavError(f"{path}: IEEE float WAV has samples up to {peak:.4g}, outside [-1, 1]; normalise it first")
    else:
        x = _pcm_to_float(raw, bits)
    return np.ascontiguousarray(x.reshape(n, channels).T), rate  # interleaved frames (L, C) -> (C, L)


def write_wav(path: str | os.PathLike, samples, rate: int, bits: int = 16) -> Path:
    """Write (C, L) or (L,) floats in [-1, 1] (numpy or torch) as integer PCM of `bits` (8, 16, 24 or 32).

    Values outside [-1, 1] are clipped, as any PCM writer must; NaN or inf is a WavError.
    """
    path = Path(path)
    if bits not in PCM_BITS:
        raise WavError(f"{path}: bits must be one of {PCM_BITS}; got {bits!r}")
    if not isinstance(rate, (int, np.integer)) or not 0 < rate < 2**32:
        raise WavError(f"{path}: rate must be a positive int (Hz); got {rate!r}")
    x = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] < 1 or not np.issubdtype(x.dtype, np.number):
        raise WavError(f"{path}: samples must be numbers of shape (C, L) or (L,); got {x.dtype} {x.shape}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise WavError(f"{path}: samples contain NaN or inf")
    full = 2 ** (bits - 1)
    v = np.ascontiguousarray(np.clip(np.rint(x * full), -full, full - 1).astype(np.int64).T)  # (L, C) frames
    if bits == 8:
        raw = (v + 128).astype(np.uint8).tobytes()
    elif bits == 24:
        raw = v.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()  # low 3 bytes, little-endian
    else:
        raw = v.astype("<i2" if bits == 16 else "<i4").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[0])
        w.setsampwidth(bits // 8)
        w.setframerate(int(rate))
        w.writeframes(raw)
    return path


# ---- helpers --------------------------------------------------------------------------------------------------


def _pcm_to_float(raw: bytes, bits: int) -> np.ndarray:
    """Little-endian integer PCM bytes -> float32 v / 2^(bits-1) (8-bit is unsigned with 128 as zero)."""
    if bits == 8:
        v = np.frombuffer(raw, np.uint8).astype(np.int32) - 128
    elif bits == 16:
        v = np.frombuffer(raw, "<i2").astype(np.int32)
    elif bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 2**23, v - 2**24, v)  # sign-extend
    else:
        return (np.frombuffer(raw, "<i4").astype(np.float64) / 2**31).astype(np.float32)
    return v.astype(np.float32) / np.float32(2 ** (bits - 1))  # exact: |v| < 2^24


def _parse(path: Path, data: bytes) -> tuple[tuple[int, int, int, int], bytes]:
    """RIFF/WAVE bytes -> ((format tag PCM or IEEE_FLOAT, channels, rate, bits), data chunk bytes)."""
    if len(data) < 12:
        raise WavError(f"{path}: not a WAV file: {len(data)} bytes, shorter than the 12-byte RIFF header")
    magic, _, kind = data[:4], data[4:8], data[8:12]
    if magic in (b"RIFX", b"RF64", b"BW64") and kind == b"WAVE":
        what = "big-endian RIFX" if magic == b"RIFX" else f"{magic.decode()} (64-bit sizes)"
        raise WavError(f"{path}: unsupported WAV container {what}; expected RIFF/WAVE with {SUPPORTED}")
    if magic != b"RIFF" or kind != b"WAVE":
        raise WavError(f"{path}: not a WAV file: starts with {data[:4]!r}...{data[8:12]!r}, expected b'RIFF'...b'WAVE'")
    fmt = raw = None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise WavError(f"{path}: truncated header: the fmt chunk has {len(body)} bytes, needs at least 16")
            fmt = _format(path, body)
        elif cid == b"data":
            if fmt is None:
                raise WavError(f"{path}: corrupt header: the data chunk comes before the fmt chunk")
            if len(body) < size:
                raise WavError(
                    f"{path}: truncated file: the data chunk declares {size} bytes but only {len(body)} follow"
                )
            raw = body
            break
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    if fmt is None:
        raise WavError(f"{path}: truncated or corrupt header: no fmt chunk in {len(data)} bytes")
    if raw is None:
        raise WavError(f"{path}: truncated or corrupt file: no data chunk after the fmt chunk")
    return fmt, raw


def _format(path: Path, body: bytes) -> tuple[int, int, int, int]:
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body)
    name = _format_name(tag)
    if tag == EXTENSIBLE:
        if len(body) < 40:
            raise WavError(f"{path}: truncated header: WAVE_FORMAT_EXTENSIBLE fmt chunk of {len(body)} bytes (< 40)")
        tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID starts with the plain format tag
        name = f"WAVE_FORMAT_EXTENSIBLE with sub-format {_format_name(tag)}"
    found = f"{name}, {bits}-bit, {channels} channel(s), {rate} Hz"
    ok = (tag == PCM and bits in PCM_BITS) or (tag == IEEE_FLOAT and bits in FLOAT_BITS)
    if not ok:
        raise WavError(f"{path}: unsupported WAV format: {found}; supported: {SUPPORTED}")
    if channels < 1 or rate < 1 or block_align != channels * bits // 8:
        raise WavError(
            f"{path}: corrupt fmt chunk: {found}, block align {block_align} (expected channels x bytes per sample "
            f"= {channels * bits // 8})"
        )
    return tag, channels, rate, bits


def _format_name(tag: int) -> str:
    return f"{FORMAT_NAMES.get(tag, 'unknown')} (format tag 0x{tag:04X})"


__all__ = ["WavError", "read_wav", "write_wav"]
