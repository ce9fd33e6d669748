"""Measurement operators: y = A(x) + sigma_y n, on tensors x of shape (B, C, *spatial).

Every operator has `forward(x)` (A), and the linear ones `adjoint(y)` (A^T, or A^H for the Fourier operator) and,
where it is cheap, `pinv(y)` (the Moore-Penrose pseudo-inverse A^+, what DDNM's null-space projection needs). The
noise level `sigma_y` belongs to the operator: `measure(x, generator)` draws a measurement, and the solvers read
`sigma_y` to know how much to trust y.

    Mask              inpainting: keep some pixels (boxes, random pixels, half the image)     y: x's shape
    Downsample        super-resolution: average pooling over factor^d blocks (x2, x4)         y: spatial / factor
    Blur              separable blur (Gaussian by default), circular or zero-padded           y: x's shape
    FourierSubsample  MRI: orthonormal 2-D FFT, keep a mask of k-space (complex y)            y: x's shape, complex
    Identity          denoising: A = I                                                        y: x's shape
    Function          any differentiable y = f(x) (non-linear: only DPS can use it)

Conventions shared by every linear operator (and relied on by the solvers):
    * y off the measured support is 0 (masks, Fourier): y is stored at x's size, so A^T = A^+ = A for a mask.
    * `project(x) = pinv(forward(x))` is the orthogonal projection onto the row space of A (the part of x that y
      sees); `x - project(x)` is the null-space part (Wang et al. 2023, "DDNM", eq. 2-3).
    * `pinv_noise_std` is the noise level that A^+ y carries along the row space, sigma_y / s, when all the
      non-zero singular values s of A are equal (masks, Fourier: s = 1; average pooling: s = factor^(-d/2)); then
      A^+ y is exactly a sample of x's row-space part at noise level sigma_y / s, the fact DDNM+ and the noisy
      RePaint use. None where the singular values differ (blur): those solvers then refuse noisy y.

Masks are generated from a seed (numpy's PCG64), so the same seed gives the same mask on every machine.
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


def _check_sigma_y(sigma_y) -> float:
    if isinstance(sigma_y, bool) or not isinstance(sigma_y, (int, float)) or not math.isfinite(sigma_y) or sigma_y < 0:
        raise ValueError(f"sigma_y (the measurement noise std) must be a finite float >= 0, got {sigma_y!r}")
    return float(sigma_y)


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__


def real_part(t: torch.Tensor) -> torch.Tensor:
    """t.real for complex tensors, t otherwise: images are real, A^H of a complex measurement may not be."""
    return t.real if t.is_complex() else t


class Operator:
    """A measurement y = A(x) + sigma_y n. Subclasses implement `forward`, and if linear `adjoint`, `pinv`,
    `output_shape`, `input_shape`.

    linear          A(a x + b z) = a A(x) + b A(z): DDNM and RePaint need it, DPS does not
    complex_output  y is complex (the Fourier operator); x is always real"""

    name = "operator"
    linear = True
    complex_output = False

    def __init__(self, sigma_y: float = 0.0):
        self.sigma_y = _check_sigma_y(sigma_y)

    # -- the operator ------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no adjoint" + ("" if self.linear else " (it is not linear)"))

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no cheap pseudo-inverse")

    @property
    def has_pinv(self) -> bool:
        return type(self).pinv is not Operator.pinv

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """A^+ A x: the orthogonal projection of x onto the row space of A (what y determines)."""
        return self.pinv(self.forward(x))

    # -- shapes --------------------------------------------------------------------------------------------------------
    def output_shape(self, x_shape) -> tuple:
        """The shape of y for an x of shape (B, C, *spatial)."""
        return tuple(x_shape)

    def input_shape(self, y_shape) -> tuple:
        """The shape of x that a y of this shape measures; ValueError if no x gives such a y."""
        return tuple(y_shape)

    def check_y(self, y) -> tuple:
        """Validate a measurement (type, dtype, shape) and return the shape of the x it measures."""
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"{self.name}: the measurement y must be a tensor, got {type(y).__name__}")
        if y.is_complex() != self.complex_output:
            want = "complex" if self.complex_output else "real"
            raise ValueError(f"{self.name}: y must be a {want} tensor, got dtype {y.dtype}")
        if y.ndim < 3:
            raise ValueError(f"{self.name}: y must be (B, C, *spatial), got shape {_shape(y)}")
        return self.input_shape(tuple(y.shape))

    # -- noise ---------------------------------------------------------------------------------------------------------
    def noise(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw of the standard measurement noise n for an x (default: white N(0, 1) in y's space)."""
        shape = self.output_shape(tuple(x.shape))
        return torch.randn(shape, generator=generator, dtype=x.dtype, device=x.device)

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """y = A(x) + sigma_y n: a simulated measurement."""
        y = self.forward(x)
        return y + self.sigma_y * self.noise(x, generator) if self.sigma_y > 0 else y

    def pinv_noise_std(self, x_shape) -> float | None:
        """The std of the noise in A^+ y along the row space (sigma_y / s for equal singular values s) for an x of
        this shape, or None when the singular values differ. 0.0 for noiseless measurements."""
        return 0.0 if self.sigma_y == 0 else None

    def with_noise(self, sigma_y: float) -> "Operator":
        """The same operator with another measurement noise level."""
        other = copy.copy(self)
        other.sigma_y = _check_sigma_y(sigma_y)
        return other

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    def describe(self) -> str:
        return f"sigma_y={self.sigma_y:g}"


