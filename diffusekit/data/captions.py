"""Captioned data for text-to-image: captions for the digit data sets, or a user's folder of images with captions.

    from diffusekit.data.captions import load_captioned
    ds = load_captioned("digits", seed=0)      # CaptionedDataset: ds.x, ds.labels, ds.captions (one per image)
    ds = load_captioned("photos/")             # captions from photos/captions.jsonl or a .txt beside each image
    ds = load_captioned("shapes")              # the procedural shapes (see shapes.py), captions built in

Digits (`digits`, `mnist5k`): each image gets one caption for its class, the phrasing (DIGIT_TEMPLATES, e.g. "a
handwritten seven", "the digit 7", "7") drawn per image from numpy's default_rng(seed): the same seed gives the
same captions, and every phrasing mentions the class as a numeral or a word.

A folder (the images are read by `load_folder`, with its rules for size, channels, labels and unreadable files):
    captions.jsonl  at the folder's top, one JSON object a line: {"file": "a.png", "caption": "..."}; "file" is
                    the path relative to the folder, with "/" (sub/a.png). Blank lines are ignored. When it
                    exists it is the only source: .txt files are then ignored.
    a.txt           otherwise, the caption of a.png is the text of a.txt beside it (stripped of surrounding
                    whitespace; newlines inside become spaces).
Errors (DataError, naming the file): a caption file that is empty or has no entries; a line that is not a JSON
object with string "file" and "caption"; an empty caption (for unconditional training use caption dropout, not
empty captions); the same image captioned twice; captions.jsonl naming files that do not exist (all listed,
first few shown); no caption for any image.
Images without a caption are SKIPPED with one warning that gives their count and the first few paths, and they
are listed in `skipped`, like unreadable images. Why skip: a few uncaptioned files (a stray thumbnail, a new
image not yet described) should not stop training, and training them with an empty caption would silently teach
the unconditional branch. Pass `missing="error"` to refuse instead. An image named in captions.jsonl that exists
but cannot be read is dropped with `load_folder`'s warning about unreadable files.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from .dataset import CaptionedDataset, DataError, InMemoryDataset
from .files import check_file, check_fits
from .folder import list_images, load_folder
from .load import load_data
from .shapes import load_shapes

CAPTIONS_FILE = "captions.jsonl"
MAX_CAPTION_BYTES = 1 << 20  # a .txt caption is a sentence or a paragraph; a megabyte is a file put there by mistake
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# {d}: the numeral, {w}: the word. Short and long phrasings, so a model learns both "7" and a sentence.
DIGIT_TEMPLATES = [
    "{d}",
    "the digit {d}",
    "a handwritten {w}",
    "a drawing of the number {w}",
    "the number {w}",
    "a handwritten digit {d}",
    "{w}",
    "an image of the digit {w}",
    "{w}, written by hand",
    "the numeral {d}",
]
DIGIT_DATASETS = ("digits", "mnist5k")


def with_captions(ds: InMemoryDataset, captions: list[str], attributes: list | None = None) -> CaptionedDataset:
    return CaptionedDataset(ds.x, ds.labels, ds.class_names, ds.name, ds.source, list(ds.skipped), list(ds.notes),
                            list(captions), attributes)


def digit_captions(labels, seed: int = 0, templates: list[str] = DIGIT_TEMPLATES) -> list[str]:
    """One caption per label 0..9, the phrasing drawn per image from default_rng(seed)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"digit captions need labels in 0..9; got {labels.min()}..{labels.max()}")
    choice = np.random.default_rng(seed).integers(len(templates), size=labels.shape[0])
    return [templates[t].format(d=int(y), w=DIGIT_WORDS[int(y)]) for y, t in zip(labels, choice)]


def caption_digits(ds: InMemoryDataset, seed: int = 0) -> CaptionedDataset:
    """Captions by class for a digit data set (`digits`, `mnist5k`, or any data labelled 0..9)."""
    if ds.labels is None:
        raise DataError(f"{ds.name}: digit captions need class labels; this data set is unlabelled")
    out = with_captions(ds, digit_captions(ds.labels.numpy(), seed))
    out.notes.append(f"captions: one of {len(DIGIT_TEMPLATES)} phrasings per class, drawn with seed {seed}")
    return out


def load_captioned(spec: str | os.PathLike = "digits", seed: int = 0, image_size: int | None = None,
                   channels: int | None = None, missing: str = "warn") -> CaptionedDataset:
    """A built-in name (`digits`, `mnist5k`, `shapes`) or a folder with captions -> CaptionedDataset.

    `seed` picks the digit phrasings or generates the shapes; `missing` ("warn" or "error") is what a folder does
    with images that have no caption. image_size and channels are as in `load_data`.
    """
    text = os.fspath(spec)
    if text == "shapes":
        if image_size is not None or channels is not None:
            raise DataError("shapes is generated at 32x32 RGB: use make_shapes(image_size=...) for other sizes")
        return load_shapes(seed=seed)
    if text in DIGIT_DATASETS:
        return caption_digits(load_data(text, image_size, channels), seed)
    path = Path(text).expanduser()
    if path.is_dir():
        return load_captioned_folder(path, image_size, channels, missing=missing)
    raise DataError(f"{text!r}: captioned data is one of {', '.join(DIGIT_DATASETS + ('shapes',))} "
                    f"or a folder of images with {CAPTIONS_FILE} or .txt captions")


