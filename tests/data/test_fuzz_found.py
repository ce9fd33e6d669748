"""What the reader fuzzer (benchmarks/fuzz_readers.py) found, one test per class of bug: each file is answered at once
with one line that names it, before anything large is allocated or decoded."""

import io
import json
import os
import shutil
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusekit.data import load_data
from diffusekit.data.captions import load_captioned
from diffusekit.data.dataset import DataError
from diffusekit.data.points import read_cloud
from diffusekit.inverse.task import load_image, load_mask

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from fuzz_seeds import gif_bomb, png_bomb  # noqa: E402


def one_line_error(fn, *args, names, error=ValueError, seconds=10.0):
    """fn(*args) raises `error` within `seconds` (in a thread, so a reader that blocks fails the test instead of
    hanging it) with a one-line message that contains `names`."""
    box = {}

    def call():
        try:
            fn(*args)
        except BaseException as e:  # noqa: B036: recorded and checked below
            box["e"] = e

    t = threading.Thread(target=call, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"no answer in {seconds} s"
    e = box.get("e")
    assert isinstance(e, error), f"expected {error.__name__}, got {e!r}"
    assert "\n" not in str(e).strip() and str(names) in str(e), str(e)
    return str(e)


def images(folder: Path, n=2):
    folder.mkdir(exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return folder


# ---- files that are not files --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["fifo", "devzero", "folder"])
def test_a_fifo_a_device_or_a_folder_in_place_of_a_file(tmp_path, kind):
    """A FIFO blocked open() forever; /dev/zero fed read_bytes() and readline() until memory ran out."""
    def put(path):
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "devzero":
            path.symlink_to("/dev/zero")
        else:
            path.mkdir()
        return path

    wavs = tmp_path / "wavs"
    wavs.mkdir()
    from diffusekit.data.wav import write_wav
    write_wav(wavs / "a.wav", np.zeros((1, 4096)), 8000)
    if kind != "folder":  # a folder named b.wav is a sub-folder, so it is not listed as a file at all
        one_line_error(load_data, wavs, names=put(wavs / "b.wav"))
    one_line_error(load_data, put(tmp_path / "x.npy"), names="x.npy")
    one_line_error(read_cloud, put(tmp_path / "c.ply"), names="c.ply")
    one_line_error(load_image, put(tmp_path / "in.png"), (1, 8, 8), names="in.png")
    one_line_error(load_mask, put(tmp_path / "m.png"), (8, 8), names="m.png")
    if kind != "folder":
        folder = images(tmp_path / "imgs")
        put(folder / "z.png")  # one unreadable image of three is skipped, with its reason
        with pytest.warns(UserWarning, match="z.png"):
            assert len(load_data(folder)) == 2


# ---- declared sizes: sparse files, bombs ---------------------------------------------------------------------------

def test_a_webp_followed_by_a_terabyte_hole(tmp_path):
    """Pillow's WebP decoder reads the whole file into memory: a sparse one was a MemoryError, skipped as if the file
    were merely corrupt (the fuzzer's check on the reasons for skipping found it)."""
    folder = images(tmp_path / "imgs")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "z.webp")
    os.truncate(folder / "z.webp", 2**40)
    with pytest.warns(UserWarning, match="z.webp"):
        ds = load_data(folder)
    assert "memory" in ds.skipped[0] and "MemoryError" not in ds.skipped[0]
    one_line_error(load_image, folder / "z.webp", (1, 8, 8), names="z.webp")


def test_a_sparse_file_that_claims_a_terabyte(tmp_path):
    """The header is honest and the file really is that long (a hole on disk): reading it would allocate it all."""
    npy = tmp_path / "big.npy"
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (2**30, 1, 16, 16)})
    npy.write_bytes(head.getvalue())
    os.truncate(npy, len(head.getvalue()) + 2**40)
    one_line_error(load_data, npy, names="big.npy")
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    (wavs / "a.wav").write_bytes(b"RIFF\0\0\0\0WAVE")
    os.truncate(wavs / "a.wav", 2**40)
    assert "memory" in one_line_error(load_data, wavs, names="a.wav")


def test_a_zip_bomb_npz_is_refused_before_it_is_inflated(tmp_path):
    path = tmp_path / "bomb.npz"
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "|u1", "fortran_order": False, "shape": (400, 1, 512, 512)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("x.npy", "w") as f:
        f.write(head.getvalue())
        for _ in range(100):
            f.write(bytes(1 << 20))
    assert path.stat().st_size < 1 << 20
    assert "zip bomb" in one_line_error(load_data, path, names="bomb.npz")


