"""The training package's layout (issue 21): set-up, one step and hooks apart from a short loop that knows no
particular data set; data sets that hold something back check that themselves."""

import ast
from pathlib import Path

import pytest
import torch

import diffusekit.train as train_pkg
from diffusekit.data import shapes
from diffusekit.train import TrainConfig
from diffusekit.train.distributed import Dist
from diffusekit.train.setup import BatchStream, set_up
from diffusekit.train.step import draw_batch, train_step

TRAIN_DIR = Path(train_pkg.__file__).parent


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
            found.update(f"{'.' * node.level}{node.module or ''}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_the_trainer_imports_no_particular_data_set():
    for path in TRAIN_DIR.glob("*.py"):
        assert not any("shapes" in name for name in _imports(path)), path.name


def test_training_functions_stay_short():
    for path in TRAIN_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno + 1 <= 60, f"{path.name}:{node.lineno} {node.name}"


def test_load_shapes_refuses_a_training_split_with_held_out_combinations(monkeypatch):
    monkeypatch.setattr(shapes, "DEFAULT_N", 40)
    ds = shapes.load_shapes(seed=0)  # the real training split passes its own check
    rules = shapes.check_heldout(shapes.HELDOUT)
    assert len(ds) == 40 and not any(shapes.is_heldout(o, rules) for objs in ds.attributes for o in objs)

    make = shapes.make_shapes
    monkeypatch.setattr(shapes, "make_shapes", lambda n, seed, split: make(n, seed, split="all"))
    with pytest.raises(RuntimeError, match="held-out combinations .* they must stay unseen"):
        shapes.load_shapes(seed=0)


def test_set_up_and_one_step(tmp_path):
    """set_up builds a run at step 0 (run.json written); train_step advances the state by one global batch."""
    cfg = TrainConfig(out=str(tmp_path / "run"), data="digits", model="tiny", steps=2, batch_size=8,
                      cond="label", precision="fp32")
    s, st = set_up(cfg, resume=False, dist=Dist())
    assert (s.out / "run.json").exists() and st.step == 0 and not st.done(s.config)
    assert s.rows == slice(0, 8) and s.labels_all is not None and s.captions is None
    loss, grad_norm = train_step(s, st)
    assert st.step == 1 and st.images_seen == 8 and st.batches.pos == 8 and st.elapsed > 0
    assert torch.isfinite(loss) and float(grad_norm) > 0
    x0, sigma, eps, cond = draw_batch(s, st)
    assert x0.shape == eps.shape == (8, *s.x_all.shape[1:]) and sigma.shape == cond.shape == (8,)


def test_each_process_takes_its_slice_of_the_global_batch(tmp_path):
    cfg = TrainConfig(out=str(tmp_path / "run"), data="digits", model="tiny", steps=2, batch_size=8)
    s, _ = set_up(cfg, resume=False, dist=Dist())
    s.dist = Dist(rank=1, world_size=2)
    assert s.rows == slice(4, 8)


def test_batch_stream_resumes_from_its_position():
    a = BatchStream(10, 4, seed=1)
    first = [a.next() for _ in range(4)]
    b = BatchStream(10, 4, seed=1, epoch=a.epoch, pos=a.pos)
    assert torch.equal(a.next(), b.next()) and len(torch.cat(first)) == 16
