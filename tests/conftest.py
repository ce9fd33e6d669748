"""Helpers shared by the end-to-end tests."""

import subprocess
import sys


def dk(*args, check=True):
    """Run `python -m diffusekit ARGS` as a user would; with check, fail the test with its stderr on a non-zero exit."""
    r = subprocess.run([sys.executable, "-m", "diffusekit", *map(str, args)], capture_output=True, text=True,
                       timeout=600)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r
