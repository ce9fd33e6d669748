"""Molecules in the training system: the EGNN is built from the data's kind, every row is conditioned on its
molecule's graph, the noise of the forward process lives in the data's subspace (centred, 0 at padding), a resumed
run continues bit for bit, and the conditionings molecules cannot take are refused. A tiny recipe (12 molecules,
2 conformers each) in this module's own cache."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("rdkit")

from diffusekit.rundir import latest_checkpoint  # noqa: E402
from diffusekit.train import TrainConfig, train  # noqa: E402
from diffusekit.train import distributed  # noqa: E402
from diffusekit.train.setup import set_up  # noqa: E402
from diffusekit.train.step import draw_batch  # noqa: E402

RECIPE = {"max_molecules": 12, "conformers": 2, "embed": 4}
TINY = dict(data="molecules", data_options=RECIPE, model="tiny", batch_size=8, log_every=1, warmup_steps=2,
            num_grid=8, sample_steps=2)


def config(out, **kw):
    return TrainConfig(out=str(out), **{**TINY, **kw})


def test_the_noise_is_centred_on_the_real_atoms_and_0_at_padding(own_cache, tmp_path):
    s, st = set_up(config(tmp_path / "run", steps=1), False, distributed.Dist())
    x0, sigma, eps, (atoms, bonds) = draw_batch(s, st)
    real = (atoms > 0)[:, None].expand_as(eps)
    assert s.info["arch"] == "molecules" and s.info["data"]["kind"] == "molecules"
    assert (atoms == 0).any() and torch.all(eps[~real] == 0)  # some padding in the batch, and none of it noisy
    mean = (eps * real).sum(2) / real.sum(2)
    assert mean.abs().max() < 1e-6 and eps[real].std() > 0.5  # zero-mean per molecule and axis, still noise
    m = s.graphs[2][st.batches._perm[:8]]  # the rows' molecules, looked up as the step does
    assert torch.equal(atoms, s.ds.atoms[m]) and torch.equal(bonds, s.ds.bonds[m])


def test_resume_is_exact(own_cache, tmp_path):
    """4 steps straight == 2 steps, stop, --resume, 2 more: the same weights, EMA, optimizer and losses."""
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    train(config(straight, steps=4), progress=False)
    train(config(halves, steps=2), progress=False)
    train(config(halves, steps=4), resume=True, progress=False)
    for name in ("model", "ema", "state"):
        a, b = (load_file(str(latest_checkpoint(r / "checkpoints") / f"{name}.safetensors"))
                for r in (straight, halves))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    logs = [[json.loads(line)["loss"] for line in open(Path(r) / "metrics.jsonl")] for r in (straight, halves)]
    assert logs[0] == logs[1]


@pytest.mark.parametrize("kw, words", [({"cond": "label"}, "--cond label"), ({"cond": "text"}, "captioned data is one of"),
                                       ({"points_per_step": 4}, "points_per_step"),
                                       ({"data_options": {"atoms": 3}}, "unknown data option")])
def test_what_molecules_cannot_take_is_refused_in_one_line(own_cache, tmp_path, kw, words):
    with pytest.raises(ValueError, match=words) as e:
        train(config(tmp_path / "run", steps=1, **kw), progress=False)
    assert "\n" not in str(e.value)