def load_captioned_folder(folder: str | os.PathLike, image_size: int | None = None, channels: int | None = None,
                          missing: str = "warn") -> CaptionedDataset:
    """Images under `folder` with their captions (rules and errors in the module docstring)."""
    if missing not in ("warn", "error"):
        raise ValueError(f"missing must be 'warn' or 'error'; got {missing!r}")
    folder = Path(folder)
    files, _ = list_images(folder)
    rel = [p.relative_to(folder).as_posix() for p in files]
    jsonl = folder / CAPTIONS_FILE
    if jsonl.is_file():
        captions = _read_jsonl(jsonl, set(rel))
        source = str(jsonl)
    else:
        captions = _read_txt(folder, files, rel)
        source = f".txt files in {folder}"
    if not captions:
        raise DataError(f"folder {folder}: no image has a caption: give {CAPTIONS_FILE} (lines "
                        f'{{"file": "a.png", "caption": "..."}}) or a .txt beside each image (a.png -> a.txt)')
    uncaptioned = [r for r in rel if r not in captions]
    if uncaptioned and missing == "error":
        raise DataError(f"folder {folder}: {len(uncaptioned)} of {len(rel)} images have no caption in {source}: "
                        f"{', '.join(uncaptioned[:5])}{' ...' if len(uncaptioned) > 5 else ''}")

    ds = load_folder(folder, image_size, channels)
    # load_folder keeps the readable files in listing order; its `skipped` entries start with "path: ".
    unreadable = {s.split(": ", 1)[0] for s in ds.skipped}
    kept = [r for p, r in zip(files, rel) if str(p) not in unreadable]
    if len(kept) != len(ds):
        raise RuntimeError(f"internal: {len(kept)} readable files but load_folder returned {len(ds)} images")
    keep = [i for i, r in enumerate(kept) if r in captions]
    if not keep:
        raise DataError(f"folder {folder}: none of the readable images has a caption in {source}")
    out = with_captions(ds, [captions.get(r, "") for r in kept]).subset(keep)  # "" rows are dropped here
    if uncaptioned:
        warnings.warn(
            f"{folder}: skipped {len(uncaptioned)} of {len(rel)} images that have no caption in {source} "
            f"(listed in .skipped; pass missing='error' to refuse): {', '.join(uncaptioned[:3])}"
            + (" ..." if len(uncaptioned) > 3 else ""),
            stacklevel=2,
        )
        out.skipped += [f"{folder / r}: no caption" for r in uncaptioned]
    out.source = f"{folder} (captions from {source})"
    out.notes.append(f"captions from {source}")
    return out


def _read_jsonl(path: Path, existing: set[str]) -> dict[str, str]:
    captions: dict[str, str] = {}
    check_fits(path, 16 * check_file(path), "reading this caption file")  # str, lines and dicts: ~16x the bytes
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: could not read the caption file ({e})") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError) as e:  # also a 5,000-digit number, and nesting too deep for the parser
            raise DataError(f"{path}:{n}: not valid JSON ({getattr(e, 'msg', e)}); expected "
                            f'{{"file": "a.png", "caption": "..."}}') from e
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) \
                or not isinstance(entry.get("caption"), str):
            raise DataError(f'{path}:{n}: expected an object with string "file" and "caption"; got {line[:80]!r}')
        name = Path(entry["file"]).as_posix()
        caption = " ".join(entry["caption"].split())
        if not caption:
            raise DataError(f"{path}:{n}: empty caption for {name!r}")
        if name in captions:
            raise DataError(f"{path}:{n}: {name!r} is captioned twice")
        captions[name] = caption
    if not captions:
        raise DataError(f"{path}: the caption file is empty; expected one line per image like "
                        f'{{"file": "a.png", "caption": "a red circle"}}')
    absent = [f for f in captions if f not in existing]
    if absent:
        raise DataError(
            f"{path}: {len(absent)} of {len(captions)} entries name images that are not in {path.parent} "
            f"(paths are relative to that folder, with '/'): {', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''}"
        )
    return captions


def _read_txt(folder: Path, files: list[Path], rel: list[str]) -> dict[str, str]:
    captions: dict[str, str] = {}
    for p, r in zip(files, rel):
        txt = p.with_suffix(".txt")
        if not txt.is_file():
            continue
        if check_file(txt) > MAX_CAPTION_BYTES:
            raise DataError(f"{txt}: {txt.stat().st_size:,} bytes is no caption (at most {MAX_CAPTION_BYTES:,})")
        try:
            caption = " ".join(txt.read_text(encoding="utf-8").split())
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{txt}: could not read the caption ({e})") from e
        if not caption:
            raise DataError(f"{txt}: the caption file is empty")
        captions[r] = caption
    # a.png and a.jpg would share a.txt: ambiguous, so refuse rather than caption both alike.
    stems = [Path(r).with_suffix("").as_posix() for r in captions]
    if len(stems) != len(set(stems)):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise DataError(f"{folder}: images {dup[:3]} share one .txt caption file (same name, different extension)")
    return captions
