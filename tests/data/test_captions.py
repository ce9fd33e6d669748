"""Captioned data (diffusekit.data.captions): digit captions, caption folders and their errors."""

import json
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from diffusekit.data import DataError
from diffusekit.data.captions import (
    DIGIT_TEMPLATES, DIGIT_WORDS, CaptionedDataset, digit_captions, load_captioned, load_captioned_folder,
)

# ---- digit captions -----------------------------------------------------------------------------------------------


def _names_class(caption: str, d: int) -> bool:
    words = re.findall(r"\w+", caption)
    return str(d) in words or DIGIT_WORDS[d] in words


def test_digit_captions_deterministic_and_cover_every_class():
    ds = load_captioned("digits", seed=0)
    assert isinstance(ds, CaptionedDataset) and len(ds.captions) == len(ds) == 1797
    assert ds.captions == load_captioned("digits", seed=0).captions
    assert ds.captions != load_captioned("digits", seed=1).captions
    labels = ds.labels.tolist()
    assert all(_names_class(c, y) for c, y in zip(ds.captions, labels))
    assert not any(_names_class(c, (y + 1) % 10) for c, y in zip(ds.captions, labels))  # never the wrong digit
    for d in range(10):  # every class gets several phrasings
        assert len({c for c, y in zip(ds.captions, labels) if y == d}) >= 5
    many = digit_captions(np.repeat(np.arange(10), 100), seed=0)
    assert len(set(many)) == 10 * len(DIGIT_TEMPLATES)  # every phrasing of every class occurs
    assert "a handwritten seven" in many and "the digit 7" in many and "7" in many
    assert torch.equal(ds[3][0], ds.x[3]) and ds.subset([5, 3]).captions == [ds.captions[5], ds.captions[3]]


# ---- folders with captions ----------------------------------------------------------------------------------------


def _images(root, names):
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(path)
    return root


def _jsonl(root, entries, raw=None):
    text = raw if raw is not None else "".join(json.dumps(e) + "\n" for e in entries)
    (root / "captions.jsonl").write_text(text, encoding="utf-8")


def test_folder_captions_from_jsonl(tmp_path):
    _images(tmp_path, ["a.png", "b.png", "sub/c.png"])
    _jsonl(tmp_path, [{"file": "sub/c.png", "caption": "a  grey\nsquare"}, {"file": "a.png", "caption": "black"}])
    (tmp_path / "b.txt").write_text("ignored: captions.jsonl wins")
    (tmp_path / "notes.md").write_text("other files are ignored")
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 images that have no caption.*b\.png"):
        ds = load_captioned(tmp_path)
    assert len(ds) == 2 and ds.captions == ["black", "a grey square"]  # file order; whitespace collapsed
    assert float(ds.x[0].mean()) == -1 and ds.x[1].mean() > -1  # a.png (black), then sub/c.png
    assert any("no caption" in s for s in ds.skipped)
    with pytest.raises(DataError, match=r"1 of 3 images have no caption.*b\.png"):
        load_captioned_folder(tmp_path, missing="error")


def test_folder_captions_from_txt(tmp_path):
    _images(tmp_path, ["a.png", "b.jpg"])
    (tmp_path / "a.txt").write_text("  a dark square \n")
    (tmp_path / "b.txt").write_text("a lighter square")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_captioned(tmp_path)
    assert ds.captions == ["a dark square", "a lighter square"] and ds.x.shape == (2, 3, 8, 8)


@pytest.mark.parametrize("entries, raw, match", [
    ([], "", r"caption file is empty"),
    ([], "\n \n", r"caption file is empty"),
    ([{"file": "a.png", "caption": "x"}, {"file": "gone.png", "caption": "y"}, {"file": "b/c.png", "caption": "z"}],
     None, r"2 of 3 entries name images that are not in .*gone\.png, b/c\.png"),
    ([], '{"file": "a.png", "caption": "x"}\n{"file": "b.png", caption}\n', r"captions\.jsonl:2: not valid JSON"),
    ([{"file": "a.png"}], None, r'captions\.jsonl:1: expected an object with string "file" and "caption"'),
    ([{"file": "a.png", "caption": "  "}], None, r"captions\.jsonl:1: empty caption for 'a\.png'"),
    ([{"file": "a.png", "caption": "x"}, {"file": "a.png", "caption": "y"}], None, r":2: 'a\.png' is captioned twice"),
])
def test_folder_caption_errors(tmp_path, entries, raw, match):
    _images(tmp_path, ["a.png", "b.png"])
    _jsonl(tmp_path, entries, raw)
    with pytest.raises(DataError, match=match):
        load_captioned(tmp_path)


def test_folder_without_any_caption_and_empty_txt(tmp_path):
    _images(tmp_path, ["a.png", "b.png"])
    with pytest.raises(DataError, match=r"no image has a caption: give captions\.jsonl"):
        load_captioned(tmp_path)
    (tmp_path / "a.txt").write_text("\n")
    with pytest.raises(DataError, match=r"a\.txt: the caption file is empty"):
        load_captioned(tmp_path)


def test_folder_unreadable_captioned_image_is_dropped(tmp_path):
    _images(tmp_path, ["a.png", "c.png"])
    (tmp_path / "b.png").write_bytes(b"not a png")
    _jsonl(tmp_path, [{"file": n, "caption": n[0]} for n in ("a.png", "b.png", "c.png")])
    with pytest.warns(UserWarning, match="could not be read"):
        ds = load_captioned(tmp_path)
    assert ds.captions == ["a", "c"]


def test_load_captioned_unknown(tmp_path):
    with pytest.raises(DataError, match="digits, mnist5k, shapes"):
        load_captioned(tmp_path / "nowhere")
