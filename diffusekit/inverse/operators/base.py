"""The operator interface every measurement implements (`Operator`), and the two operators that are no subject of
their own: `Identity` (denoising) and `Function` (any differentiable y = f(x), linear or not).

Conventions shared by every linear operator (and relied on by the solvers):
    * y off the measured support is 0 (masks, Fourier): y is stored at x's size, so A^T = A^+ = A for a mask.
    * `project(x) = pinv(forward(x))` is the orthogonal projection onto the row space of A (the part of x that y
      sees); `x - project(x)` is the null-space part (Wang et al. 2023, "DDNM", eq. 2-3).
    * `pinv_noise_std` is the noise level that A^+ y carries along the row space, sigma_y / s, when all the
      non-zero singular values s of A are equal (masks, Fourier: s = 1; average pooling: s = factor^(-d/2)); then
      A^+ y is exactly a sample of x's row-space part at noise level sigma_y / s, the fact DDNM+ and the noisy
      RePaint use. None where the singular values differ (blur): those solvers then refuse noisy y.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch


def check_sigma_y(sigma_y) -> float:
    if isinstance(sigma_y, bool) or not isinstance(sigma_y, (int, float)) or not math.isfinite(sigma_y) or sigma_y < 0:
        raise ValueError(f"sigma_y (the measurement noise std) must be a finite float >= 0, got {sigma_y!r}")
    return float(sigma_y)


def shape_of(t) -> str:
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
        self.sigma_y = check_sigma_y(sigma_y)

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
            raise ValueError(f"{self.name}: y must be (B, C, *spatial), got shape {shape_of(y)}")
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
        other.sigma_y = check_sigma_y(sigma_y)
        return other

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    def describe(self) -> str:
        return f"sigma_y={self.sigma_y:g}"



def spatial_shape(size) -> tuple[int, ...]:
    """An int (square) or a tuple of ints -> the spatial shape, checked positive."""
    shape = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"size must be a positive int or a tuple of positive ints (the spatial shape), got {size!r}")
    return shape


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

