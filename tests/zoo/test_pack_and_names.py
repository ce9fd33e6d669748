"""Packed models and zoo names: a packed run samples exactly as the run did (fp32) or as its weights rounded to bf16;
a damaged, truncated or missing file is one line naming it; an unknown name lists the zoo; a zoo name works wherever
a run directory does (load, sample, show, info, eval, --init, latent autoencoders). The zoo here is a temporary
folder (ZOO_DIR patched); the shipped models are tested in test_shipped.py."""

import json

import pytest
import torch
from safetensors.torch import load_file

import diffusekit.zoo as zoo
from diffusekit.cli import main
from diffusekit.model import TrainedModel
from diffusekit.train import TrainConfig, train
from diffusekit.zoo.pack import pack

TINY = dict(data="digits", model="tiny", batch_size=16, log_every=1, checkpoint_every=100, warmup_steps=2,
            num_grid=4, sample_steps=2, precision="fp32")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo-run") / "digits"
    train(TrainConfig(out=str(out), steps=3, cond="label", **TINY), progress=False)
    return out


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch):
    folder = tmp_path / "zoo"
    folder.mkdir()
    monkeypatch.setattr(zoo, "ZOO_DIR", folder)
    return folder


def test_fp32_pack_samples_exactly_as_the_run(run, tmp_path):
    packed = pack(run, tmp_path / "p", card={"task": "test"})
    a = TrainedModel.load(run, precision="fp32").sample(4, steps=3, seed=1, labels=[1, 2, 3, 4])
    b = TrainedModel.load(packed, precision="fp32").sample(4, steps=3, seed=1, labels=[1, 2, 3, 4])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    card = json.loads((packed / "card.json").read_text())
    assert card["state"]["step"] == 3 and card["task"] == "test" and set(card["sha256"]) == {
        "run.json", "weights.safetensors", "MODEL.md"}


