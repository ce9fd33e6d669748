"""Training with --cond text, in process: exact resume with captions from the cache, and the shapes data's training
split. (The text-to-image run end to end: tests/e2e/test_text_to_image.py.)"""

import json

import pytest
import torch
from safetensors.torch import load_file

from diffusekit.conditioning import TextConditioned
from diffusekit.model import TrainedModel
from diffusekit.train import TrainConfig, train
from diffusekit.rundir import latest_checkpoint

# a caption cache of this module's own (tests/conftest.py): nothing outside tmp is written
pytestmark = pytest.mark.usefixtures("own_cache")


def test_text_resume_is_exact(tiny, tmp_path, monkeypatch):
    """N steps straight == N/2 + resume + N/2 with --cond text: captions come from the cache, and the empty-prompt
    dropout draws from the saved noise generator (p_uncond 0.5, so both halves drop some captions)."""
    from diffusekit.text import TextEncoder

    cfg = dict(tiny, cond="text", precision="fp32", p_uncond=0.5)
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    train(TrainConfig(out=str(straight), steps=4, **cfg), progress=False)

    def no_encoder(*a, **k):
        raise AssertionError("the captions were encoded again: the cache should have served them")

    monkeypatch.setattr(TextEncoder, "load", no_encoder)  # grid prompts use the encoder already in memory
    train(TrainConfig(out=str(halves), steps=2, **cfg), progress=False)
    train(TrainConfig(out=str(halves), steps=4, **cfg), resume=True, progress=False)
    for name in ("model", "ema", "state"):
        a = load_file(str(latest_checkpoint(straight / "checkpoints") / f"{name}.safetensors"))
        b = load_file(str(latest_checkpoint(halves / "checkpoints") / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    logs = [[json.loads(line)["loss"] for line in open(r / "metrics.jsonl")] for r in (straight, halves)]
    assert logs[0] == logs[1]


def test_shapes_trains_on_its_training_split_only(tmp_path, monkeypatch):
    """`--data shapes --cond text` (a 96-image stand-in for the 10,000 built-in): the trainer's data has no held-out
    colour-kind combination, the model trains on RGB, and samples for a held-out prompt come back."""
    from diffusekit.data import shapes
    from diffusekit.train import distributed, setup

    monkeypatch.setattr(shapes, "DEFAULT_N", 96)
    cfg = TrainConfig(out=str(tmp_path / "shapes"), data="shapes", cond="text", model="tiny", steps=2,
                      batch_size=8, num_grid=4, sample_steps=2)
    ds, captions, text = setup.captioned_data(cfg, distributed.Dist())
    rules = shapes.check_heldout(shapes.HELDOUT)
    assert len(ds) == 96 and not any(shapes.is_heldout(o, rules) for objs in ds.attributes for o in objs)
    assert captions.captions == sorted(set(ds.captions)) and text["prompts"] == list(dict.fromkeys(ds.captions))[:4]
    assert text["context_length"] == int(captions.mask.sum(1).max())
    model = TrainedModel.load(train(cfg, progress=False))
    held = shapes.make_shapes(2, seed=5, split="heldout")
    x = model.sample(2, prompts=held.captions, guidance=2.0, steps=2)
    assert x.shape == (2, 3, 32, 32) and isinstance(model.net, TextConditioned)
