"""Files that lie: the cases a new user hit (issue 28's list), each answered with one line that names the file, before
anything large is allocated."""

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from diffusekit.data import load_data
from diffusekit.data.dataset import DataError


def npy_header_only(shape, dtype=np.float32) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue()


def test_an_npy_that_declares_terabytes_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_header_only((4_000_000, 1, 1000, 1000)) + b"\0" * 64)  # declares 16 TB, holds 64 bytes
    with pytest.raises(DataError, match=r"huge\.npy: its header declares shape \(4000000, 1, 1000, 1000\)"):
        load_data(path)


def test_an_npz_member_that_declares_terabytes_is_refused(tmp_path):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", npy_header_only((4_000_000, 1, 1000, 1000)) + b"\0" * 64)
    with pytest.raises(DataError, match=r"huge\.npz \(x\.npy\): its header declares"):
        load_data(path)


def test_a_truncated_npy_is_refused(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.zeros((10, 1, 8, 8), np.float32))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="cut.npy.*truncated or corrupt"):
        load_data(path)


def test_a_truncated_gif_in_a_folder_of_clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(3):
        frames = [Image.fromarray(np.full((8, 8), 30 * (i + t), np.uint8)) for t in range(4)]
        frames[0].save(folder / f"{i}.gif", save_all=True, append_images=frames[1:])
    data = (folder / "1.gif").read_bytes()
    (folder / "1.gif").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"1\.gif: not a readable GIF"):
        load_data(folder)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from diffusekit.train import TrainConfig, train

    return train(TrainConfig(out=str(tmp_path_factory.mktemp("hostile") / "run"), data="digits", model="tiny",
                             steps=1, batch_size=8, warmup_steps=1, num_grid=2, sample_steps=1), progress=False)


def test_a_run_json_that_asks_for_a_huge_network(run, tmp_path, dk):
    """200,000 channels would be an allocation of hundreds of GB (an OOM kill); the weights file's header tells that
    it cannot be, before anything is built for real."""
    edited = tmp_path / "run"
    shutil.copytree(run, edited)
    info = json.loads((edited / "run.json").read_text())
    info["unet"]["channels"] = 200_000
    (edited / "run.json").write_text(json.dumps(info))
    r = dk("sample", edited, "--num", 1, "--out", tmp_path / "s.npz", check=False)
    assert r.returncode == 2 and "does not fit the network" in r.stderr and "run.json" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_run_json_that_is_not_json(run, tmp_path, dk):
    edited = tmp_path / "run"
    shutil.copytree(run, edited)
    (edited / "run.json").write_text("{ not json")
    r = dk("info", edited, check=False)
    assert r.returncode == 2 and str(edited / "run.json") in r.stderr and "Traceback" not in r.stderr
