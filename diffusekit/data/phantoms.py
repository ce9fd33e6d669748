"""Procedural phantoms: random images of the Shepp-Logan family, and the Shepp-Logan phantom itself as a test image.

    phantoms   2,000 64 x 64 images (seed 0), each the sum of ellipses of additive intensity, as the Shepp-Logan
               head phantom (Shepp & Logan 1974; the higher-contrast 'modified' values of Toft 1996, which
               scikit-image's `shepp_logan_phantom()` uses):
                 skull   an outer ellipse of intensity 1, centred within 0.05 of the middle, semi-axes
                         0.62-0.76 (x) by 0.80-0.95 (y), tilted up to 15 degrees
                 brain   the skull ellipse shrunk by 0.92-0.97 and shifted down by up to 0.03, intensity -(1 - b),
                         brain level b in 0.1-0.3 (Shepp-Logan: 0.2)
                 interior 5-10 ellipses with centres uniform in the inner 80% of the brain, semi-axes log-uniform
                         in 0.025-0.3, any angle, intensity +-(0.05-0.35), positive with probability 0.6
               The sum is clipped to [0, 1] and mapped to x = 2 v - 1 in [-1, 1]. Coordinates run over [-1, 1]^2
               (y up); each pixel is the mean of 2 x 2 sub-pixel samples, which softens the edges.
    shepp_logan(size)  scikit-image's Shepp-Logan phantom (400 x 400, values in [0, 1]), area-resized to
               size x size and mapped to [-1, 1]: a test image no training set here contains.

Image i depends only on (seed, i, size): `make_phantoms(10, seed=s)` equals the first 10 of `make_phantoms(2000,
seed=s)`, on every machine (numpy's PCG64 draws all parameters).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import DataError, InMemoryDataset

SKIMAGE_INSTALL = "pip install scikit-image"
DEFAULT_COUNT = 2000
DEFAULT_SIZE = 64
MAX_INTERIOR = 10
_DRAWS = 9 + 7 * MAX_INTERIOR  # uniform numbers per image: 8 for the head, 1 for the count, 7 per interior ellipse


def _ellipse_params(u: np.ndarray) -> np.ndarray:
    """Map an image's uniform draws (_DRAWS,) to ellipses (2 + MAX_INTERIOR, 6): cx, cy, a, b, angle, intensity.
    Unused interior slots get intensity 0."""
    cx, cy = 0.1 * u[0] - 0.05, 0.1 * u[1] - 0.05
    a, b = 0.62 + 0.14 * u[2], 0.80 + 0.15 * u[3]
    theta = math.radians(30 * u[4] - 15)
    shrink, drop, level = 0.92 + 0.05 * u[5], 0.03 * u[6], 0.1 + 0.2 * u[7]
    k = 5 + min(int(6 * u[8]), 5)  # 5..10 interior ellipses
    e = np.zeros((2 + MAX_INTERIOR, 6))
    e[:, 2:4] = 1.0  # unused slots: a unit circle of intensity 0
    e[0] = (cx, cy, a, b, theta, 1.0)
    # the brain: the skull shrunk, shifted down along the head's own axis
    e[1] = (cx + drop * math.sin(theta), cy - drop * math.cos(theta), a * shrink, b * shrink, theta, -(1 - level))
    ba, bb = 0.8 * a * shrink, 0.8 * b * shrink
    c, s = math.cos(theta), math.sin(theta)
    for j in range(k):
        v = u[9 + 7 * j : 16 + 7 * j]
        r, phi = math.sqrt(v[0]), 2 * math.pi * v[1]  # uniform in the unit disc
        px, py = ba * r * math.cos(phi), bb * r * math.sin(phi)
        ex, ey = e[1, 0] + c * px - s * py, e[1, 1] + s * px + c * py
        ax, ay = (math.exp(math.log(0.025) + (math.log(0.3) - math.log(0.025)) * t) for t in (v[2], v[3]))
        sign = 1.0 if v[5] < 0.6 else -1.0
        e[2 + j] = (ex, ey, ax, ay, math.pi * v[4], sign * (0.05 + 0.3 * v[6]))
    return e


def _rasterize(params: np.ndarray, size: int, supersample: int) -> np.ndarray:
    """Sum of ellipse indicators times intensities: params (N, E, 6) -> float32 (N, size, size) in [0, 1].

    A point is inside an ellipse when q = P dx^2 + Q dx dy + R dy^2 <= 1 (dx, dy from the centre); P dx^2 and
    R dy^2 depend on one coordinate each, so only the cross term costs a full-grid product. numpy, not torch: the
    grids are small, and torch's intra-op threads made this 5-40x slower on a busy 2-core machine."""
    m = size * supersample
    t = (2 * np.arange(m) + 1) / m - 1  # sub-pixel centres in [-1, 1]
    cx, cy, a, b, th, val = (params[..., k][..., None] for k in range(6))  # each (N, E, 1)
    c, s = np.cos(th), np.sin(th)
    # x_r = c dx + s dy, y_r = -s dx + c dy;  q = (x_r / a)^2 + (y_r / b)^2
    p_, r_ = (c / a) ** 2 + (s / b) ** 2, (s / a) ** 2 + (c / b) ** 2
    q_ = 2 * c * s * (1 / a**2 - 1 / b**2)
    dx, dy = t - cx, -t - cy  # (N, E, m); rows: row 0 at the top, y = +1
    qx = (p_ * dx**2).astype(np.float32)[:, :, None, :]  # (N, E, 1, m)
    qy = (r_ * dy**2).astype(np.float32)[:, :, :, None]  # (N, E, m, 1)
    cross_x, cross_y = (q_ * dx).astype(np.float32), dy.astype(np.float32)
    img = np.zeros((params.shape[0], m, m), np.float32)
    for e in range(params.shape[1]):
        if not val[:, e].any():
            continue
        q = qx[:, e] + qy[:, e] + cross_y[:, e, :, None] * cross_x[:, e, None, :]  # (N, m, m)
        img += (q <= 1) * val[:, e, :, None].astype(np.float32)
    img = np.clip(img, 0, 1)
    return img.reshape(-1, size, supersample, size, supersample).mean(axis=(2, 4))