def test_bf16_pack_holds_the_weights_rounded(run, tmp_path):
    packed = pack(run, tmp_path / "p", dtype="bf16")
    ema = load_file(str(run / "checkpoints" / "step-0000003" / "ema.safetensors"))
    shipped = load_file(str(packed / "weights.safetensors"))
    assert all(v.dtype == torch.bfloat16 for v in shipped.values() if v.is_floating_point())
    assert all(torch.equal(shipped[k].float(), ema[k].to(torch.bfloat16).float()) for k in ema)
    assert (packed / "weights.safetensors").stat().st_size < 0.6 * (run / "checkpoints" / "step-0000003" /
                                                                   "ema.safetensors").stat().st_size
    model = TrainedModel.load(packed, precision="fp32")
    assert next(model.net.parameters()).dtype == torch.float32 and model.step == 3


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "card"])
def test_a_damaged_packed_file_is_one_line_naming_it(run, tmp_path, capsys, damage):
    packed = pack(run, tmp_path / "p", dtype="bf16")
    w = packed / "weights.safetensors"
    if damage == "flip":
        data = bytearray(w.read_bytes())
        data[len(data) // 2] ^= 0xFF
        w.write_bytes(bytes(data))
    elif damage == "truncate":
        w.write_bytes(w.read_bytes()[:1000])
    elif damage == "delete":
        w.unlink()
    else:
        (packed / "card.json").write_text('{"sha256": ')
    rc = main(["sample", str(packed), "--num", "2", "--steps", "2", "--out", str(tmp_path / "s.npz")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    named = packed / ("card.json" if damage == "card" else "weights.safetensors")
    assert str(named) in err and not (tmp_path / "s.npz").exists()


def test_an_unknown_name_lists_the_zoo(run, fake_zoo, tmp_path, capsys, monkeypatch):
    pack(run, fake_zoo / "tiny-digits")
    monkeypatch.chdir(tmp_path)
    rc = main(["sample", "tiny-digitz", "--num", "2", "--out", "s.npz"])
    err = capsys.readouterr().err
    assert rc == 2 and "tiny-digitz" in err and "tiny-digits" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(FileNotFoundError, match="tiny-digits"):
        TrainedModel.load("zoo:nope")


def test_a_zoo_name_works_wherever_a_run_directory_does(run, fake_zoo, tmp_path, capsys, monkeypatch):
    pack(run, fake_zoo / "tiny-digits", dtype="bf16", card={"task": "tiny digits", "headline": "FD 1.0"})
    monkeypatch.chdir(tmp_path)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "tiny-digits" in out and "tiny digits" in out and "FD 1.0" in out
    assert main(["models", "tiny-digits"]) == 0 and "# tiny-digits" in capsys.readouterr().out
    assert main(["sample", "tiny-digits", "--num", "4", "--steps", "2", "--label", "3", "--out", "s.npz",
                 "--grid", "s.png"]) == 0
    assert (tmp_path / "s.png").exists()
    assert main(["show", "tiny-digits", "--steps", "2", "--num", "2"]) == 0
    assert (tmp_path / "tiny-digits-show" / "reverse.gif").exists()  # never written into the installed package
    assert main(["info", "tiny-digits"]) == 0 and "packed" in capsys.readouterr().out
    assert sorted(p.name for p in (fake_zoo / "tiny-digits").iterdir()) == [
        "MODEL.md", "card.json", "run.json", "weights.safetensors"]
    assert TrainedModel.load("tiny-digits").step == 3


def test_fine_tuning_from_a_zoo_name(run, fake_zoo, tmp_path):
    pack(run, fake_zoo / "tiny-digits")
    out = tmp_path / "ft"
    train(TrainConfig(out=str(out), steps=1, cond="label", init_from="tiny-digits", **TINY), progress=False)
    info = json.loads((out / "run.json").read_text())
    assert info["init_from"]["step"] == 3 and info["init_from"]["run"] == "tiny-digits"


def test_pack_refuses_an_existing_folder_and_a_latent_run_without_its_autoencoder(run, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        pack(run, tmp_path / "taken", overwrite=True)
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    info = json.loads((run / "run.json").read_text())
    fake_latent = tmp_path / "latent-run"
    fake_latent.mkdir()
    (fake_latent / "run.json").write_text(json.dumps({**info, "latent": {"run": "/elsewhere", "step": 1,
                                                                          "scale": 1.0, "fingerprint": "x"}}))
    (fake_latent / "checkpoints").symlink_to(run / "checkpoints")
    with pytest.raises(ValueError, match="autoencoder"):
        pack(fake_latent, tmp_path / "lp")


def test_a_latent_model_and_its_autoencoder_ship_together(fake_zoo, tmp_path):
    from diffusekit.train.autoencoder import AutoencoderTrainConfig, train_autoencoder

    ae, ldm = tmp_path / "ae", tmp_path / "ldm"
    train_autoencoder(AutoencoderTrainConfig(out=str(ae), steps=2, data="digits", factor=4, latent_channels=2,
                                             channels=8, batch_size=16, warmup_steps=2, precision="fp32"),
                      progress=False)
    train(TrainConfig(out=str(ldm), steps=2, latent=str(ae), **TINY), progress=False)
    pack(ae, fake_zoo / "tiny-ae")  # fp32: the latent run's fingerprint is of its fp32 decoder
    with pytest.raises(ValueError, match="not the autoencoder"):
        pack(ldm, tmp_path / "wrong", autoencoder=str(pack(ae, tmp_path / "ae16", dtype="bf16")))
    pack(ldm, fake_zoo / "tiny-ldm", autoencoder="zoo:tiny-ae")
    info = json.loads((fake_zoo / "tiny-ldm" / "run.json").read_text())
    assert info["latent"]["run"] == "zoo:tiny-ae"
    a = TrainedModel.load(ldm, precision="fp32").sample(3, steps=2, seed=0)
    b = TrainedModel.load("tiny-ldm", precision="fp32").sample(3, steps=2, seed=0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert b.shape == (3, 1, 8, 8)
