"""The models that ship in the package: each loads and samples through the CLI, each card's figures come from a
committed raw file, the zoo stays small, and a wheel built from the repository (not this editable install) carries
it: installed in a fresh virtual environment, `diffusekit models` lists it and a zoo model samples."""

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from diffusekit import zoo
from diffusekit.cli import main

ROOT = Path(__file__).resolve().parents[2]
NAMES = zoo.names()
AUTOENCODERS = [n for n in NAMES if "autoencoder" in json.loads((zoo.ZOO_DIR / n / "run.json").read_text())]
SAMPLERS = [n for n in NAMES if n not in AUTOENCODERS]  # the models that sample (autoencoders encode and decode)
BUDGET_MB = 100  # the README states the zoo's size; the issue asks for well under this


def sample_args(name: str, out: Path) -> list[str]:
    return ["sample", name, "--num", "2", "--steps", "2", "--batch", "2", "--out", str(out / "s.npz"),
            "--grid", str(out / "s.png")]


def test_the_zoo_ships_models_and_stays_small():
    assert NAMES, "the zoo is empty"
    total = sum(f.stat().st_size for n in NAMES for f in (zoo.ZOO_DIR / n).iterdir())
    assert total < BUDGET_MB * 1e6


def test_the_readme_states_the_zoo_and_its_size():
    import re

    readme = (ROOT / "README.md").read_text()
    stated = float(re.search(r"\(`diffusekit/zoo/`, ([\d.]+) MB in all", readme).group(1))
    total = sum(f.stat().st_size for n in NAMES for f in (zoo.ZOO_DIR / n).iterdir()) / 1e6
    assert abs(stated - total) < 0.15, f"README says {stated} MB, the zoo holds {total:.2f} MB"
    assert all(f"`{n}`" in readme for n in NAMES), "every shipped model is in the README's zoo table"


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_zoo_model_loads_and_samples_through_the_cli(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(sample_args(name, tmp_path)) == 0
    assert (tmp_path / "s.npz").stat().st_size > 0 and (tmp_path / "s.png").exists()


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_every_zoo_autoencoder_reconstructs_its_data(name, capsys):
    import torch

    from diffusekit.data import load_data
    from diffusekit.latent import LatentCodec

    codec = LatentCodec.load(name)
    x = load_data(json.loads((zoo.ZOO_DIR / name / "run.json").read_text())["train"]["data"]).x[:16]
    rec = codec.decode(codec.encode(x))
    assert rec.shape == x.shape and torch.nn.functional.mse_loss(rec, x) < 0.1 * x.var()
    assert main(["info", name]) == 0 and "autoencoder" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_every_card_states_figures_measured_by_a_committed_command(name):
    card = zoo.card(name)  # also checks every file's SHA-256
    raw = ROOT / "benchmarks" / "results" / "zoo" / name / "figures.json"
    assert raw.exists(), f"{name}: no committed figures file {raw}"
    measured = json.loads(raw.read_text())
    assert card["figures"] == measured["figures"] and card["headline"] == measured["headline"]
    assert card["measured_by"] == measured["measured_by"]
    text = (zoo.ZOO_DIR / name / "MODEL.md").read_text()
    assert measured["measured_by"] in text and all(cmd in text for cmd in card["trained"]["commands"])


def test_a_wheel_carries_the_zoo_into_a_fresh_environment(tmp_path):
    src = tmp_path / "src"  # the files a wheel is built from, without this checkout's build/ or caches
    shutil.copytree(ROOT / "diffusekit", src / "diffusekit", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w",
                    str(tmp_path / "dist")], check=True, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("diffusekit-*.whl"))
    # the fresh environment sees this machine's torch (a CPU wheel of ~1 GB is not reinstalled per test run), but
    # diffusekit comes from the wheel only: checked below
    venv.create(tmp_path / "env", system_site_packages=True, with_pip=False)
    py = tmp_path / "env" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True)
    where = subprocess.run([py, "-c", "import diffusekit; print(diffusekit.__file__)"], capture_output=True,
                           text=True, check=True, cwd=tmp_path).stdout
    assert where.startswith(str(tmp_path / "env")), where
    listed = subprocess.run([tmp_path / "env" / "bin" / "diffusekit", "models", "--json"], capture_output=True,
                            text=True, check=True, cwd=tmp_path).stdout
    assert [r["name"] for r in json.loads(listed)] == NAMES
    smallest = min(SAMPLERS, key=lambda n: sum(f.stat().st_size for f in (zoo.ZOO_DIR / n).iterdir()))
    subprocess.run([tmp_path / "env" / "bin" / "diffusekit", *sample_args(smallest, tmp_path)], check=True,
                   cwd=tmp_path, capture_output=True)
    assert (tmp_path / "s.png").exists()


@pytest.mark.parametrize("name", NAMES)
def test_benchmarks_states_each_card_headline(name):
    section = (ROOT / "BENCHMARKS.md").read_text().split("## 16. The model zoo")[1]
    assert f"`{name}`" in section and zoo.card(name)["headline"] in section
