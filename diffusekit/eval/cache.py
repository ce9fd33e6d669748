"""Cache of real-data feature statistics (mu, sigma), so the slow Inception pass over real images runs once.

Location: $DIFFUSEKIT_CACHE, else ~/.cache/diffusekit; files under `<cache>/eval/`. Format: .npz read with
allow_pickle=False (float64 arrays and a JSON string), written atomically (temp file + rename) so concurrent runs
never see half a file. The key names everything the statistics depend on: data name, a hash of the real pixels,
n, the subset (seed and which half), and the feature extractor (with a hash of its weights). Delete the folder to
clear it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    return Path(os.environ.get("DIFFUSEKIT_CACHE") or "~/.cache/diffusekit").expanduser() / "eval"


def stats_key(data: str, n: int, extractor: str, subset: str = "", data_hash: str = "") -> str:
    """A file-name-safe key; every argument that changes the statistics must be part of it."""
    parts = [data, data_hash[:10], f"n{n}", subset, extractor]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(p for p in parts if p))


def array_hash(x) -> str:
    a = np.ascontiguousarray(np.asarray(x))
    return hashlib.sha1(str(a.shape).encode() + str(a.dtype).encode() + a.tobytes()).hexdigest()


def save_stats(key: str, mu: np.ndarray, sigma: np.ndarray, meta: dict | None = None) -> Path:
    path = cache_dir() / f"{key}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
             meta=np.array(json.dumps(meta or {})))
    os.replace(tmp, path)
    return path


def load_stats(key: str) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """(mu, sigma, meta), or None when absent or unreadable (a corrupt file is treated as a miss)."""
    path = cache_dir() / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return f["mu"], f["sigma"], json.loads(str(f["meta"]))
    except (OSError, ValueError, KeyError):
        return None
