"""`shapes`: procedural RGB images of coloured shapes with compositional captions, and their read-back from pixels.

    from diffusekit.data.shapes import make_shapes, read_attributes, score_attributes
    ds = make_shapes(1000, seed=0, split="train")  # CaptionedDataset: x (1000, 3, 32, 32) in [-1, 1]
    ds.captions[0]     # "a small red circle in the top left"
    ds.attributes[0]   # [{"kind": "circle", "colour": "red", "size": "small", "position": "top left"}]
    read_attributes(ds.x[0])               # the same list, read from the pixels
    score_attributes(samples, attributes)  # accuracy of generated images against the attributes they were asked for

Generated offline from a seed (numpy default_rng): the same arguments give the same tensor, captions and attributes.
What an image holds, at 32x32 (lengths scale with image_size / 32):
    background  black
    objects     one (probability 1 - two_objects) or two. Each has a kind (KINDS: circle, square, triangle with its
                apex up, cross), a colour (COLOURS: red, green, blue, yellow, purple, white), a size (small: 7 px
                across, large: 12 px) and a position (POSITIONS: top left, top right, bottom left, bottom right
                centre), drawn uniformly and independently. One object may be anywhere; two objects sit in two
                different quadrants (never the centre), so they never touch or overlap.
    placement   the object's centre is its position's centre (8 or 24 px; 16 for the centre) plus an integer jitter,
                up to 3 px for small and 1 px for large objects; shapes are drawn with 4x4 supersampling
                (anti-aliased edges, pure colour inside).
Captions name every attribute of every object, so a caption determines the attributes (`describe`):
    one object   "a small red circle in the top left", "there is a large blue cross in the centre", ...
    same column  "a small red circle above a large blue square on the left" (or "... below ..."; both in one column)
    same row     "a small red circle to the left of a large blue square at the top" (or "... to the right of ...")
    diagonal     "a small red circle in the top left and a large blue square in the bottom right"
Attributes list each image's objects in POSITIONS order, as dicts with exactly the keys kind, colour, size, position.

Held-out combinations (for measuring compositional generalisation): `heldout` is a list of tuples of attribute
values, e.g. ("red", "triangle") or ("small", "cross", "centre"); an object matches a tuple when it has every value in
it. split="train" generates only images in which no object matches any tuple; split="heldout" only images in which
at least one object matches one; split="all" ignores the list. Whole images are drawn until one obeys the rule, so
a split's images follow the "all" distribution conditioned on the rule. HELDOUT, the default, holds out one colour for each kind and one kind for each of four colours:
red triangle, green circle, blue cross, yellow square. Every colour and every kind still appears in training.

Read-back (`read_attributes`): foreground = pixels differing from the background by more than a third of the range;
objects = its 8-connected components (tiny ones ignored as noise); colour = the palette colour nearest the mean of
the object's brightest half; coverage of each pixel = its projection on that colour; kind from the coverage in the
bounding box (fill ratio: square ~1, circle ~0.79, cross ~0.55, triangle ~0.5, told apart from the cross by
having three quarters of its mass in the lower half); size from the longer side of the bounding box; position from
the box centre (the centre when within 4 px of the image centre in both axes, else the quadrant).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .dataset import CaptionedDataset, uint8_to_unit

KINDS = ("circle", "square", "triangle", "cross")
COLOURS = {  # RGB 0..255; pairwise distances >= 160, and >= 250 from the black background
    "red": (230, 30, 30),
    "green": (30, 190, 50),
    "blue": (40, 70, 240),
    "yellow": (240, 220, 30),
    "purple": (190, 50, 220),
    "white": (240, 240, 240),
}
BACKGROUND = (0, 0, 0)
SIZES = {"small": 3.5, "large": 6.0}  # half-extent in px at 32x32: 7 and 12 px across
JITTER = {"small": 3, "large": 1}  # max offset in px at 32x32; large objects stay inside their quadrant
POSITIONS = {  # centre as a fraction of the image (x, y)
    "top left": (0.25, 0.25),
    "top right": (0.75, 0.25),
    "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75),
    "centre": (0.5, 0.5),
}
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
HELDOUT = [("red", "triangle"), ("green", "circle"), ("blue", "cross"), ("yellow", "square")]
FIELDS = ("kind", "colour", "size", "position")
VALUES = {"kind": KINDS, "colour": tuple(COLOURS), "size": tuple(SIZES), "position": tuple(POSITIONS)}
SUPERSAMPLE = 4
DEFAULT_N = 10_000  # the built-in: enough distinct images (and captions) to train on, 123 MB as float32
TWO_OBJECTS = 0.5  # default probability of an image with two objects
MAX_TRIES = 10_000  # rejection sampling of one image for a split; a rule this strict is a mistake


# ---- generation -------------------------------------------------------------------------------------------------


def make_shapes(n: int = DEFAULT_N, seed: int = 0, *, split: str = "all", heldout=HELDOUT,
                two_objects: float = TWO_OBJECTS, image_size: int = 32) -> CaptionedDataset:
    """n images (n, 3, S, S) in [-1, 1] with captions and attributes; see the module docstring for the rules."""
    if split not in ("all", "train", "heldout"):
        raise ValueError(f"split must be 'all', 'train' or 'heldout'; got {split!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    if not 0 <= two_objects <= 1:
        raise ValueError(f"two_objects is a probability; got {two_objects}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 for shapes to stay recognisable; got {image_size}")
    rules = check_heldout(heldout)
    if split == "train" and _all_held_out(rules):
        raise ValueError(f"heldout={heldout} excludes every object: nothing is left for split='train'")
    if split == "heldout" and not rules:
        raise ValueError("split='heldout' needs a non-empty heldout list")

    S = image_size
    scale = S / 32
    templates = {(k, s): _template(k, h * scale) for k in KINDS for s, h in SIZES.items()}
    rng = np.random.default_rng(seed)
    canvas = np.empty((n, S, S, 3), np.float32)
    captions, attributes = [], []
    for i in range(n):
        objects = _draw_objects(rng, split, rules, two_objects)
        img = np.broadcast_to(np.array(BACKGROUND, np.float32), (S, S, 3)).copy()
        for o in objects:
            j = round(JITTER[o["size"]] * scale)
            dx, dy = rng.integers(-j, j + 1, size=2)
            fx, fy = POSITIONS[o["position"]]
            _paste(img, templates[o["kind"], o["size"]], round(fx * S) + int(dx), round(fy * S) + int(dy),
                   COLOURS[o["colour"]])
        canvas[i] = img
        captions.append(describe(objects, rng))
        attributes.append(objects)
    v = np.clip(np.rint(canvas), 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)  # (n, 3, S, S), 8-bit like a PNG
    rule = "none" if split == "all" else f"{split}: held out {[tuple(r) for r in heldout]}"
    return CaptionedDataset(
        uint8_to_unit(v), None, None, name="shapes",
        source=f"diffusekit.data.shapes.make_shapes(n={n}, seed={seed}, split={split!r}, image_size={S})",
        notes=[f"held-out combinations: {rule}"], captions=captions, attributes=attributes,
    )


def load_shapes(seed: int = 0) -> CaptionedDataset:
    """The built-in `shapes`: DEFAULT_N 32x32 images of the training split (HELDOUT combinations left out).

    The split is verified before it is returned, since compositional generalisation is measured on exactly the
    held-out combinations: an image with one of them in the training data would void that measurement."""
    ds = make_shapes(DEFAULT_N, seed, split="train")
    rules = check_heldout(HELDOUT)
    leaked = sum(any(is_heldout(o, rules) for o in objs) for objs in ds.attributes)
    if leaked:
        raise RuntimeError(f"internal: the shapes training data holds {leaked} images with held-out "
                           f"combinations {HELDOUT}; they must stay unseen")
    return ds


def check_heldout(heldout) -> list[dict[str, str]]:
    """Validate the held-out tuples -> one {field: value} dict per tuple."""
    field_of = {v: f for f, vals in VALUES.items() for v in vals}
    rules = []
    for combo in heldout or []:
        if isinstance(combo, str):
            combo = (combo,)
        rule: dict[str, str] = {}
        for value in combo:
            if value not in field_of:
                raise ValueError(f"held-out value {value!r} is not a kind, colour, size or position; "
                                 f"known: {sorted(field_of)}")
            if field_of[value] in rule:
                raise ValueError(f"held-out combination {combo} has two values for {field_of[value]}: never matches")
            rule[field_of[value]] = value
        rules.append(rule)
    return rules


def is_heldout(obj: dict[str, str], rules) -> bool:
    """True when the object has every value of at least one rule (rules from `check_heldout`)."""
    return any(all(obj[f] == v for f, v in r.items()) for r in rules)


def _all_held_out(rules) -> bool:
    return all(is_heldout({"kind": k, "colour": c, "size": s, "position": p}, rules)
               for k in KINDS for c in COLOURS for s in SIZES for p in POSITIONS)


def _draw_objects(rng, split: str, rules, two_objects: float) -> list[dict[str, str]]:
    """One image's objects, in POSITIONS order; for a split, whole images are drawn until one obeys the rule."""
    for _ in range(MAX_TRIES):
        two = rng.random() < two_objects
        positions = [QUADRANTS[q] for q in rng.choice(4, size=2, replace=False)] if two \
            else [tuple(POSITIONS)[rng.integers(len(POSITIONS))]]
        objects = [{"kind": KINDS[rng.integers(len(KINDS))], "colour": tuple(COLOURS)[rng.integers(len(COLOURS))],
                    "size": tuple(SIZES)[rng.integers(len(SIZES))], "position": p} for p in positions]
        held = any(is_heldout(o, rules) for o in objects)
        if split == "all" or (split == "train" and not held) or (split == "heldout" and held):
            return sorted(objects, key=lambda o: tuple(POSITIONS).index(o["position"]))
    raise ValueError(f"no image obeying split={split!r} with held-out {rules} in {MAX_TRIES} draws "
                     f"(two_objects={two_objects}): the rule leaves (almost) nothing to draw")


