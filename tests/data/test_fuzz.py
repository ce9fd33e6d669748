"""Hostile files through every reader: the bounded run of the mutation fuzzer (benchmarks/fuzz_readers.py, 300
seeded cases, so it cannot flake), and property tests with hypothesis for the JSON the readers take (run.json, a
training config, captions.jsonl). Zero tracebacks, hangs and memory blow-ups; every error one line naming the file."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).parents[2]
SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=60,
                    suppress_health_check=[HealthCheck.too_slow])
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
           | st.sampled_from([10**18, -1, 0, 2**63, "", "digits", "karras", "label", "text", [], {}]))
VALUES = st.recursive(SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                    max_size=4), max_leaves=10)


def test_the_bounded_fuzz_finds_nothing(tmp_path):
    out = tmp_path / "fuzz.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fuzz_readers.py"), "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.exists(), r.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep["cases"] == 300 and sum(rep["totals"].values()) == 300
    bad = [f"{f['reader']} {f['file']} {f['mutation']}: {f['outcome']}: {f['message'][:200]}" for f in rep["failures"]]
    assert not bad, "\n".join(bad)
    assert r.returncode == 0


def check_answer(fn, path: Path):
    """fn() returns, or raises ValueError / FileNotFoundError with one line naming `path`."""
    try:
        fn()
    except (ValueError, FileNotFoundError) as e:
        msg = str(e).strip()
        assert "\n" not in msg and path.name in msg, f"{type(e).__name__}: {msg}"


def mutate(doc, data):
    """doc with one node (picked by hypothesis) replaced by a JSON value, deleted, or given an unknown sibling."""
    paths = [()]
    stack = [((), doc)]
    while stack:
        p, v = stack.pop()
        for k, c in (v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()):
            paths.append(p + (k,))
            stack.append((p + (k,), c))
    path = data.draw(st.sampled_from(paths))
    new = data.draw(VALUES)
    if not path:
        return new
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if data.draw(st.booleans()) or not isinstance(parent, dict):
        parent[path[-1]] = new
    else:
        del parent[path[-1]]
    return doc


@pytest.fixture(scope="module")
def run_copy(tmp_path_factory):
    from diffusekit.train import TrainConfig, train

    run = train(TrainConfig(out=str(tmp_path_factory.mktemp("prop") / "run"), data="digits", model="tiny", steps=1,
                            batch_size=8, warmup_steps=1, num_grid=2, sample_steps=1), progress=False)
    return Path(run), json.loads((Path(run) / "run.json").read_text())


@SETTINGS
@given(data=st.data())
def test_any_run_json(run_copy, data):
    from diffusekit.model import TrainedModel
    from diffusekit.rundir import format_summary, run_summary

    run, info = run_copy
    path = run / "run.json"
    path.write_text(json.dumps(mutate(json.loads(json.dumps(info)), data)))
    check_answer(lambda: TrainedModel.load(run), path)
    check_answer(lambda: format_summary(run_summary(run)), path)
    path.write_text(json.dumps(info))


@SETTINGS
@given(data=st.data())
def test_any_training_config(data):
    from diffusekit.train.config import TrainConfig

    doc = mutate(TrainConfig(data="digits", steps=10, model="tiny").to_dict(), data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(doc))
        check_answer(lambda: TrainConfig.from_json_file(path), path)


@pytest.fixture(scope="module")
def captioned(tmp_path_factory):
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("captioned")
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / name)
    return folder


@SETTINGS
@given(data=st.data())
def test_any_captions_jsonl(captioned, data):
    from diffusekit.data.captions import load_captioned

    lines = [{"file": "a.png", "caption": "a black square"}, {"file": "b.png", "caption": "another"}]
    doc = mutate(lines, data)
    path = captioned / "captions.jsonl"
    rows = doc if isinstance(doc, list) else [doc]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    check_answer(lambda: load_captioned(captioned), path)
