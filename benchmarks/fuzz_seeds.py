"""Valid seed files of every format the readers take, made by the project's own writers, Pillow and numpy, plus the
hand-built bombs (a PNG, GIFs and an .npz whose few bytes declare gigabytes). Used by `fuzz_readers.py`."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 16  # seed images are SIDE x SIDE: small, so that a case costs milliseconds


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int, rows: int) -> bytes:
    """A grey PNG declaring width x height whose IDAT holds `rows` rows of zeros: a few KB that decode to
    width * rows bytes (the rest is missing, so a reader that decodes it all also meets a truncated file)."""
    z = zlib.compressobj(9)
    line = b"\0" * (width + 1)  # filter byte 0, then the row
    idat = b"".join(z.compress(line) for _ in range(rows)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def gif_bomb(width: int, height: int, frames: int) -> bytes:
    """An animated GIF with a width x height logical screen and `frames` frames of one pixel each: ~20 bytes a
    frame, while a reader that composites every frame on the full screen holds width * height * 3 bytes each."""
    out = [b"GIF89a", struct.pack("<HHBBB", width, height, 0x80, 0, 0), b"\0\0\0\xff\xff\xff"]  # 2-colour table
    out.append(b"!\xff\x0bNETSCAPE2.0\x03\x01\0\0\0")  # loop forever: marks it as an animation
    for i in range(frames):
        out.append(b"!\xf9\x04\x00\x01\x00\x00\x00")  # graphic control: 10 ms, no disposal
        out.append(b"," + struct.pack("<HHHHB", i % width, 0, 1, 1, 0))  # a 1 x 1 image at (i, 0)
        out.append(b"\x02\x02\x44\x01\x00")  # LZW min code 2: clear, index 0, end (3-bit codes), block end
    out.append(b";")
    return b"".join(out)


def npz_bomb(nbytes: int) -> bytes:
    """An .npz whose one member is an honest header for nbytes of uint8 zeros, deflated to ~1/1000 of that."""
    buf = io.BytesIO()
    shape = (nbytes // (SIDE * SIDE), 1, SIDE, SIDE)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("x.npy", "w", force_zip64=True) as f:
            f.write(head.getvalue())
            block = b"\0" * (1 << 20)
            for _ in range(nbytes >> 20):
                f.write(block)
    return buf.getvalue()


def wav_float(x: np.ndarray, rate: int) -> bytes:
    """IEEE-float 32-bit WAV bytes (write_wav only writes integer PCM)."""
    raw = np.ascontiguousarray(x.T, dtype="<f4").tobytes()
    c = x.shape[0]
    fmt = struct.pack("<HHIIHH", 3, c, rate, rate * c * 4, c * 4, 32)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(raw)) + b"WAVE" + b"fmt " +
            struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(raw)) + raw)


def _images(out: Path, rng) -> None:
    g = rng.integers(0, 256, (SIDE, SIDE), dtype=np.uint8)
    rgb = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    Image.fromarray(g).save(out / "gray.png")
    Image.fromarray(rgb).save(out / "rgb.png")
    Image.fromarray(np.dstack([rgb, g])).save(out / "rgba.png")
    Image.fromarray((g.astype(np.uint16) * 257)).save(out / "gray16.png")
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(out / "palette.png", transparency=0)
    Image.fromarray(rgb).save(out / "rgb.jpg", quality=90)
    Image.fromarray(g).save(out / "gray.jpg", quality=90)
    Image.fromarray(rgb).save(out / "rgb.webp", lossless=True)
    Image.fromarray(np.dstack([rgb, g])).save(out / "rgba.webp", quality=80)
    Image.fromarray(rgb).save(out / "rgb.bmp")
    pal.save(out / "palette.bmp")
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[:, : SIDE // 2] = 255
    Image.fromarray(mask).save(out / "mask.png")
    np.save(out / "image.npy", g)


def _clips(out: Path, rng) -> None:
    for name, colour in (("a.gif", False), ("b.gif", True)):
        shape = (SIDE, SIDE, 3) if colour else (SIDE, SIDE)
        frames = [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for _ in range(4)]
        frames[0].save(out / name, save_all=True, append_images=frames[1:], duration=40, loop=0)


def _waves(out: Path, rng) -> None:
    from diffusekit.data.wav import write_wav

    x = (rng.uniform(-0.9, 0.9, (1, 4096))).astype(np.float32)
    for bits in (8, 16, 24, 32):
        write_wav(out / f"pcm{bits}.wav", x, 8000, bits=bits)
    write_wav(out / "stereo.wav", np.concatenate([x, -x]), 8000)
    (out / "float.wav").write_bytes(wav_float(x, 8000))


def _arrays(out: Path, rng) -> None:
    np.save(out / "u8.npy", rng.integers(0, 256, (6, 1, 8, 8), dtype=np.uint8))
    np.save(out / "f32.npy", rng.uniform(-1, 1, (6, 3, 8, 8)).astype(np.float32))
    np.save(out / "f64.npy", rng.normal(0, 5, (6, 1, 32)))
    np.save(out / "i16.npy", rng.integers(-300, 300, (4, 1, 4, 8, 8), dtype=np.int16))
    np.savez(out / "plain.npz", x=rng.uniform(0, 1, (6, 1, 8, 8)).astype(np.float32), labels=np.arange(6) % 3)
    np.savez_compressed(out / "packed.npz", images=rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8),
                        y=np.arange(6.0))


def _clouds(out: Path, rng) -> None:
    from diffusekit.data.points import write_ply

    pts = rng.normal(0, 1, (64, 3))
    write_ply(out / "cloud.ply", pts)
    rows = "".join(f"{a:.5f} {b:.5f} {c:.5f} 0.5\n" for a, b, c in pts)
    head = "ply\nformat ascii 1.0\nelement vertex 64\nproperty float x\nproperty float y\nproperty float z\n"
    (out / "ascii.ply").write_text(head + "property float s\nelement face 0\nproperty list uchar int vi\n"
                                   "end_header\n" + rows)
    np.save(out / "cloud.npy", pts.astype(np.float32))
    (out / "cloud.xyz").write_text("".join(f"{a:.5f} {b:.5f} {c:.5f}\n" for a, b, c in pts))


def _captions(out: Path) -> None:
    lines = [{"file": "gray.png", "caption": "a grey square"}, {"file": "rgb.png", "caption": "a noisy square"}]
    (out / "captions.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    (out / "caption.txt").write_text("a grey square of noise\n")


def _config(out: Path) -> None:
    from diffusekit.train import TrainConfig

    c = TrainConfig(data="digits", out="runs/x", steps=10, model="tiny", model_overrides={"channels": 8})
    (out / "config.json").write_text(json.dumps(c.to_dict(), indent=1))
    (out / "small-config.json").write_text(json.dumps({"data": "mnist5k", "steps": 200, "lr": 2e-4}))


def _run(out: Path) -> None:
    import contextlib
    import os

    from diffusekit.train import TrainConfig, train

    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        train(TrainConfig(out=str(out / "run"), data="digits", model="tiny", steps=1, batch_size=8, warmup_steps=1,
                          num_grid=2, sample_steps=1), progress=False)
    # wall-clock times and the temporary folder's name made the seeds differ between runs, and so the mutated files:
    # fixed, so that a case is one file
    info = json.loads((out / "run/run.json").read_text())
    info["train"]["out"] = "runs/fuzz-seed"
    (out / "run/run.json").write_text(json.dumps(info, indent=2))
    state = out / "run/checkpoints/step-0000001/state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "elapsed_s": 1.0}))
    log = [{**json.loads(ln), "elapsed_s": 1.0, "images_per_s": 8.0} for ln in (out / "run/metrics.jsonl").open()]
    (out / "run/metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))


def make_seeds(out: Path, bombs: bool = True) -> Path:
    """Every seed under out/; returns out."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    _images(out, rng)
    _clips(out, rng)
    _waves(out, rng)
    _arrays(out, rng)
    _clouds(out, rng)
    _captions(out)
    _config(out)
    _run(out)
    if bombs:
        (out / "bomb-huge.png").write_bytes(png_bomb(100_000, 100_000, 4))  # 10^10 pixels
        (out / "bomb-mid.png").write_bytes(png_bomb(12_000, 12_000, 12_000))  # 1.4e8: past Pillow's warning only
        (out / "bomb-screen.gif").write_bytes(gif_bomb(65_535, 65_535, 2))  # 4.3e9-pixel logical screen
        (out / "bomb-frames.gif").write_bytes(gif_bomb(2_000, 2_000, 3_000))  # 3,000 x 12 MB once composited
        (out / "bomb.npz").write_bytes(npz_bomb(512 << 20))  # 512 MB of zeros in ~0.5 MB
    return out
