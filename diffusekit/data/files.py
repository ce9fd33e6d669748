"""Listing a user's folder: the files in a stable order, labels from sub-folder names, and summaries for errors.
Shared by every folder reader (images, captions, WAVs, clips)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import torch


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


def _list_files(folder: Path) -> list[Path]:
    """Every non-hidden file under folder (any depth), sorted by relative path."""
    out = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(root, name) for name in sorted(names) if not name.startswith(".")]
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


__all__ = ["list_files", "folder_labels", "tally"]
