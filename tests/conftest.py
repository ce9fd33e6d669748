"""Shared by every test folder: the tiny training settings, runs and data that several files use (made once per
session), the weight-perturbation helper and the command-line helper `dk`, as fixtures.

The closed-form oracle denoisers are a plain module, tests/oracles.py: tests/ is on pytest's `pythonpath`
(pyproject.toml), so `from oracles import GaussianOracle` works from every folder."""

import math
import subprocess
import sys

import pytest
import torch

# One thread for the tests run in this process. Several test modules used to set this at import, so it held for the
# whole session once collected; it is set here once, and the timings of the suite were measured that way.
torch.set_num_threads(1)

# A tiny digits run: 16 images a step, a 4-image grid at 2 sampling steps, no checkpoint before the end.
TINY = dict(data="digits", model="tiny", batch_size=16, log_every=1, checkpoint_every=100, warmup_steps=2,
            num_grid=4, sample_steps=2)


@pytest.fixture
def tiny():
    """The TrainConfig settings of a tiny digits run (a fresh dict per test): `TrainConfig(out=..., steps=3,
    **tiny)`."""
    return dict(TINY)


def _dk(*args, check=True):
    """Run `python -m diffusekit ARGS` as a user would; with check, fail the test with its stderr on a non-zero exit."""
    r = subprocess.run([sys.executable, "-m", "diffusekit", *map(str, args)], capture_output=True, text=True,
                       timeout=600)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="session")
def dk():
    """`dk("train", "--data", "digits", ...)`: the command line in a subprocess (see `_dk`)."""
    return _dk


def _perturbed(model, seed=0, skip=(), std=None):
    """Add Gaussian noise to every parameter whose name contains none of `skip`, in place; returns `model`.

    Zero-initialised layers would otherwise hide what a trained net does (the output conv alone makes every output
    of an untrained UNet exactly 0). By default the noise has std 0.5 / sqrt(fan-in) (fan-in 4 for vectors) and
    comes from a generator seeded with `seed`; with `std` it has that std everywhere and comes from torch's global
    generator (seed=None; seed it first)."""
    g = None if seed is None else torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(s in name for s in skip):
                continue
            if std is None:
                fan_in = p[0].numel() if p.dim() > 1 else 4
                p.add_(torch.randn(p.shape, generator=g) * 0.5 / math.sqrt(fan_in))
            else:
                p.add_(std * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture(scope="session")
def perturbed():
    """`perturbed(model, seed=0, skip=(), std=None)`: every weight perturbed in place (see `_perturbed`)."""
    return _perturbed


@pytest.fixture(scope="module")
def own_cache(tmp_path_factory):
    """A diffusekit cache (DIFFUSEKIT_CACHE: captions, eval statistics) of the requesting module's own, inherited by
    its subprocesses: nothing outside tmp is written, and the module's first text run really encodes."""
    import os

    old = os.environ.get("DIFFUSEKIT_CACHE")
    os.environ["DIFFUSEKIT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        del os.environ["DIFFUSEKIT_CACHE"]
    else:
        os.environ["DIFFUSEKIT_CACHE"] = old


# ---- shared data and runs (read-only: a test that writes into a run copies it to its tmp_path first) ------------


@pytest.fixture(scope="session")
def mnist5k():
    """The mnist5k built-in, loaded once (the moving-digits clips, their pictures and the video metrics use it)."""
    from diffusekit.data import load_data

    return load_data("mnist5k")


PHANTOMS_SIZE = 16


@pytest.fixture(scope="session")
def phantoms_run(tmp_path_factory):
    """A tiny UNet trained 3 steps on 16x16 phantoms with the command line: a poor prior, but a real run directory
    of 2-D images (the reconstruct command and the library call under it)."""
    out = tmp_path_factory.mktemp("recon") / "run"
    _dk("train", "--data", "phantoms", "--image-size", PHANTOMS_SIZE, "--model", "tiny", "--steps", "3",
        "--batch-size", "8", "--out", out, "--no-progress")
    return out


@pytest.fixture(scope="session")
def phantoms_model(phantoms_run):
    from diffusekit.model import TrainedModel

    return TrainedModel.load(phantoms_run)