# ---------------------------------------------------------------------------------------------------------------------
# Denoising and inpainting


class Identity(Operator):
    """A = I: plain denoising of y = x + sigma_y n."""

    name = "identity"

    def forward(self, x):
        return x

    def adjoint(self, y):
        return y

    def pinv(self, y):
        return y

    def pinv_noise_std(self, x_shape):
        return self.sigma_y


class Mask(Operator):
    """Inpainting: y = m * x (m is 0/1), stored at x's size with zeros where nothing was measured.

    A is a diagonal 0/1 matrix, so A^T = A^+ = A and its singular values are all 1. `mask` is a bool/0-1 tensor of
    shape (*spatial) (the same for every image and channel), (C, *spatial) or (B, C, *spatial); `missing_fraction`
    is the share of x's entries not measured."""

    name = "mask"

    def __init__(self, mask: torch.Tensor, sigma_y: float = 0.0):
        super().__init__(sigma_y)
        mask = torch.as_tensor(mask)
        if mask.ndim < 1 or not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"mask must be a tensor of 0/1 (or bool) values, got shape {_shape(mask)}")
        self.mask = mask.to(torch.bool)

    def _m(self, x):
        if not _broadcasts(self.mask, x.shape):
            raise ValueError(f"{self.name}: a mask of shape {tuple(self.mask.shape)} does not fit a tensor of shape "
                             f"{tuple(x.shape)}")
        return self.mask.to(device=x.device, dtype=x.dtype)

    def forward(self, x):
        return x * self._m(x)

    adjoint = forward
    pinv = forward

    def noise(self, x, generator=None):
        return self.forward(torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device))

    def pinv_noise_std(self, x_shape):
        return self.sigma_y

    def input_shape(self, y_shape):
        if not _broadcasts(self.mask, y_shape):
            raise ValueError(
                f"{self.name}: y of shape {tuple(y_shape)} does not match the mask's shape {tuple(self.mask.shape)} "
                f"(y is stored at the image's size, (B, C, *spatial))"
            )
        return tuple(y_shape)

    @property
    def missing_fraction(self) -> float:
        return 1.0 - float(self.mask.float().mean())

    def describe(self):
        return f"mask {tuple(self.mask.shape)}, {100 * self.missing_fraction:.0f}% missing, sigma_y={self.sigma_y:g}"


def _broadcasts(m: torch.Tensor, shape) -> bool:
    """True when m broadcasts to `shape` without changing that shape."""
    shape = tuple(shape)
    if m.ndim > len(shape):
        return False
    return all(a == b or a == 1 for a, b in zip(m.shape[::-1], shape[::-1]))


def _spatial(size) -> tuple[int, ...]:
    shape = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"size must be a positive int or a tuple of positive ints (the spatial shape), got {size!r}")
    return shape


