"""The procedural shapes (diffusekit.data.shapes): determinism, captions that determine the attributes (read by an
independent parser), held-out splits, and reading the attributes back from the pixels."""

import re

import numpy as np
import pytest
import torch

from diffusekit.data.shapes import (
    COLOURS, HELDOUT, KINDS, POSITIONS, SIZES, check_heldout, describe, is_heldout, make_shapes, read_attributes,
    score_attributes,
)


PHRASE = re.compile(r"a (small|large) (\w+) (circle|square|triangle|cross)")


def parse_caption(caption: str) -> list[dict]:
    """Attributes from a caption, written independently of shapes.describe: the caption must determine them."""
    objs = [dict(zip(("size", "colour", "kind"), m.groups())) for m in PHRASE.finditer(caption)]
    rest = PHRASE.sub("X", caption)
    pos = r"(top left|top right|bottom left|bottom right|centre)"
    if len(objs) == 1:
        m = re.fullmatch(rf"(?:there is )?X,? in the {pos}|in the {pos}, X", rest)
        objs[0]["position"] = m[1] or m[2]
    elif m := re.fullmatch(rf"X in the {pos} and X in the {pos}", rest):
        objs[0]["position"], objs[1]["position"] = m.groups()
    elif m := re.fullmatch(r"X (above|below) X on the (left|right)", rest):
        first = "top" if m[1] == "above" else "bottom"
        second = "bottom" if first == "top" else "top"
        objs[0]["position"], objs[1]["position"] = f"{first} {m[2]}", f"{second} {m[2]}"
    elif m := re.fullmatch(r"X to the (left|right) of X at the (top|bottom)", rest):
        other = "right" if m[1] == "left" else "left"
        objs[0]["position"], objs[1]["position"] = f"{m[2]} {m[1]}", f"{m[2]} {other}"
    else:
        raise AssertionError(f"unparsed caption {caption!r}")
    return sorted(objs, key=lambda o: list(POSITIONS).index(o["position"]))


def test_shapes_deterministic_and_well_formed():
    ds = make_shapes(400, seed=5)
    again = make_shapes(400, seed=5)
    assert torch.equal(ds.x, again.x) and ds.captions == again.captions and ds.attributes == again.attributes
    assert not torch.equal(ds.x, make_shapes(400, seed=6).x)
    assert ds.x.shape == (400, 3, 32, 32) and ds.x.dtype == torch.float32
    assert float(ds.x.min()) == -1 and float(ds.x.max()) <= 1
    counts = [len(a) for a in ds.attributes]
    assert set(counts) == {1, 2} and 0.4 < np.mean(np.array(counts) == 2) < 0.6
    seen = {f: {o[f] for a in ds.attributes for o in a} for f in ("kind", "colour", "size", "position")}
    assert seen == {"kind": set(KINDS), "colour": set(COLOURS), "size": set(SIZES), "position": set(POSITIONS)}
    for a in ds.attributes:
        assert all(set(o) == {"kind", "colour", "size", "position"} for o in a)
        if len(a) == 2:  # two objects: two different quadrants
            assert len({o["position"] for o in a}) == 2 and "centre" not in {o["position"] for o in a}


def test_shapes_captions_determine_the_attributes():
    ds = make_shapes(600, seed=2)
    for caption, attrs in zip(ds.captions, ds.attributes):
        assert parse_caption(caption) == attrs, caption
    assert len({re.sub(PHRASE, "X", c) for c in ds.captions}) > 20  # several phrasings
    assert describe([{"kind": "circle", "colour": "red", "size": "small", "position": "top left"}]) == \
        "a small red circle in the top left"


def test_shapes_heldout_splits():
    rules = check_heldout(HELDOUT)
    train = make_shapes(500, seed=0, split="train")
    assert not any(is_heldout(o, rules) for a in train.attributes for o in a)
    held = make_shapes(300, seed=0, split="heldout")
    assert all(any(is_heldout(o, rules) for o in a) for a in held.attributes)
    assert {(o["colour"], o["kind"]) for a in held.attributes for o in a if is_heldout(o, rules)} == set(HELDOUT)
    # every colour and every kind still appears in training
    assert {o["colour"] for a in train.attributes for o in a} == set(COLOURS)
    assert {o["kind"] for a in train.attributes for o in a} == set(KINDS)
    custom = make_shapes(200, seed=1, split="train", heldout=[("small", "centre"), "purple"])
    for o in (o for a in custom.attributes for o in a):
        assert o["colour"] != "purple" and not (o["size"] == "small" and o["position"] == "centre")
    with pytest.raises(ValueError, match="'pink' is not a kind, colour"):
        make_shapes(10, split="train", heldout=[("pink", "circle")])
    with pytest.raises(ValueError, match="two values for kind"):
        make_shapes(10, split="train", heldout=[("circle", "square")])
    with pytest.raises(ValueError, match="excludes every object"):
        make_shapes(10, split="train", heldout=list(SIZES))
    centre_free = make_shapes(100, seed=2, split="train", heldout=["centre"], two_objects=0.0)
    assert all(a[0]["position"] != "centre" for a in centre_free.attributes)
    with pytest.raises(ValueError, match="no image obeying split='train'"):
        make_shapes(1, split="train", heldout=["top left", "top right", "bottom left"], two_objects=1.0)
    with pytest.raises(ValueError, match="split must be"):
        make_shapes(10, split="test")


def test_shapes_read_back():
    one = make_shapes(1000, seed=11, two_objects=0.0)
    got = [read_attributes(x) for x in one.x]
    assert np.mean([g == a for g, a in zip(got, one.attributes)]) >= 0.98
    two = make_shapes(400, seed=12, two_objects=1.0)
    assert score_attributes(two.x, two.attributes)["image"] >= 0.98
    # robust to mild noise, as a generated sample would have
    noisy = (one.x[:300] + 0.1 * torch.randn(one.x[:300].shape, generator=torch.Generator().manual_seed(0)))
    assert score_attributes(noisy.clamp(-1, 1), one.attributes[:300])["image"] >= 0.95
    # and it notices wrong images: scored against another image's attributes, most are wrong
    s = score_attributes(one.x[:200], one.attributes[1:201])
    assert s["image"] < 0.2 and s["count"] == 1.0
    assert read_attributes(-torch.ones(3, 32, 32)) == []
    big = make_shapes(100, seed=3, image_size=64)
    assert big.x.shape == (100, 3, 64, 64) and score_attributes(big.x, big.attributes)["image"] >= 0.98
