"""Latent diffusion: the latent scale, a tiny autoencoder run that trains, resumes exactly and loads back as a codec,
the codec's checks, and a latent diffusion run that trains, samples (decoded), shows and resumes."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from diffusekit.latent import LatentCodec, latent_scale
from diffusekit.nets.autoencoder import Autoencoder, autoencoder_config
from diffusekit.train.autoencoder import AutoencoderTrainConfig, train_autoencoder

TINY_AE = dict(data="digits", factor=4, latent_channels=2, channels=8, batch_size=16, log_every=1,
               checkpoint_every=100, warmup_steps=2, precision="fp32")


def test_latent_scale_makes_unit_variance():
    ae = Autoencoder(autoencoder_config(4, 1, (8, 8), latent_channels=2, channels=8))
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    s = latent_scale(ae, x)
    z = LatentCodec(ae, s).encode(x)
    assert z.std().item() == pytest.approx(1.0, rel=1e-4)


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae") / "run"
    train_autoencoder(AutoencoderTrainConfig(out=str(out), steps=4, **TINY_AE), progress=False)
    return out


def test_autoencoder_run_records_config_and_scale(ae_run):
    info = json.loads((ae_run / "run.json").read_text())
    assert info["autoencoder"]["latent_channels"] == 2 and info["autoencoder"]["spatial"] == [8, 8]
    state = json.loads((ae_run / "checkpoints" / "step-0000004" / "state.json").read_text())
    codec = LatentCodec.load(ae_run)
    assert codec.step == 4 and codec.scale == state["latent_scale"] > 0
    assert codec.latent_shape == (2, 2, 2)
    rows = [json.loads(r) for r in (ae_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(r["loss"] > 0 for r in rows)
    assert (ae_run / "samples" / "reconstructions.png").exists()


def test_autoencoder_resume_is_exact(tmp_path, ae_run):
    halves = tmp_path / "halves"
    train_autoencoder(AutoencoderTrainConfig(out=str(halves), steps=2, **TINY_AE), progress=False)
    train_autoencoder(AutoencoderTrainConfig(out=str(halves), steps=4, **TINY_AE), resume=True, progress=False)
    for name in ("model", "ema"):
        a = load_file(str(ae_run / "checkpoints" / "step-0000004" / f"{name}.safetensors"))
        b = load_file(str(halves / "checkpoints" / "step-0000004" / f"{name}.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_codec_record_refuses_a_missing_or_different_autoencoder(tmp_path, ae_run):
    codec = LatentCodec.load(ae_run)
    record = codec.record()
    assert LatentCodec.from_record(record).fingerprint() == record["fingerprint"]
    moved = dict(record, run=str(tmp_path / "gone"))
    with pytest.raises(ValueError, match="gone.*missing"):
        LatentCodec.from_record(moved)
    copy = tmp_path / "copy"
    shutil.copytree(ae_run, copy)
    other = dict(record, run=str(copy), fingerprint="0" * 16)
    with pytest.raises(ValueError, match="not the one"):
        LatentCodec.from_record(other)
    with pytest.raises(ValueError, match="not an autoencoder run"):
        (tmp_path / "diff").mkdir()
        (tmp_path / "diff" / "run.json").write_text(json.dumps({"train": {}}))
        LatentCodec.load(tmp_path / "diff")


def test_latent_run_trains_samples_shows_and_resumes(tmp_path, ae_run):
    from diffusekit.model import TrainedModel
    from diffusekit.train import TrainConfig, train
    from diffusekit.viz.show import show

    run = tmp_path / "ldm"
    tiny = dict(data="digits", model="tiny", batch_size=16, log_every=1, checkpoint_every=100, warmup_steps=2,
                num_grid=4, sample_steps=2, precision="fp32", latent=str(ae_run))
    train(TrainConfig(out=str(run), steps=2, **tiny), progress=False)
    info = json.loads((run / "run.json").read_text())
    assert info["data"]["shape"] == [2, 2, 2] and info["latent"]["run"] == str(ae_run)
    assert (run / "latents.safetensors").exists()
    model = TrainedModel.load(run, precision="fp32")
    assert model.shape == (2, 2, 2) and model.data_shape == (1, 8, 8)
    x = model.sample(3, sampler="heun", steps=2, seed=0)
    assert x.shape == (3, 1, 8, 8) and x.abs().max() <= 1
    z = model.sample(3, sampler="heun", steps=2, seed=0, decode=False)
    torch.testing.assert_close(model.codec.decode(z), x)
    paths = show(model, tmp_path / "show", steps=2, num=2)
    assert all(p.exists() for p in paths.values())
    train(TrainConfig(out=str(run), steps=3, **tiny), resume=True, progress=False)
    assert TrainedModel.load(run).step == 3


def test_latent_run_names_a_missing_autoencoder(tmp_path, ae_run):
    from diffusekit.model import TrainedModel
    from diffusekit.train import TrainConfig, train

    ae = tmp_path / "ae"
    shutil.copytree(ae_run, ae)
    run = tmp_path / "ldm"
    train(TrainConfig(out=str(run), steps=1, data="digits", model="tiny", batch_size=16, warmup_steps=1, num_grid=2,
                      sample_steps=1, precision="fp32", latent=str(ae)), progress=False)
    shutil.rmtree(ae)
    with pytest.raises(ValueError, match=f"{ae}.*missing"):
        TrainedModel.load(run)
    with pytest.raises(ValueError, match="trained on data of shape"):
        train(TrainConfig(out=str(tmp_path / "other"), steps=1, data="mnist5k", model="tiny", latent=str(ae_run)),
              progress=False)


def test_latent_run_with_class_labels(tmp_path, ae_run):
    """Conditioning is unchanged on latents: a label-conditioned latent run samples the asked labels' latents and
    decodes them, with guidance."""
    from diffusekit.model import TrainedModel
    from diffusekit.train import TrainConfig, train

    run = tmp_path / "ldm-label"
    train(TrainConfig(out=str(run), steps=2, data="digits", model="tiny", batch_size=16, warmup_steps=1, num_grid=4,
                      sample_steps=1, precision="fp32", latent=str(ae_run), cond="label"), progress=False)
    model = TrainedModel.load(run, precision="fp32")
    assert model.num_classes == 10 and model.shape == (2, 2, 2)
    x = model.sample(4, sampler="ddim", steps=2, labels=[0, 1, 2, 3], guidance=2.0)
    assert x.shape == (4, 1, 8, 8) and torch.isfinite(x).all()


@pytest.mark.usefixtures("own_cache")
def test_latent_run_with_text(tmp_path, ae_run):
    """Text conditioning is unchanged on latents too: the frozen encoder's tokens go to the latent UNet's
    cross-attention, prompts and negative prompts are taken as on pixel runs."""
    from diffusekit.model import TrainedModel
    from diffusekit.train import TrainConfig, train

    run = tmp_path / "ldm-text"
    train(TrainConfig(out=str(run), steps=2, data="digits", model="tiny", batch_size=16, warmup_steps=1, num_grid=2,
                      sample_steps=1, precision="fp32", latent=str(ae_run), cond="text"), progress=False)
    model = TrainedModel.load(run, precision="fp32")
    assert model.text is not None and model.shape == (2, 2, 2)
    x = model.sample(3, steps=2, prompts=["the digit 7", "the digit 1"], guidance=2.0, negative_prompt="the digit 0")
    assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()
    assert model.prompts_for(3, ["the digit 7", "the digit 1"]) == ["the digit 7", "the digit 1", "the digit 7"]


def test_latent_reconstruction_goes_through_the_decoder(tmp_path, ae_run):
    """A latent run reconstructs with DPS on A(decode(z)), then restores the measured part in pixel space: the known
    pixels of a noiseless inpainting come back exactly; DDNM, which needs a linear A on the latents, is refused."""
    from diffusekit.data import load_data
    from diffusekit.inverse.latent import latent_operator
    from diffusekit.inverse.operators import Mask, box_mask
    from diffusekit.inverse.task import reconstruct_image
    from diffusekit.model import TrainedModel
    from diffusekit.train import TrainConfig, train

    run = tmp_path / "ldm"
    train(TrainConfig(out=str(run), steps=2, data="digits", model="tiny", batch_size=16, warmup_steps=1, num_grid=2,
                      sample_steps=1, precision="fp32", latent=str(ae_run)), progress=False)
    model = TrainedModel.load(run, precision="fp32")
    truth = load_data("digits").x[:2]
    res = reconstruct_image(model, truth, "inpaint", method="dps", steps=3, baselines=False)
    known = box_mask((8, 8))
    assert res["reconstruction"].shape == (2, 1, 8, 8) and res["consistency"] < 1e-6
    torch.testing.assert_close(res["raw"][..., known], truth[..., known])
    with pytest.raises(ValueError, match="use --method dps"):
        reconstruct_image(model, truth, "inpaint", method="ddnm", steps=3)
    op = latent_operator(model.codec, Mask(known))
    z = torch.randn(2, *model.shape, requires_grad=True)
    y = op.forward(z)
    torch.testing.assert_close(y, Mask(known).forward(model.codec.autoencoder.decode(z / model.codec.scale)))
    y.square().sum().backward()
    assert z.grad.abs().sum() > 0 and op.check_y(y) == (2, *model.shape)