def test_image_bombs_are_refused_from_the_header(tmp_path):
    """10^10 pixels raised Pillow's DecompressionBombError through load_image and load_mask as a traceback; 1e8
    (between Pillow's warning and its error) was decoded, 7 s and ~1 GB for a 100 KB file."""
    huge, mid = tmp_path / "huge.png", tmp_path / "mid.png"
    huge.write_bytes(png_bomb(100_000, 100_000, 2))
    mid.write_bytes(png_bomb(10_000, 10_000, 2))
    for path in (huge, mid):
        one_line_error(load_image, path, (1, 16, 16), names=path.name)
        one_line_error(load_mask, path, (16, 16), names=path.name)
    folder = images(tmp_path / "imgs")
    shutil.copy(mid, folder / "mid.png")
    with pytest.warns(UserWarning, match="mid.png"):
        ds = load_data(folder)
    assert "decompression bomb" in ds.skipped[0]


def test_a_gif_of_many_one_pixel_frames_on_a_big_screen(tmp_path, monkeypatch):
    """Each frame is composited on the whole screen: 3,000 frames of 1 pixel on 2,000 x 2,000 is 36 GB decoded."""
    import diffusekit.data.video as video

    monkeypatch.setattr(video, "memory_budget", lambda: 200 << 20)  # the budget of a small machine, so it is quick
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "a.gif").write_bytes(gif_bomb(2_000, 2_000, 3_000))
    assert "memory" in one_line_error(load_data, folder, names="a.gif")
    (folder / "a.gif").write_bytes(gif_bomb(65_535, 65_535, 2))  # a 4.3 G-pixel screen
    one_line_error(load_data, folder, names="a.gif")


# ---- parsers that raised what nobody caught ------------------------------------------------------------------------

def test_a_corrupt_deflate_stream_in_an_npz(tmp_path):
    """zlib.error (neither OSError nor ValueError) came out of numpy's lazy member read as a traceback."""
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.arange(6 * 64, dtype=np.uint8).reshape(6, 1, 8, 8))
    data = bytearray(buf.getvalue())
    data[55] ^= 0x55  # inside the member's deflate stream: "invalid block type"
    (tmp_path / "x.npz").write_bytes(bytes(data))
    one_line_error(load_data, tmp_path / "x.npz", names="x.npz")


def test_an_npy_header_that_does_not_tokenize(tmp_path):
    """numpy's header parser raises tokenize.TokenError (not a ValueError) for an unclosed bracket."""
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((6, 1, 8, 8), np.float32))
    data = path.read_bytes()
    path.write_bytes(data.replace(b"(6, 1, 8, 8)", b"(6, 1, 8, 8 "))
    one_line_error(load_data, path, names="x.npy")
    cloud = tmp_path / "c.npy"
    cloud.write_bytes(path.read_bytes())
    one_line_error(read_cloud, cloud, names="c.npy")


@pytest.mark.parametrize("line", ["format", "element vertex", "element vertex -5", "element vertex 99999999999"])
def test_a_ply_header_that_lies(tmp_path, line):
    """A short header line was an IndexError; a count of 10^11 vertices was read (ascii: 10^11 readline calls)."""
    path = tmp_path / "c.ply"
    body = np.zeros((4, 3), "<f4").tobytes()
    head = "ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty float x\nproperty float y\n" \
           "property float z\nend_header\n"
    path.write_bytes(head.replace("element vertex 4", line).encode() + body)
    one_line_error(read_cloud, path, names="c.ply")
    path.write_bytes(head.replace("element vertex 4", line).replace("binary_little_endian", "ascii").encode()
                     + b"0 0 0\n" * 4)
    one_line_error(read_cloud, path, names="c.ply")


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"file": "0.png", "caption": ' + "1" * 5000 + "}"],
                         ids=["100,000 deep", "5,000 digits"])
def test_json_too_deep_or_a_number_too_long(tmp_path, text):
    """json.loads raises RecursionError for deep nesting and a plain ValueError (no file name) past 4,300 digits."""
    folder = images(tmp_path / "imgs")
    (folder / "captions.jsonl").write_text(text + "\n")
    one_line_error(load_captioned, folder, names="captions.jsonl")
    from diffusekit.train.config import TrainConfig
    (tmp_path / "c.json").write_text(text)
    one_line_error(TrainConfig.from_json_file, tmp_path / "c.json", names="c.json")


def test_a_config_setting_of_the_wrong_type_names_the_file(tmp_path):
    from diffusekit.train.config import TrainConfig

    path = tmp_path / "c.json"
    for bad in ({"p_uncond": "x"}, {"steps": [200]}, {"unknown": 1}, {"lr": None}):
        path.write_text(json.dumps(bad))
        one_line_error(TrainConfig.from_json_file, path, names="c.json")


# ---- values --------------------------------------------------------------------------------------------------------

def test_min_max_scaling_does_not_overflow(tmp_path):
    """(x - min) / (max - min) overflowed to inf / inf = NaN for values near +-1.8e308: NaN data, silently."""
    path = tmp_path / "x.npy"
    np.save(path, np.array([-1e308, 0.0, 1e308, 5e307]).reshape(4, 1, 1))
    x = load_data(path).x
    assert bool(x.isfinite().all()) and x.flatten().tolist() == pytest.approx([-1, 0, 1, 0.5])