def box_mask(size, box: tuple[int, ...] | None = None) -> torch.Tensor:
    """A 2-D mask (True = measured) with one box missing. box = (top, left, height, width); default: the central
    box of half the height and width (a quarter of the image), the usual 'box inpainting' task."""
    h, w = _spatial(size)
    if box is None:
        box = (h // 4, w // 4, h // 2, w // 2)
    top, left, bh, bw = box
    if not (0 <= top and 0 <= left and bh >= 1 and bw >= 1 and top + bh <= h and left + bw <= w):
        raise ValueError(f"box {box} (top, left, height, width) does not fit an image of {h}x{w}")
    m = torch.ones(h, w, dtype=torch.bool)
    m[top : top + bh, left : left + bw] = False
    return m


def random_pixel_mask(size, missing: float = 0.8, seed: int = 0) -> torch.Tensor:
    """A mask of any spatial shape with round(missing * N) pixels missing, chosen uniformly from a seed."""
    shape = _spatial(size)
    if not 0 <= missing < 1:
        raise ValueError(f"missing must be in [0, 1), got {missing}")
    n = math.prod(shape)
    drop = np.random.default_rng(seed).permutation(n)[: round(missing * n)]
    m = torch.ones(n, dtype=torch.bool)
    m[torch.from_numpy(drop)] = False
    return m.reshape(shape)


HALVES = ("right", "left", "top", "bottom")


def half_mask(size, missing: str = "right") -> torch.Tensor:
    """A 2-D mask with one half of the image missing (`missing`: right, left, top or bottom)."""
    h, w = _spatial(size)
    if missing not in HALVES:
        raise ValueError(f"unknown half {missing!r}; allowed: {', '.join(HALVES)}")
    m = torch.ones(h, w, dtype=torch.bool)
    if missing == "right":
        m[:, w // 2 :] = False
    elif missing == "left":
        m[:, : w - w // 2] = False
    elif missing == "bottom":
        m[h // 2 :, :] = False
    else:
        m[: h - h // 2, :] = False
    return m


# ---------------------------------------------------------------------------------------------------------------------
# Super-resolution


class Downsample(Operator):
    """Super-resolution: A = average pooling over factor^d blocks of the d spatial dimensions (any d).

    A A^T = I / factor^d, so all singular values are s = factor^(-d/2); A^T y spreads each low-resolution value over
    its block divided by factor^d, and A^+ y = factor^d A^T y repeats it (nearest-neighbour upsampling)."""

    name = "downsample"

    def __init__(self, factor: int = 2, sigma_y: float = 0.0):
        super().__init__(sigma_y)
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
        self.factor = factor

    def forward(self, x):
        f = self.factor
        B, C, *sp = x.shape
        if any(s % f for s in sp):
            raise ValueError(f"{self.name}: spatial shape {tuple(sp)} is not divisible by the factor {f}")
        split = [B, C] + [v for s in sp for v in (s // f, f)]  # (B, C, h1, f, h2, f, ...)
        return x.reshape(split).mean(dim=tuple(range(3, 2 + 2 * len(sp), 2)))

    def pinv(self, y):
        for d in range(2, y.ndim):
            y = y.repeat_interleave(self.factor, dim=d)
        return y

    def adjoint(self, y):
        return self.pinv(y) / self.factor ** (y.ndim - 2)

    def pinv_noise_std(self, x_shape):
        # each row of A averages factor^d pixels: norm s = factor^(-d/2), so A^+ y's noise is sigma_y * factor^(d/2)
        return self.sigma_y * self.factor ** ((len(x_shape) - 2) / 2)

    def output_shape(self, x_shape):
        B, C, *sp = x_shape
        return (B, C, *(s // self.factor for s in sp))

    def input_shape(self, y_shape):
        B, C, *sp = y_shape
        return (B, C, *(s * self.factor for s in sp))

    def describe(self):
        return f"factor={self.factor}, sigma_y={self.sigma_y:g}"


# ---------------------------------------------------------------------------------------------------------------------
# Blur


PADDINGS = ("circular", "zeros")


def gaussian_kernel1d(std: float, size: int | None = None, dtype=torch.float64) -> torch.Tensor:
    """A normalized 1-D Gaussian of the given std; default size 2 * ceil(3 std) + 1 (99.7% of the mass)."""
    if not std > 0:
        raise ValueError(f"blur std must be > 0, got {std}")
    if size is None:
        size = 2 * math.ceil(3 * std) + 1
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 1, got {size}")
    r = size // 2
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / std) ** 2)
    return (k / k.sum()).to(dtype)


class Blur(Operator):
    """Separable blur: the 1-D `kernel` (odd length) convolved along every spatial dimension.

    padding: `circular` (periodic; A is diagonal in the Fourier basis, so the pseudo-inverse is cheap) or `zeros`
    (the image is zero outside; no pinv: use DPS). The adjoint is the same convolution with the flipped kernel.
    For circular padding, pinv is the truncated-SVD pseudo-inverse: frequencies whose gain is below
    rcond * max gain count as not measured (as DDRM does, Kawar et al. 2022, sec. 4.3)."""

    name = "blur"

    def __init__(self, kernel: torch.Tensor, padding: str = "circular", sigma_y: float = 0.0, rcond: float = 1e-3):
        super().__init__(sigma_y)
        kernel = torch.as_tensor(kernel, dtype=torch.float64)
        if kernel.ndim != 1 or kernel.numel() % 2 == 0:
            raise ValueError(f"kernel must be a 1-D tensor of odd length, got shape {_shape(kernel)}")
        if padding not in PADDINGS:
            raise ValueError(f"unknown padding {padding!r}; allowed: {', '.join(PADDINGS)}")
        self.kernel = kernel
        self.padding = padding
        self.rcond = float(rcond)
        self._gain_cache: dict = {}

    @classmethod
    def gaussian(cls, std: float = 2.0, size: int | None = None, padding: str = "circular", sigma_y: float = 0.0):
        return cls(gaussian_kernel1d(std, size), padding, sigma_y)

    def _conv(self, x, weight):
        r = weight.numel() // 2
        w = weight.to(dtype=x.dtype, device=x.device).reshape(1, 1, -1)
        for d in range(2, x.ndim):
            if self.padding == "circular" and x.shape[d] < r:
                raise ValueError(f"{self.name}: the kernel ({weight.numel()} taps) is wider than dimension {d} "
                                 f"of size {x.shape[d]}")
            xt = x.movedim(d, -1)
            shape = xt.shape
            flat = xt.reshape(-1, 1, shape[-1])  # (N, 1, L)
            if self.padding == "circular":
                flat = F.conv1d(F.pad(flat, (r, r), mode="circular"), w)
            else:
                flat = F.conv1d(flat, w, padding=r)
            x = flat.reshape(shape).movedim(-1, d)
        return x

    def forward(self, x):
        # conv1d is a cross-correlation: correlating with the flipped kernel is convolving with the kernel
        return self._conv(x, self.kernel.flip(0))

    def adjoint(self, y):
        return self._conv(y, self.kernel)

    @property
    def has_pinv(self) -> bool:
        return self.padding == "circular"

    def _gain(self, spatial, dtype, device):
        """The transfer function: A's eigenvalues, the FFT of its response to a unit impulse at the origin."""
        key = (tuple(spatial), dtype, device)
        if key not in self._gain_cache:
            delta = torch.zeros((1, 1, *spatial), dtype=dtype, device=device)
            delta[(0, 0) + (0,) * len(spatial)] = 1
            dims = tuple(range(2, 2 + len(spatial)))
            self._gain_cache[key] = torch.fft.fftn(self.forward(delta), dim=dims)[0, 0]
        return self._gain_cache[key]

    def pinv(self, y):
        if self.padding != "circular":
            raise NotImplementedError(f"{self.name} with zero padding has no cheap pseudo-inverse; use method='dps'")
        dims = tuple(range(2, y.ndim))
        h = self._gain(y.shape[2:], y.dtype, y.device)
        keep = h.abs() > self.rcond * h.abs().max()
        inv = torch.where(keep, h.conj() / torch.where(keep, h.abs() ** 2, torch.ones_like(h.abs())),
                          torch.zeros_like(h))
        return torch.fft.ifftn(torch.fft.fftn(y, dim=dims) * inv, dim=dims).real.to(y.dtype)

    def describe(self):
        return f"{self.kernel.numel()}-tap kernel, padding={self.padding}, sigma_y={self.sigma_y:g}"


# ---------------------------------------------------------------------------------------------------------------------
# MRI: undersampled Fourier transform


FOURIER_MASKS = ("random", "cartesian")
# fully sampled centre per acceleration (the fastMRI challenge's choices, Zbontar et al. 2018, sec. 4.2)
CENTER_FRACTIONS = {4: 0.08, 8: 0.04}


def _mirror(z: torch.Tensor) -> torch.Tensor:
    """z[..., (-k1) mod H, (-k2) mod W]: the frequency -k of every k (FFT order)."""
    return torch.roll(torch.flip(z, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


def fourier_mask(size, acceleration: float = 4, kind: str = "cartesian", center_fraction: float | None = None,
                 seed: int = 0) -> torch.Tensor:
    """A k-space sampling mask (H, W) in FFT order (frequency 0 at [0, 0]; `torch.fft.fftshift` centres it).

    cartesian: whole lines of k-space (columns: phase-encoding lines, as on a scanner), round(W / acceleration) of
               them: the round(W * center_fraction) central lines, then lines drawn uniformly without replacement.
    random:    single k-space points, round(H W / acceleration) of them: a central block of
               round(H * center_fraction) x round(W * center_fraction), then points drawn uniformly.
    center_fraction defaults to 0.08 at 4x and 0.04 at 8x (fastMRI)."""
    h, w = _spatial(size)
    if kind not in FOURIER_MASKS:
        raise ValueError(f"unknown k-space mask kind {kind!r}; allowed: {', '.join(FOURIER_MASKS)}")
    if not acceleration >= 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    if center_fraction is None:
        center_fraction = CENTER_FRACTIONS.get(int(acceleration), 0.32 / acceleration)
    rng = np.random.default_rng(seed)
    centred = torch.zeros(h, w, dtype=torch.bool)
    if kind == "cartesian":
        n_total, n_center = round(w / acceleration), max(1, round(w * center_fraction))
        c0 = w // 2 - n_center // 2
        cols = np.zeros(w, dtype=bool)
        cols[c0 : c0 + n_center] = True
        rest = np.flatnonzero(~cols)
        cols[rng.permutation(rest)[: max(0, n_total - n_center)]] = True
        centred[:, torch.from_numpy(cols)] = True
    else:
        ch, cw = max(1, round(h * center_fraction)), max(1, round(w * center_fraction))
        flat = np.zeros((h, w), dtype=bool)
        flat[h // 2 - ch // 2 : h // 2 - ch // 2 + ch, w // 2 - cw // 2 : w // 2 - cw // 2 + cw] = True
        rest = np.flatnonzero(~flat.reshape(-1))
        flat.reshape(-1)[rng.permutation(rest)[: max(0, round(h * w / acceleration) - ch * cw)]] = True
        centred = torch.from_numpy(flat)
    return torch.fft.ifftshift(centred)


class FourierSubsample(Operator):
    """MRI-style measurement: y = M * FFT(x), the orthonormal 2-D FFT over the last two dimensions, masked.

    y is complex, stored at x's size with zeros off the mask. `forward` is complex-linear (it takes complex x too)
    and `adjoint` is its Hermitian adjoint A^H y = IFFT(M * y) (complex). Images are real, so the solvers use the
    real operator: its pseudo-inverse `pinv` fills each unmeasured k whose mirror -k was measured with the
    conjugate (a real image's spectrum is Hermitian), averages k and -k where both were measured, and returns the
    real IFFT. Noise: `measure` adds sigma_y * M * FFT(n) with n real white noise: the k-space noise of a noisy
    real image (E|noise|^2 = sigma_y^2), under which A^+ y carries noise sigma_y along the row space."""

    name = "fourier"
    complex_output = True

    def __init__(self, mask: torch.Tensor, sigma_y: float = 0.0):
        super().__init__(sigma_y)
        mask = torch.as_tensor(mask)
        if mask.ndim != 2 or not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"a k-space mask must be a 2-D 0/1 tensor (H, W) in FFT order, got {_shape(mask)}")
        self.mask = mask.to(torch.bool)
        # k-space weights of the real pseudo-inverse: 1 / (number of measured frequencies among k and -k)
        count = self.mask.double() + _mirror(self.mask.double())
        self._inv_count = torch.where(count > 0, 1 / count.clamp(min=1), torch.zeros_like(count))

    @classmethod
    def from_acceleration(cls, size, acceleration: float = 4, kind: str = "cartesian",
                          center_fraction: float | None = None, seed: int = 0, sigma_y: float = 0.0):
        return cls(fourier_mask(size, acceleration, kind, center_fraction, seed), sigma_y)

    @property
    def acceleration(self) -> float:
        return self.mask.numel() / float(self.mask.sum())

    def _check(self, t):
        if t.ndim < 3 or tuple(t.shape[-2:]) != tuple(self.mask.shape):
            raise ValueError(f"{self.name}: expected (B, C, {self.mask.shape[0]}, {self.mask.shape[1]}), "
                             f"got {_shape(t)}")

    def _m(self, t):
        return self.mask.to(device=t.device)

    def forward(self, x):
        self._check(x)
        return torch.fft.fft2(x, norm="ortho") * self._m(x)

    def adjoint(self, y):
        self._check(y)
        return torch.fft.ifft2(y * self._m(y), norm="ortho")

    def pinv(self, y):
        self._check(y)
        z = y * self._m(y)
        z = (z + _mirror(z).conj()) * self._inv_count.to(device=y.device, dtype=y.real.dtype)
        return torch.fft.ifft2(z, norm="ortho").real

    def noise(self, x, generator=None):
        return self.forward(torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device))

    def pinv_noise_std(self, x_shape):
        return self.sigma_y

    def input_shape(self, y_shape):
        if len(y_shape) < 3 or tuple(y_shape[-2:]) != tuple(self.mask.shape):
            raise ValueError(f"{self.name}: y must be (B, C, {self.mask.shape[0]}, {self.mask.shape[1]}) "
                             f"(k-space at the image's size), got {tuple(y_shape)}")
        return tuple(y_shape)

    def describe(self):
        return (f"k-space mask {tuple(self.mask.shape)}, {self.acceleration:.2f}x acceleration, "
                f"sigma_y={self.sigma_y:g}")


# ---------------------------------------------------------------------------------------------------------------------
# Non-linear measurements


class Function(Operator):
    """Any differentiable measurement y = fn(x) (+ sigma_y n): phase retrieval, a non-linear sensor, a network.
    Not linear: only DPS can invert it. `output_shape` is found by running fn on an empty batch of x's shape."""

    name = "function"
    linear = False

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], sigma_y: float = 0.0, name: str = "function",
                 input_shape: Callable | None = None):
        super().__init__(sigma_y)
        self.fn = fn
        self.name = name
        self._input_shape = input_shape

    def forward(self, x):
        return self.fn(x)

    def output_shape(self, x_shape):
        return tuple(self.fn(torch.zeros(x_shape)).shape)

    def input_shape(self, y_shape):
        return tuple(y_shape) if self._input_shape is None else tuple(self._input_shape(y_shape))

    def check_y(self, y):
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"{self.name}: the measurement y must be a tensor, got {type(y).__name__}")
        return self.input_shape(tuple(y.shape))


def fourier_magnitude(sigma_y: float = 0.0) -> Function:
    """Phase retrieval: y = |FFT(x)| (orthonormal, 2-D), the non-linear task of Chung et al. 2023 (DPS), sec. 4."""
    return Function(lambda x: torch.fft.fft2(x, norm="ortho").abs(), sigma_y, name="fourier-magnitude")


# ---------------------------------------------------------------------------------------------------------------------
# By name (what the CLI types)


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
    allowed = [p for p in inspect.signature(factory).parameters if p not in ("size", "sigma_y")]
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"operator {name!r} has no option(s) {sorted(unknown)}; allowed: {allowed or 'none'}")
    if sigma_y is not None:
        options["sigma_y"] = sigma_y
    return factory(size, **options)


__all__ = [
    "Operator", "Identity", "Mask", "Downsample", "Blur", "FourierSubsample", "Function",
    "box_mask", "random_pixel_mask", "half_mask", "fourier_mask", "gaussian_kernel1d", "fourier_magnitude",
    "OPERATORS", "OPERATOR_NAMES", "make_operator", "real_part",
]