def _template(kind: str, h: float) -> np.ndarray:
    """Coverage (T, T) in [0, 1] of a shape of half-extent h centred on the corner point T/2, T even."""
    T = 2 * math.ceil(h + 1)
    u = (np.arange(T * SUPERSAMPLE) + 0.5) / SUPERSAMPLE - T / 2  # sub-pixel centres relative to the centre
    x, y = np.meshgrid(u, u)  # x right, y down
    if kind == "circle":
        inside = x**2 + y**2 <= h**2
    elif kind == "square":
        inside = np.maximum(abs(x), abs(y)) <= 0.85 * h  # a little smaller, so its area is near the circle's
    elif kind == "triangle":
        inside = (y >= -h) & (y <= h) & (abs(x) <= (y + h) / 2)  # apex (0, -h), base from (-h, h) to (h, h)
    elif kind == "cross":
        a = 0.33 * h  # arm half-width
        inside = ((abs(x) <= a) & (abs(y) <= h)) | ((abs(y) <= a) & (abs(x) <= h))
    else:
        raise ValueError(kind)
    return inside.reshape(T, SUPERSAMPLE, T, SUPERSAMPLE).mean(axis=(1, 3)).astype(np.float32)


def _paste(img: np.ndarray, alpha: np.ndarray, cx: int, cy: int, colour) -> None:
    """Composite `colour` over img (S, S, 3) with coverage alpha (T, T) centred on the pixel corner (cx, cy)."""
    T = alpha.shape[0]
    x0, y0 = cx - T // 2, cy - T // 2
    S = img.shape[0]
    xs, ys = slice(max(x0, 0), min(x0 + T, S)), slice(max(y0, 0), min(y0 + T, S))
    a = alpha[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0, None]
    img[ys, xs] = img[ys, xs] * (1 - a) + np.array(colour, np.float32) * a


