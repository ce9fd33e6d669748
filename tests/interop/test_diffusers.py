"""diffusers interop, both ways, on models built here (no download): a UNet2DModel saved by diffusers samples with
every diffusekit sampler (DDIM checked against diffusers' own DDIMScheduler loop), a diffusekit UNet exports to a
folder diffusers loads and whose network computes ours, the round trip samples what the run samples, and what
cannot be read or written is refused in one line by the command line."""

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import diffusekit as dk
from diffusekit.model import TrainedModel, build_net
from diffusekit.nets import unet_config
from diffusekit.samplers import SAMPLERS

diffusers = pytest.importorskip("diffusers")

OLD_RUNS = Path(__file__).parents[1] / "fixtures" / "old-runs"  # tiny digits runs (8x8, label and unconditional)
TINY_UNET = dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                 norm_num_groups=8, attention_head_dim=8)


def save_pipeline(path, scheduler=None, seed=0, **unet_options):
    """A tiny DDPMPipeline (or a bare UNet2DModel, scheduler=None) in diffusers' own save_pretrained layout."""
    torch.manual_seed(seed)  # diffusers' default init: a non-zero output conv, so the network's output matters
    unet = diffusers.UNet2DModel(**{**TINY_UNET, **unet_options})
    if scheduler is None:
        unet.save_pretrained(path)
    else:
        diffusers.DDPMPipeline(unet, scheduler).save_pretrained(path)
    return unet.eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusers")
    save_pipeline(root / "ddpm", diffusers.DDPMScheduler())
    save_pipeline(root / "cosine-v", diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2",
                                                             prediction_type="v_prediction"), seed=1)
    save_pipeline(root / "bare", seed=2)
    save_pipeline(root / "classes", diffusers.DDPMScheduler(), seed=3, num_class_embeds=3)
    return root


@pytest.fixture
def cli(capsys):
    """`cli(ARGS)`: (exit status, stdout, stderr) of `diffusekit.cli.main` run in this process."""
    from diffusekit.cli import main

    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's errors
            code = e.code
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


