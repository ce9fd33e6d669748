"""The machine and the code a benchmark figure came from, recorded in every result file a script here writes.

A figure is only true of the machine that produced it and of the code it ran: `record()` is the one place the
scripts in `benchmarks/` get both from, so that every raw file names its CPU model (from `lscpu`), thread count,
GPU (if any), torch version and git commit.

    python benchmarks/machine.py        # prints the record as JSON
"""

import json
import os
import platform
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def cpu_model() -> str:
    """`lscpu`'s "Model name" (the first one), else /proc/cpuinfo's "model name", else platform.processor()."""
    for line in _run(["lscpu"]).splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    try:
        m = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or "?"


def cpu_flags() -> set[str]:
    try:
        m = re.search(r"^flags\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return set()
    return set(m.group(1).split()) if m else set()


def commit() -> dict:
    """The checkout's commit (full hash) and whether tracked files differed from it when the figure was made."""
    sha = _run(["git", "rev-parse", "HEAD"], cwd=ROOT)
    dirty = bool(_run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT)) if sha else None
    return {"commit": sha or None, "dirty": dirty}


def gpu() -> str | None:
    """The first CUDA device's name, or None (torch not importable, or no GPU)."""
    try:
        import torch
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # a broken CUDA setup must not stop a CPU benchmark from recording its machine
        return None


def record() -> dict:
    """CPU model, logical CPUs, torch threads, the bf16 fast-path flags, GPU, torch and oneDNN versions, Python,
    load average, and the git commit: one dict, to put under "machine" in a result file."""
    import torch

    flags = cpu_flags()
    onednn = re.search(r"MKL-DNN v([\d.]+)|oneDNN v([\d.]+)", torch.__config__.show())
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "gpu": gpu(),
        "torch": torch.__version__,
        "onednn": next((g for g in onednn.groups() if g), None) if onednn else None,
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        **commit(),
    }


if __name__ == "__main__":
    print(json.dumps(record(), indent=1))
