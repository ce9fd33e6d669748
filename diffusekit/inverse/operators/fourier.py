"""MRI: the undersampled 2-D Fourier transform (`FourierSubsample`, complex y) and its k-space masks; and phase
retrieval, the Fourier magnitude |FFT(x)| (non-linear)."""

from __future__ import annotations

import numpy as np
import torch

from ...samplers.base import randn_like
from .base import Function, Operator, shape_of, spatial_shape

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
    h, w = spatial_shape(size)
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
            raise ValueError(f"a k-space mask must be a 2-D 0/1 tensor (H, W) in FFT order, got {shape_of(mask)}")
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
                             f"got {shape_of(t)}")

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
        return self.forward(randn_like(x, generator))

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


def fourier_magnitude(sigma_y: float = 0.0) -> Function:
    """Phase retrieval: y = |FFT(x)| (orthonormal, 2-D), the non-linear task of Chung et al. 2023 (DPS), sec. 4."""
    return Function(lambda x: torch.fft.fft2(x, norm="ortho").abs(), sigma_y, name="fourier-magnitude")