# ---- diffusers -> diffusekit -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,schedule,prediction", [("ddpm", "linear", "eps"), ("cosine-v", "cosine", "v")])
def test_ddim_matches_diffusers_ddim_loop(folders, name, schedule, prediction):
    """The strong oracle: the same network from the same noise, our DDIM (eta 0) against diffusers' DDIMScheduler
    loop with the pipeline's own scheduler settings."""
    model = TrainedModel.from_diffusers(folders / name)
    assert (model.schedule.name, model.info["prediction"]) == (schedule, prediction)
    unet = diffusers.UNet2DModel.from_pretrained(folders / name / "unet").eval()
    sched = diffusers.DDIMScheduler.from_pretrained(folders / name / "scheduler", clip_sample=False,
                                                    set_alpha_to_one=True)
    sched.set_timesteps(10)
    x = torch.randn((3, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
    mine = dk.sample(model.denoiser, (3, 1, 8, 8), sampler="ddim", steps=10, eta=0.0,
                     generator=torch.Generator().manual_seed(0))
    assert torch.allclose(mine, x, atol=1e-4, rtol=0), (mine - x).abs().max()
    drawn = model.sample(3, sampler="ddim", steps=10, seed=0, eta=0.0)  # the same, clipped to the image range
    assert torch.allclose(drawn, x.clamp(-1, 1), atol=1e-4, rtol=0)


def test_every_sampler_drives_a_diffusers_unet(folders):
    model = TrainedModel.from_diffusers(folders / "ddpm")
    for name in SAMPLERS:
        x = model.sample(2, sampler=name, steps=3, seed=1)
        assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all(), name


def test_a_bare_unet_assumes_ddpm_and_says_so(folders):
    with pytest.warns(UserWarning, match="no scheduler config: assumed DDPM's linear schedule"):
        model = TrainedModel.from_diffusers(folders / "bare")
    assert model.schedule == dk.DiscreteSchedule() and model.info["prediction"] == "eps"
    assert model.info["diffusers"]["assumed"] and model.step is None
    model = TrainedModel.from_diffusers(folders / "bare", schedule="cosine", prediction="v")  # no guess: no warning
    assert (model.schedule.name, model.info["prediction"], model.info["diffusers"]["assumed"]) == ("cosine", "v", [])


def test_class_labels_reach_a_class_conditional_unet(folders):
    model = TrainedModel.from_diffusers(folders / "classes")
    assert model.num_classes == 3
    x = model.sample(3, sampler="euler", steps=3, labels=[0, 1, 2])
    assert x.shape == (3, 1, 8, 8)
    assert not torch.equal(model.sample(1, steps=3, labels=0), model.sample(1, steps=3, labels=2))
    with pytest.raises(ValueError, match="no unconditional label.*guidance 1"):
        model.sample(2, steps=3, labels=1, guidance=2.0)


def test_sample_and_show_from_the_command_line(dk, cli, folders, tmp_path):
    dk("sample", "--diffusers", folders / "ddpm", "--num", "4", "--sampler", "heun", "--steps", "3", "--out",
       tmp_path / "s.npz", "--grid", tmp_path / "s.png")
    assert np.load(tmp_path / "s.npz")["images"].shape == (4, 8, 8, 1)
    assert Image.open(tmp_path / "s.png").format == "PNG"
    assert json.loads((tmp_path / "s.json").read_text())["diffusers"] == str(folders / "ddpm")
    r = cli("sample", "--diffusers", folders / "classes", "--num", "2", "--steps", "2", "--label", "2", "--out",
            tmp_path / "c.npz")
    assert r.returncode == 0 and np.load(tmp_path / "c.npz")["labels"].tolist() == [2, 2]
    r = cli("show", "--diffusers", folders / "ddpm", "--steps", "2", "--num", "2", "--out", tmp_path / "show")
    assert r.returncode == 0 and (tmp_path / "show" / "reverse.png").exists()


# ---- diffusekit -> diffusers -----------------------------------------------------------------------------------


def tiny_model(perturbed, shape=(3, 16, 16), num_classes=4, schedule="cosine", prediction="v", **overrides):
    """A TrainedModel built here: a tiny UNet (label-conditioned with num_classes) with every weight perturbed,
    so no zero-initialised layer hides a wrong mapping."""
    cfg = unet_config("tiny", shape[0], cond_dim=32 if num_classes else None, **overrides)
    net = perturbed(build_net(cfg, num_classes), seed=5)
    info = {"train": {"cond": "label" if num_classes else None, "data": "made-here"}, "unet": cfg.to_dict(),
            "schedule": dk.get_schedule(schedule).to_dict(), "prediction": prediction,
            "data": {"name": "made-here", "shape": list(shape), "num_classes": num_classes, "kind": "grid",
                     "class_names": [f"c{i}" for i in range(num_classes)] if num_classes else None}}
    return TrainedModel(info, net, 7, precision="fp32")


@pytest.mark.parametrize("shape,num_classes,overrides", [
    ((3, 16, 16), 4, {}),
    ((1, 8, 16), None, dict(channels=32, head_dim=16, attn_levels=(0, 1), num_res_blocks=2)),
], ids=["labels", "two-attention-levels"])
def test_export_computes_our_network(perturbed, tmp_path, shape, num_classes, overrides):
    model = tiny_model(perturbed, shape, num_classes, **overrides)
    model.to_diffusers(tmp_path / "out")
    unet = diffusers.UNet2DModel.from_pretrained(tmp_path / "out" / "unet").eval()
    assert set(unet.state_dict()) == set(_saved_keys(tmp_path / "out"))  # every tensor, no more
    x, t = torch.randn(5, *shape), torch.tensor([0.0, 3.5, 250.0, 700.0, 999.0])
    with torch.no_grad():
        labels = None if num_classes is None else torch.tensor([0, 1, 2, 3, num_classes])  # the last: no label
        ours = model.net(x, t) if labels is None else model.net(x, t, labels)
        theirs = unet(x, t, class_labels=labels).sample
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (ours - theirs).abs().max()
    pipe = diffusers.DDPMPipeline.from_pretrained(tmp_path / "out")  # the pipeline loads, with our schedule
    assert pipe.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    if num_classes is None:
        assert pipe(batch_size=1, num_inference_steps=2, output_type="np").images.shape == (1, 8, 16, 1)


def _saved_keys(folder):
    from safetensors import safe_open

    with safe_open(str(folder / "unet" / "diffusion_pytorch_model.safetensors"), framework="pt") as f:
        return list(f.keys())


def test_round_trip_samples_what_the_run_samples(perturbed, tmp_path):
    model = tiny_model(perturbed)
    model.to_diffusers(tmp_path / "out")
    back = TrainedModel.from_diffusers(tmp_path / "out")
    assert back.num_classes == 4 and back.info["data"]["class_names"] == ["c0", "c1", "c2", "c3"]
    assert back.schedule == model.schedule and back.info["prediction"] == "v"
    # heun starts on the Karras ladder's top, where this random net's samples reach |x| ~ 30 before clipping:
    # float32 round-off of ~1e-5 relative there, hence its looser bound; guidance: the unconditional label came along
    for sampler, guidance, tol in (("ddim", 1.0, 1e-5), ("dpmpp-2m", 2.0, 1e-5), ("heun", 2.0, 1e-3)):
        a = model.sample(4, sampler=sampler, steps=4, seed=3, labels=[0, 1, 2, 3], guidance=guidance)
        b = back.sample(4, sampler=sampler, steps=4, seed=3, labels=[0, 1, 2, 3], guidance=guidance)
        assert torch.allclose(a, b, atol=tol, rtol=0), (sampler, (a - b).abs().max())


def test_export_a_run_from_the_command_line(cli, tmp_path):
    run = OLD_RUNS / "digits-label"
    r = cli("export", run, "--diffusers", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    ours = TrainedModel.load(run, precision="fp32")
    theirs = TrainedModel.from_diffusers(tmp_path / "out")
    assert theirs.num_classes == 10 and theirs.info["diffusers"]["from"] == str(run)
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([5.0, 500.0, 990.0]), torch.tensor([1, 7, 10])
    assert torch.allclose(ours.net(x, t, y), theirs.net(x, t, y), atol=1e-5, rtol=0)
    r = cli("export", run, "--diffusers", tmp_path / "out")
    assert r.returncode == 2 and "not an empty folder" in r.stderr


# ---- refusals ----------------------------------------------------------------------------------------------------


def one_line_refusal(r, *words):
    assert r.returncode == 2, r
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_what_cannot_be_read_is_refused_in_one_line(cli, folders, tmp_path):
    out = ("--out", tmp_path / "s.npz")
    one_line_refusal(cli("sample", "--diffusers", tmp_path / "missing", *out), "no such folder")
    pickled = tmp_path / "pickled"
    shutil.copytree(folders / "bare", pickled)
    (pickled / "diffusion_pytorch_model.safetensors").rename(pickled / "diffusion_pytorch_model.bin")
    one_line_refusal(cli("sample", "--diffusers", pickled, *out), "diffusion_pytorch_model.bin", "pickle")
    fourier = tmp_path / "fourier"
    shutil.copytree(folders / "bare", fourier)
    cfg = json.loads((fourier / "config.json").read_text())
    (fourier / "config.json").write_text(json.dumps({**cfg, "time_embedding_type": "fourier"}))
    one_line_refusal(cli("sample", "--diffusers", fourier, *out), "time_embedding_type 'fourier'")
    one_line_refusal(cli("sample", OLD_RUNS / "digits", "--diffusers", folders / "ddpm", *out), "exactly one")
    one_line_refusal(cli("sample", OLD_RUNS / "digits", "--prediction", "v", *out), "for --diffusers models")
    assert not (tmp_path / "s.npz").exists()


def test_without_diffusers_the_error_says_how_to_install(cli, folders, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now raises ImportError
    one_line_refusal(cli("sample", "--diffusers", folders / "ddpm", "--out", tmp_path / "s.npz"),
                     "pip install diffusers")


def test_a_run_diffusers_cannot_express_is_refused(cli, perturbed, tmp_path):
    edm = tmp_path / "edm"
    shutil.copytree(OLD_RUNS / "digits", edm)
    info = json.loads((edm / "run.json").read_text())
    info.update(schedule=dk.KarrasSchedule().to_dict(), prediction="edm")
    (edm / "run.json").write_text(json.dumps(info))
    one_line_refusal(cli("export", edm, "--diffusers", tmp_path / "out"), "EDM")
    assert not (tmp_path / "out").exists()
    cases = [(dict(shape=(1, 32)), "1-D signals"),
             (dict(shape=(1, 9, 9)), "not a multiple of 2"),
             (dict(channels=12), "norm_groups=8 does not divide"),
             (dict(channels=16, channel_mult=(1, 4), head_dim=32, attn_levels=(0,)), "heads of sizes [16, 32]")]
    for options, words in cases:
        model = tiny_model(perturbed, **{"num_classes": None, **options})
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            model.to_diffusers(tmp_path / "refused")
    text = tiny_model(perturbed, num_classes=None)
    text.info["train"]["cond"] = "text"
    with pytest.raises(ValueError, match="cross-attends to text"):
        text.to_diffusers(tmp_path / "refused")
