"""Drawing primitives shared by every picture: the caption font and its fallbacks, text, fills, saving a PNG/GIF."""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

TEXT = 0  # black captions


def fill(value: int, c: int):
    """A Pillow fill for a grey level `value` on a 1-channel (c=1) or RGB (c=3) picture."""
    return value if c == 1 else (value,) * 3


@lru_cache(maxsize=1)
def caption_font():
    """The one font of every caption."""
    return ImageFont.load_default()  # FreeType (Aileron, ~10 px) in Pillow >= 10.1, else the bitmap font


# The default font (Aileron) covers ASCII only: letters it lacks are spelled out instead of drawn as boxes.
GREEK = {"σ": "sigma", "α": "alpha", "β": "beta", "γ": "gamma", "ε": "eps", "η": "eta", "λ": "lambda",
         "τ": "tau"}


def caption(text) -> str:
    """`text` with every character the default font cannot draw replaced (σ -> "sigma", others -> "?")."""
    return "".join(ch if ord(ch) < 128 or _has_glyph(ch) else GREEK.get(ch, "?") for ch in str(text))


@lru_cache(maxsize=256)
def _has_glyph(ch: str) -> bool:
    f = caption_font()
    try:
        mask = f.getmask(ch)
        missing = f.getmask("\ue000")  # a private-use code point: no font draws it, so this is the "box"
    except UnicodeEncodeError:  # the bitmap fallback font is latin-1 only
        return False
    return (mask.size, bytes(mask)) != (missing.size, bytes(missing))


def text_width(font, text: str) -> int:
    box = font.getbbox(caption(text))
    return int(math.ceil(box[2] - box[0]))


def draw_text(draw: ImageDraw.ImageDraw, xy, text: str, font, c: int, anchor: str) -> None:
    try:
        draw.text(xy, caption(text), fill=fill(TEXT, c), font=font, anchor=anchor)
    except ValueError:  # the bitmap fallback font does not support anchors: place the top-left by hand
        x = xy[0] - (text_width(font, text) / 2 if anchor[0] == "m" else 0)
        draw.text((x, xy[1] - 5), caption(text), fill=fill(TEXT, c), font=font)


def save_image(img: Image.Image, path) -> Path:
    """Save `img` (format from the suffix), creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


__all__ = ["fill", "caption_font", "caption", "text_width", "draw_text", "save_image"]
