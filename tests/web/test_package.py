"""The page ships inside the package: a wheel built from the repository carries every asset, and no asset reaches
for anything outside the server (no CDN scripts, fonts or styles), so the page works with no internet."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]
STATIC = ROOT / "diffusekit" / "web" / "static"


def test_assets_ask_nothing_of_the_internet():
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), path.name
        assert "@import" not in text and "fonts.googleapis" not in text


def test_a_wheel_carries_the_page(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next(tmp_path.glob("diffusekit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in STATIC.iterdir():
        assert f"diffusekit/web/static/{asset.name}" in names, asset.name
