"""Resampling operators: `Downsample` (super-resolution by average pooling) and `Blur` (a separable convolution,
Gaussian by default)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Operator, shape_of


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
            raise ValueError(f"kernel must be a 1-D tensor of odd length, got shape {shape_of(kernel)}")
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