def make_phantoms(n: int = DEFAULT_COUNT, size: int = DEFAULT_SIZE, seed: int = 0, supersample: int = 2,
                  chunk: int = 64) -> torch.Tensor:
    """n random phantoms, float32 (n, 1, size, size) in [-1, 1] (see the module docstring). `chunk` images are
    drawn at a time, to bound the temporaries' memory."""
    if n < 1 or size < 1 or supersample < 1:
        raise ValueError(f"need n, size, supersample >= 1, got {n}, {size}, {supersample}")
    draws = np.random.default_rng(seed).random((n, _DRAWS))  # row i: image i's numbers, whatever n is
    params = np.stack([_ellipse_params(u) for u in draws])
    out = np.concatenate([_rasterize(params[i : i + chunk], size, supersample) for i in range(0, n, chunk)])
    return torch.from_numpy(2 * out - 1).unsqueeze(1).contiguous()


def load_phantoms() -> InMemoryDataset:
    """The built-in `phantoms` data set: 2,000 64 x 64 random-ellipse phantoms, seed 0, unlabelled."""
    x = make_phantoms(DEFAULT_COUNT, DEFAULT_SIZE, seed=0)
    return InMemoryDataset(x, None, None, name="phantoms",
                           source=f"diffusekit.data.phantoms.make_phantoms({DEFAULT_COUNT}, {DEFAULT_SIZE}, seed=0)")


def shepp_logan(size: int = DEFAULT_SIZE) -> torch.Tensor:
    """scikit-image's Shepp-Logan phantom resized to (1, 1, size, size), float32 in [-1, 1]. Needs scikit-image."""
    try:
        from skimage.data import shepp_logan_phantom
    except ImportError as e:
        raise DataError(f"the Shepp-Logan test image comes from scikit-image, which is not installed: "
                        f"{SKIMAGE_INSTALL}") from e
    v = torch.from_numpy(np.asarray(shepp_logan_phantom(), dtype=np.float64))[None, None]  # (1, 1, 400, 400)
    if size != v.shape[-1]:
        # 'area' averages the pixels each output pixel covers: no overshoot, so values stay in [0, 1]
        v = F.interpolate(v, size=(size, size), mode="area")
    return (2 * v.clamp(0, 1) - 1).float().contiguous()


__all__ = ["make_phantoms", "load_phantoms", "shepp_logan"]
