"""Spoken digits through the command line, as a user runs them: train a tiny class-conditional model on a tiny
recipe of `spoken-digits` -> sample WAVs at 8 kHz with a picture each -> eval (the judge's accuracy, FD and IS) ->
show (waveforms and spectrograms)."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from diffusekit.cli import main
from diffusekit.data.wav import read_wav

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
RECIPE = {"n_train": 20, "n_test": 10}
# attention off: a tiny 1-D UNet attending over 4,000 positions would be most of the test's time
NET = {"attn_levels": [], "channels": 8, "norm_groups": 4}


@pytest.fixture(scope="module")
def run(dk, own_cache, tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    (folder / "c.json").write_text(json.dumps({"data_options": RECIPE, "model_overrides": NET, "num_grid": 4,
                                               "sample_steps": 2}))
    dk("train", "--data", "spoken-digits", "--cond", "label", "--model", "tiny", "--steps", "2", "--batch-size", "4",
       "--config", folder / "c.json", "--out", folder / "run", "--no-progress")
    return folder / "run"


def test_train_records_the_rate_and_classes(run):
    info = json.loads((run / "run.json").read_text())
    assert info["data"]["rate"] == 8000 and info["data"]["num_classes"] == 10
    assert info["data"]["class_names"][7] == "seven" and info["train"]["data_options"] == RECIPE
    assert (run / "samples" / "latest.png").is_file() and list((run / "samples").glob("*-spectrogram.png"))


def test_sample_writes_8khz_wavs_with_a_picture_each(dk, run, tmp_path):
    dk("sample", run, "--num", "3", "--steps", "2", "--label", "3", "--out", tmp_path / "s.npz", "--wav",
       tmp_path / "wav", "--grid", tmp_path / "g.png")
    for i in range(3):
        x, rate = read_wav(tmp_path / "wav" / f"sample-{i:04d}.wav")
        assert rate == 8000 and x.shape == (1, 8000)
        w, h = Image.open(tmp_path / "wav" / f"sample-{i:04d}.png").size
        assert h > 128 + 64  # the waveform above the spectrogram
    assert np.load(tmp_path / "s.npz")["labels"].tolist() == [3, 3, 3]
    assert (tmp_path / "g-spectrogram.png").is_file()


def test_eval_judges_the_asked_digits(run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["eval", str(run), "--num", "20", "--steps", "2", "--n", "10", "--json-out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "asked digit recognised" in text and "real-vs-real floor" in text and "IS-style" in text
    res = json.loads(out.read_text())
    assert res["accuracy"]["n"] == 20 and 0 <= res["accuracy"]["value"] <= 1 and res["fd"]["n"] == 10
    assert res["fd"]["floor"] > 0 and 1 <= res["is"]["value"] <= 10 and res["is"]["real"] > 5


def test_show_draws_waveforms_and_spectrograms(run, tmp_path):
    assert main(["show", str(run), "--out", str(tmp_path / "show"), "--steps", "2"]) == 0
    for name in ("forward", "reverse", "samples"):
        assert (tmp_path / "show" / f"{name}.png").is_file()
        assert (tmp_path / "show" / f"{name}-spectrogram.png").is_file()
