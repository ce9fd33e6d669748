"""Operators by the names the CLI and `make_operator` take."""

from __future__ import annotations

import inspect
from typing import Callable

from ...samplers.base import check_options
from .base import Identity, Operator
from .fourier import FourierSubsample, fourier_magnitude
from .masks import Mask, box_mask, half_mask, random_pixel_mask
from .resampling import Blur, Downsample


def _inpaint_box(size, sigma_y=0.0, box=None):
    return Mask(box_mask(size, box), sigma_y)


def _inpaint_random(size, sigma_y=0.0, missing=0.8, seed=0):
    return Mask(random_pixel_mask(size, missing, seed), sigma_y)


def _inpaint_half(size, sigma_y=0.0, missing="right"):
    return Mask(half_mask(size, missing), sigma_y)


def _sr(size, sigma_y=0.0, factor=4):
    return Downsample(factor, sigma_y)


def _blur(size, sigma_y=0.0, std=2.0, padding="circular"):
    return Blur.gaussian(std, padding=padding, sigma_y=sigma_y)


def _mri(size, sigma_y=0.0, acceleration=4, kind="cartesian", center_fraction=None, seed=0):
    return FourierSubsample.from_acceleration(size, acceleration, kind, center_fraction, seed, sigma_y)


def _denoise(size, sigma_y=0.1):
    return Identity(sigma_y)


def _phase(size, sigma_y=0.0):
    return fourier_magnitude(sigma_y)


OPERATORS: dict[str, tuple[str, Callable]] = {
    "inpaint-box": ("a central box of half the height and width missing (option: box=(top, left, h, w))",
                    _inpaint_box),
    "inpaint-random": ("random pixels missing (options: missing=0.8, seed=0)", _inpaint_random),
    "inpaint-half": ("half the image missing (option: missing=right|left|top|bottom)", _inpaint_half),
    "sr": ("super-resolution: average pooling (option: factor=4)", _sr),
    "blur": ("Gaussian blur (options: std=2.0, padding=circular|zeros)", _blur),
    "mri": ("undersampled 2-D Fourier transform (options: acceleration=4, kind=cartesian|random, seed=0)", _mri),
    "denoise": ("additive noise only (sigma_y=0.1 by default)", _denoise),
    "phase-retrieval": ("Fourier magnitude |FFT(x)|, non-linear (DPS only)", _phase),
}
OPERATOR_NAMES = tuple(OPERATORS)


def make_operator(name: str, size, sigma_y: float | None = None, **options) -> Operator:
    """An operator by name for images of spatial shape `size` (an int for square images), e.g.
    make_operator("mri", 64, acceleration=8, kind="random", seed=1) or make_operator("sr", 64, factor=2)."""
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}; allowed: {', '.join(OPERATOR_NAMES)}")
    factory = OPERATORS[name][1]
    check_options(f"operator {name!r}", options,
                  [p for p in inspect.signature(factory).parameters if p not in ("size", "sigma_y")])
    if sigma_y is not None:
        options["sigma_y"] = sigma_y
    return factory(size, **options)


__all__ = ["OPERATORS", "OPERATOR_NAMES", "make_operator"]
