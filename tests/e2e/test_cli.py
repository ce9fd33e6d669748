"""The command line, end to end, as a user runs it: train -> sample -> show -> info, and its errors."""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="module")
def run(dk, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    dk("train", "--data", "digits", "--model", "tiny", "--steps", "3", "--batch-size", "16", "--out", out,
       "--cond", "label", "--lr-decay", "0.5", "--no-progress")
    return out


def test_train_writes_a_run(run):
    assert (run / "run.json").exists() and (run / "metrics.jsonl").exists()
    assert json.loads((run / "run.json").read_text())["train"]["lr_decay"] == 0.5  # the flag reaches the config
    assert Image.open(run / "samples" / "latest.png").size[0] >= 256


def test_sample_npz_and_grid(dk, run, tmp_path):
    dk("sample", run, "--num", "5", "--sampler", "heun", "--steps", "3", "--seed", "1", "--out", tmp_path / "s.npz",
       "--grid", tmp_path / "s.png", "--batch", "2", "--label", "7", "--guidance", "2.0")
    z = np.load(tmp_path / "s.npz")
    assert z["images"].dtype == np.uint8 and z["images"].shape == (5, 8, 8, 1)
    assert z["labels"].tolist() == [7] * 5
    assert Image.open(tmp_path / "s.png").format == "PNG"
    dk("sample", run, "--num", "5", "--sampler", "heun", "--steps", "3", "--seed", "1", "--out", tmp_path / "t.npz",
       "--batch", "2", "--label", "7", "--guidance", "2.0")
    assert np.array_equal(np.load(tmp_path / "t.npz")["images"], z["images"]), "same seed, same images"
    dk("sample", run, "--num", "2", "--steps", "3", "--spacing", "logsnr", "--sigma-min", "0.05", "--label", "3",
       "--out", tmp_path / "u.npz")
    assert np.load(tmp_path / "u.npz")["images"].shape == (2, 8, 8, 1)
    dk("sample", run, "--num", "2", "--sampler", "restart", "--steps", "3", "--out", tmp_path / "r.npz")
    assert np.load(tmp_path / "r.npz")["images"].shape == (2, 8, 8, 1)


def test_show_writes_strips_and_gif(dk, run, tmp_path):
    r = dk("show", run, "--out", tmp_path / "show", "--steps", "4", "--num", "3")
    paths = r.stdout.split()
    assert [p.rsplit("/", 1)[1] for p in paths] == ["forward.png", "reverse.png", "reverse.gif"]
    gif = Image.open(tmp_path / "show" / "reverse.gif")
    assert gif.is_animated and gif.n_frames >= 2


def test_info(dk, run):
    r = dk("info", run, "--json")
    info = json.loads(r.stdout)
    assert info["steps_trained"] == 3 and info["data"]["name"] == "digits" and info["params"] > 0
    assert "parameters" in dk("info", run).stdout


@pytest.fixture
def cli(capsys, monkeypatch):
    """`cli(ARGS)`: what `dk(ARGS, check=False)` returns (exit status, stderr), from `diffusekit.cli.main` run in this
    process -- the command's code path without an interpreter start-up per case. The allocator environment is set
    while it runs, so `train` does not re-execute itself (it would replace this process)."""
    from diffusekit import fast
    from diffusekit.cli import main

    def run(*args):
        with monkeypatch.context() as m:
            for k, v in fast.allocator_env().items():
                m.setenv(k, v)
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:  # argparse's errors
                code = e.code
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def test_errors_name_what_is_wrong(dk, cli, run, tmp_path):
    """One error of each command in a real process (the exit status reaches the shell), the others in process."""
    r = dk("sample", tmp_path / "nothing", "--out", tmp_path / "x.npz", check=False)
    assert r.returncode == 2 and "not a diffusekit run directory" in r.stderr
    r = cli("sample", run, "--out", tmp_path / "x.npz", "--label", "12")
    assert r.returncode == 2 and "unknown label 12" in r.stderr and "0..9" in r.stderr
    r = cli("sample", run, "--out", tmp_path / "x.npz", "--sampler", "dpm")
    assert r.returncode == 2 and "invalid choice: 'dpm'" in r.stderr
    r = cli("sample", run, "--out", tmp_path / "x.npz", "--sampler", "ddim", "--sigma-min", "0.05")
    assert r.returncode == 2 and "choose one of those spacings" in r.stderr and not (tmp_path / "x.npz").exists()
    r = dk("train", "--data", tmp_path / "missing", "--out", tmp_path / "r", "--steps", "1", check=False)
    assert r.returncode == 2 and "neither a built-in data set" in r.stderr
    r = cli("train", "--data", "digits", "--out", run, "--steps", "1")
    assert r.returncode == 2 and "already holds files" in r.stderr
    r = cli("train", "--out", run, "--resume", "--init", run, "--steps", "9")
    assert r.returncode == 2 and "give one" in r.stderr
    r = cli("train", "--data", "digits", "--init", run, "--out", tmp_path / "ft", "--steps", "1")
    assert r.returncode == 2 and "cond='label'" in r.stderr  # the label model cannot start an unconditional run


def test_edm_recipe_from_the_command_line(dk, tmp_path):
    """EDM's training (Karras et al. 2022: VE ladder, EDM preconditioning and weighting, log-normal noise levels)
    is four flags; each reaches the saved config, and the run samples."""
    out = tmp_path / "edm"
    dk("train", "--data", "digits", "--model", "tiny", "--steps", "2", "--batch-size", "8", "--out", out,
       "--schedule", "karras", "--prediction", "edm", "--loss-weighting", "edm", "--noise-sampler", "lognormal",
       "--no-progress")
    cfg = json.loads((out / "run.json").read_text())["train"]
    assert (cfg["schedule"], cfg["prediction"], cfg["loss_weighting"], cfg["noise_sampler"]) == \
        ("karras", "edm", "edm", "lognormal")
    dk("sample", out, "--num", "2", "--sampler", "heun", "--steps", "3", "--out", tmp_path / "s.npz")
    assert np.load(tmp_path / "s.npz")["images"].shape == (2, 8, 8, 1)
    dk("sample", out, "--num", "2", "--sampler", "ddpm", "--steps", "3", "--out", tmp_path / "d.npz")  # no timesteps
    assert np.load(tmp_path / "d.npz")["images"].shape == (2, 8, 8, 1)
    r = dk("train", "--data", "digits", "--out", tmp_path / "bad", "--steps", "1", "--noise-sampler", "beta",
           check=False)
    assert r.returncode == 2 and "invalid choice: 'beta'" in r.stderr and not (tmp_path / "bad").exists()


def test_help_teaches(dk):
    r = dk("--help")
    assert "examples:" in r.stdout and "torchrun" in r.stdout
    r = dk("train", "--help")
    assert "mnist5k" in r.stdout and "--resume" in r.stdout


@pytest.mark.parametrize("shape", [(1, 32), (1, 4, 8, 8)], ids=["signals", "video"])
def test_one_engine_for_signals_and_video(dk, tmp_path, shape):
    """The same train -> sample -> show commands on (N, C, L) signals and (N, C, T, H, W) clips."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", np.tanh(rng.standard_normal((24, *shape))).astype(np.float32))
    run = tmp_path / "run"
    dk("train", "--data", tmp_path / "x.npy", "--model", "tiny", "--steps", "2", "--batch-size", "8", "--out", run,
       "--no-progress")
    dk("sample", run, "--num", "3", "--steps", "3", "--out", tmp_path / "s.npz", "--grid", tmp_path / "s.png",
       *(["--wav", tmp_path / "wav"] if len(shape) == 2 else []))
    images = np.load(tmp_path / "s.npz")["images"]
    if len(shape) == 2:  # signals come out as real WAV files too
        from diffusekit.data.wav import read_wav

        wav, rate = read_wav(tmp_path / "wav" / "sample-0002.wav")
        assert wav.shape == shape and rate == 16000
    assert images.dtype == np.uint8 and images.shape == (3, *shape[1:], 1)
    paths = dk("show", run, "--steps", "3", "--num", "2").stdout.split()
    assert paths and all(Image.open(p).size[0] > 0 for p in paths)


def test_latent_diffusion_from_the_command_line(tmp_path, dk):
    """train-autoencoder, then train --latent, sample (decoded to the data's shape) and info; a latent run whose
    autoencoder is gone says so in one line."""
    ae, ldm = tmp_path / "ae", tmp_path / "ldm"
    dk("train-autoencoder", "--data", "digits", "--factor", "4", "--latent-channels", "2", "--channels", "8",
       "--steps", "2", "--batch-size", "16", "--out", ae, "--no-progress")
    dk("train", "--data", "digits", "--latent", ae, "--model", "tiny", "--steps", "2", "--batch-size", "16",
       "--out", ldm, "--no-progress")
    dk("sample", ldm, "--num", "3", "--steps", "2", "--out", tmp_path / "s.npz", "--grid", tmp_path / "s.png")
    assert np.load(tmp_path / "s.npz")["images"].shape == (3, 8, 8, 1)
    assert "latent" in dk("info", ldm).stdout
    shutil.rmtree(ae)
    r = dk("sample", ldm, "--num", "1", "--out", tmp_path / "t.npz", check=False)
    assert r.returncode == 2 and "missing" in r.stderr and str(ae) in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