# ---- captions ---------------------------------------------------------------------------------------------------


def phrase(o: dict[str, str]) -> str:
    return f"a {o['size']} {o['colour']} {o['kind']}"


def describe(objects: list[dict[str, str]], rng=None) -> str:
    """A caption naming every attribute of the objects (one, or two in different quadrants); rng picks a phrasing
    (None: the first)."""
    pick = (lambda k: 0) if rng is None else (lambda k: int(rng.integers(k)))
    if len(objects) == 1:
        o = objects[0]
        forms = ["{a} in the {p}", "there is {a} in the {p}", "{a}, in the {p}", "in the {p}, {a}"]
        return forms[pick(len(forms))].format(a=phrase(o), p=o["position"])
    if len(objects) != 2:
        raise ValueError(f"captions describe one or two objects; got {len(objects)}")
    a, b = sorted(objects, key=lambda o: tuple(POSITIONS).index(o["position"]))
    (ra, ca), (rb, cb) = a["position"].split(), b["position"].split()  # row ("top"/"bottom"), column
    if "centre" in (a["position"], b["position"]) or a["position"] == b["position"]:
        raise ValueError("two objects must be in two different quadrants")
    if ca == cb:  # same column: a is on top
        forms = [f"{phrase(a)} above {phrase(b)} on the {ca}", f"{phrase(b)} below {phrase(a)} on the {ca}"]
    elif ra == rb:  # same row: a is on the left
        forms = [f"{phrase(a)} to the left of {phrase(b)} at the {ra}",
                 f"{phrase(b)} to the right of {phrase(a)} at the {ra}"]
    else:
        forms = []
    forms += [f"{phrase(a)} in the {a['position']} and {phrase(b)} in the {b['position']}",
              f"{phrase(b)} in the {b['position']} and {phrase(a)} in the {a['position']}"]
    return forms[pick(len(forms))]


