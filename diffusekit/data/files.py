"""Listing a user's folder: the files in a stable order, labels from sub-folder names, and summaries for errors.
Shared by every folder reader (images, captions, WAVs, clips)."""

from __future__ import annotations

import os
import resource
import stat
from collections import Counter
from pathlib import Path

import torch

from .dataset import DataError


def list_files(folder: Path) -> list[Path]:
    """Every non-hidden file under folder (any depth), sorted by relative path."""
    out = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(root, name) for name in sorted(names) if not name.startswith(".")]
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def folder_labels(folder: Path, files: list[Path], kept: list[Path]):
    """Labels from first-level sub-folder names, or (None, None) when the layout is not one folder per class."""
    parts = [p.relative_to(folder).parts for p in files]
    if any(len(q) < 2 for q in parts):
        return None, None
    class_names = sorted({q[0] for q in parts})  # from all listed files, so a bad file never shifts indices
    if len(class_names) < 2:
        return None, None
    index = {c: i for i, c in enumerate(class_names)}
    labels = torch.tensor([index[p.relative_to(folder).parts[0]] for p in kept], dtype=torch.int64)
    return labels, class_names


def tally(values: list, files: list[Path], rel, unit: str) -> str:
    """'16000 samples (12 files), 15872 samples (1 file: b.wav)': each value with its count and an example."""
    counts = Counter(values)
    parts = []
    for v, k in counts.most_common():
        example = rel(files[values.index(v)])
        parts.append(f"{v} {unit} ({k} file{'s' if k > 1 else ''}{': ' + example if k == 1 else ', e.g. ' + example})")
    return ", ".join(parts)


def check_file(path: str | os.PathLike) -> int:
    """The size of `path`, refused unless it is a regular file (after symlinks): a FIFO would block the reader
    forever, /dev/zero would feed it forever, a folder or a symlink loop has nothing to read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file (or a symlink to nothing)") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})") from e
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, FIFO or socket"
        raise DataError(f"{path}: not a regular file ({kind})")
    return st.st_size


def memory_budget() -> int:
    """Bytes this process may still allocate: the machine's memory, or less under an address-space limit."""
    budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        with open("/proc/self/status") as f:
            used = int(next(ln for ln in f if ln.startswith("VmSize:")).split()[1]) * 1024
        budget = min(budget, soft - used)
    return budget


def check_fits(path, nbytes: int, what: str) -> None:
    """Refuse, before allocating, a file whose reading would need more memory than there is (a header can declare
    terabytes in a few bytes; a sparse file can claim gigabytes it does not hold)."""
    budget = memory_budget()
    if nbytes > budget:
        raise DataError(f"{path}: {what} needs about {nbytes / 2**30:,.1f} GiB of memory, more than the "
                        f"{max(budget, 0) / 2**30:,.1f} GiB this process can have")


__all__ = ["list_files", "folder_labels", "tally", "check_file", "check_fits", "memory_budget"]