def test_an_empty_array_as_a_reconstruct_input(tmp_path):
    """np.min of a zero-size array raised a ValueError that did not name the file."""
    np.save(tmp_path / "in.npy", np.zeros((0, 8)))
    one_line_error(load_image, tmp_path / "in.npy", (1, 8, 8), names="in.npy")


def test_clouds_that_overflow_or_have_no_extent(tmp_path):
    """Coordinates near 1e308 overflowed the centring to NaN, and a cloud of one repeated point divided 0 by 0: both
    ended in an error naming only the folder."""
    folder = tmp_path / "clouds"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "a.npy", rng.normal(size=(16, 3)))
    np.save(folder / "b.npy", rng.normal(size=(16, 3)) * 1e307)
    x = load_data(folder).x
    assert bool(x.isfinite().all()) and float(x.norm(dim=1).max()) == pytest.approx(1, abs=1e-5)
    np.save(folder / "c.npy", np.ones((16, 3)))
    one_line_error(load_data, folder, names="c.npy")


def test_a_gif_truncated_inside_a_block_header(tmp_path):
    """struct.error from Pillow's GIF parser for a file cut one byte into an extension block."""
    folder = tmp_path / "clips"
    folder.mkdir()
    frames = [Image.fromarray(np.full((8, 8), 60 * t, np.uint8)) for t in range(3)]
    frames[0].save(folder / "a.gif", save_all=True, append_images=frames[1:])
    data = (folder / "a.gif").read_bytes()
    for cut in range(13, len(data), 7):  # every 7th length: some land inside a 2-byte field
        (folder / "a.gif").write_bytes(data[:cut])
        try:
            load_data(folder)
        except DataError as e:
            assert "a.gif" in str(e) and "\n" not in str(e)


def test_labels_that_are_not_class_indices(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.zeros((3, 1, 4, 4), np.float32), labels=np.array([0, 1, 2**40]))
    one_line_error(load_data, path, names="x.npz")


# ---- run directories -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from diffusekit.train import TrainConfig, train

    return train(TrainConfig(out=str(tmp_path_factory.mktemp("found") / "run"), data="digits", model="tiny",
                             steps=1, batch_size=8, warmup_steps=1, num_grid=2, sample_steps=1), progress=False)


def edited(run, tmp_path, change):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    info = json.loads((out / "run.json").read_text())
    change(info)
    (out / "run.json").write_text(json.dumps(info))
    return out


@pytest.mark.parametrize("change", [lambda i: i.pop("data"), lambda i: i.update(train=[1]),
                                   lambda i: i["unet"].update(dims="2"), lambda i: i["unet"].update(channels=-4),
                                   lambda i: i["unet"].update(num_res_blocks=10**18),
                                   lambda i: i.update(schedule={"name": 3})],
                         ids=["no data", "train a list", "dims a string", "negative width", "10^18 blocks",
                              "bad schedule"])
def test_a_run_json_edited_by_hand(run, tmp_path, change):
    """Each was a KeyError / TypeError / RuntimeError traceback, and 10^18 blocks a build that never ended."""
    from diffusekit.model import TrainedModel

    one_line_error(TrainedModel.load, edited(run, tmp_path, change), names="run.json")


def test_a_corrupt_checkpoint_state_or_weights(run, tmp_path):
    from safetensors.torch import load_file, save_file

    from diffusekit.model import TrainedModel
    from diffusekit.rundir import latest_checkpoint, run_summary

    out = tmp_path / "run"
    shutil.copytree(run, out)
    ckpt = latest_checkpoint(out / "checkpoints")
    (ckpt / "state.json").write_text('{"step": 1,')
    one_line_error(TrainedModel.load, out, names="state.json")
    one_line_error(run_summary, out, names="state.json")
    shutil.copy(run / ckpt.relative_to(out) / "state.json", ckpt / "state.json")
    w = load_file(ckpt / "ema.safetensors")
    next(iter(w.values())).view(-1)[0] = float("nan")
    save_file(w, ckpt / "ema.safetensors")
    one_line_error(TrainedModel.load, out, names="ema.safetensors")


def test_info_skips_a_torn_metrics_line_and_names_a_broken_run_json(run, tmp_path):
    from diffusekit.rundir import format_summary, run_summary

    out = tmp_path / "run"
    shutil.copytree(run, out)
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "lo')  # a crash mid-write
    assert "last loss" in format_summary(run_summary(out))
    info = json.loads((out / "run.json").read_text())
    info["data"] = {"name": "x"}
    (out / "run.json").write_text(json.dumps(info))
    one_line_error(lambda p: format_summary(run_summary(p)), out, names="run.json")
    (out / "run.json").write_bytes(b"\xff\xfe{}")
    one_line_error(run_summary, out, names="run.json")