# ---- read-back --------------------------------------------------------------------------------------------------


def read_attributes(image) -> list[dict[str, str]]:
    """One image (3, H, W) in [-1, 1] (tensor or array) -> its objects, in POSITIONS order, as attribute dicts."""
    x = torch.as_tensor(image).detach().to("cpu", torch.float32)
    if x.ndim != 3 or x.shape[0] != 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"read_attributes expects one square RGB image (3, S, S); got {tuple(x.shape)}")
    S = x.shape[1]
    scale = S / 32
    p = ((torch.nan_to_num(x).clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()  # (S, S, 3) in [0, 1]
    bg = np.array(BACKGROUND, np.float32) / 255
    palette = np.array(list(COLOURS.values()), np.float32) / 255  # (K, 3)
    fg = np.abs(p - bg).max(-1) > 1 / 3  # (S, S)
    comps = [c for c in _components(fg) if len(c) >= 4 * scale**2]  # specks are noise (a shape covers >= 24 px)
    owner = np.full((S, S), -1)
    for i, comp in enumerate(comps):
        owner[tuple(np.array(comp).T)] = i
    objects = []
    for i, comp in enumerate(comps):
        ys, xs = np.array(comp).T
        pix = p[ys, xs]  # (n, 3)
        bright = np.linalg.norm(pix - bg, axis=1)
        core = pix[bright >= np.median(bright)]  # the brightest half: interior pixels, not the blended edge
        k = int(np.argmin(((palette - core.mean(0)) ** 2).sum(1)))
        c = palette[k] - bg
        # Coverage of each pixel of the object's box grown by 1 px (to take in anti-aliased edges below the
        # foreground threshold): its projection on the object's colour; pixels of other objects count 0.
        y0, y1, x0, x1 = max(ys.min() - 1, 0), min(ys.max() + 2, S), max(xs.min() - 1, 0), min(xs.max() + 2, S)
        cov = np.clip(((p[y0:y1, x0:x1] - bg) @ c) / (c @ c), 0, 1)
        cov[(owner[y0:y1, x0:x1] != i) & (owner[y0:y1, x0:x1] != -1)] = 0
        kind, extent, (cx, cy) = _shape(cov)
        objects.append({
            "kind": kind,
            "colour": tuple(COLOURS)[k],
            "size": "large" if extent > 8.5 * scale else "small",  # 6-7 px vs 10-12 px across
            "position": _position(x0 + cx, y0 + cy, S),
        })
    objects.sort(key=lambda o: tuple(POSITIONS).index(o["position"]))
    return objects


def _shape(cov: np.ndarray) -> tuple[str, float, tuple[float, float]]:
    """Coverage (h, w) of one object -> (kind, longer side in px, centre (x, y) in the array's pixel units).

    Sub-pixel extents: the width is the sum over columns of each column's largest coverage (1 for a column the
    shape crosses, the covered fraction for an edge column), the height likewise over rows.
    """
    col, row = cov.max(0), cov.max(1)  # (w,), (h,)
    width, height = col.sum(), row.sum()
    fill = cov.sum() / max(width * height, 1e-6)  # square 1.0, circle 0.79, cross 0.56-0.59, triangle 0.57-0.65
    mass = cov.sum(1)  # (h,) vertical profile
    y = np.arange(len(mass)) + 0.5
    mu = (mass * y).sum() / max(mass.sum(), 1e-6)
    var = max((mass * (y - mu) ** 2).sum() / max(mass.sum(), 1e-6), 1e-6)
    skew = (mass * (y - mu) ** 3).sum() / max(mass.sum(), 1e-6) / var**1.5  # triangle (apex up) -0.5..-0.6, others 0
    if skew < -0.25:
        kind = "triangle"
    elif fill > 0.9:
        kind = "square"
    elif fill > 0.69:
        kind = "circle"
    else:
        kind = "cross"
    # Box centre from the extents (for a triangle the centroid would sit 1/3 below the box centre).
    x0 = np.nonzero(col > 0)[0][0] + 1 - col[np.nonzero(col > 0)[0][0]] if col.any() else 0
    y0 = np.nonzero(row > 0)[0][0] + 1 - row[np.nonzero(row > 0)[0][0]] if row.any() else 0
    return kind, float(max(width, height)), (float(x0 + width / 2), float(y0 + height / 2))


def _position(cx: float, cy: float, S: int) -> str:
    if abs(cx - S / 2) < 4 * S / 32 and abs(cy - S / 2) < 4 * S / 32:
        return "centre"
    return f"{'top' if cy < S / 2 else 'bottom'} {'left' if cx < S / 2 else 'right'}"


def _components(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """8-connected components of a boolean (H, W) mask, each a list of (y, x); a plain flood fill."""
    H, W = mask.shape
    seen = np.zeros_like(mask)
    comps = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        stack, comp = [(int(y0), int(x0))], []
        while stack:
            y, x = stack.pop()
            comp.append((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    v, u = y + dy, x + dx
                    if 0 <= v < H and 0 <= u < W and mask[v, u] and not seen[v, u]:
                        seen[v, u] = True
                        stack.append((v, u))
        comps.append(comp)
    return comps


def score_attributes(images, targets: list[list[dict[str, str]]]) -> dict[str, float]:
    """Read back each image (N, 3, S, S) and compare with the attributes it should show.

    Returns fractions in [0, 1]: "image" (everything read back exactly, object count included), "count", and per
    field ("kind", "colour", "size", "position") the fraction of target objects for which an object read back at
    the same position has that value. For a one-object target the single object read back is compared whatever
    its position, so "position" is then scored on its own.
    """
    if len(images) != len(targets):
        raise ValueError(f"{len(images)} images but {len(targets)} attribute lists")
    hits = dict.fromkeys(("image", "count") + FIELDS, 0)
    n_obj = 0
    for img, want in zip(images, targets):
        got = read_attributes(img)
        hits["image"] += got == sorted(want, key=lambda o: tuple(POSITIONS).index(o["position"]))
        hits["count"] += len(got) == len(want)
        for o in want:
            n_obj += 1
            if len(want) == 1 and len(got) == 1:
                match = got[0]
            else:
                match = next((g for g in got if g["position"] == o["position"]), None)
            for f in FIELDS:
                hits[f] += match is not None and match[f] == o[f]
    n = max(len(targets), 1)
    return {k: v / (n if k in ("image", "count") else max(n_obj, 1)) for k, v in hits.items()}


__all__ = [
    "COLOURS", "HELDOUT", "KINDS", "POSITIONS", "SIZES", "check_heldout", "describe", "is_heldout",
    "load_shapes", "make_shapes", "read_attributes", "score_attributes",
]
