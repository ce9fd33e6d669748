"""The documentation: the generated reference pages match the code, the site builds with warnings as errors
(a broken reference fails), and the tutorial notebook runs end to end on tiny settings."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SPEC = importlib.util.spec_from_file_location("gen_pages", ROOT / "docs" / "gen_pages.py")
gen_pages = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(gen_pages)
TUTORIAL_CAP_S = 300  # per cell; the tiny tutorial takes about a minute on 2 cores: this only catches a hang


@pytest.mark.parametrize("name", sorted(gen_pages.PAGES))
def test_generated_pages_are_up_to_date(name):
    committed = (ROOT / "docs" / name).read_text()
    assert committed == gen_pages.PAGES[name](), f"docs/{name} is stale: run `python docs/gen_pages.py`"


def test_the_site_builds_strictly(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "samplers" / "index.html").exists()
    assert "sample_dpmpp_2m" in (tmp_path / "site" / "reference" / "samplers" / "index.html").read_text()


def test_the_tutorial_runs_on_tiny_settings(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    shutil.copy(ROOT / "docs" / "tutorial.ipynb", tmp_path / "tutorial.ipynb")
    nb = nbformat.read(tmp_path / "tutorial.ipynb", as_version=4)
    os.environ["DIFFUSEKIT_TUTORIAL"] = "tiny"
    try:
        NotebookClient(nb, timeout=TUTORIAL_CAP_S, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        del os.environ["DIFFUSEKIT_TUTORIAL"]
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 6  # every question drew its picture
    assert (tmp_path / "tutorial-pictures" / "inpaint" / "side_by_side.png").exists()
