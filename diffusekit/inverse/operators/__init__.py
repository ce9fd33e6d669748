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

    base        `Operator` (the interface and the conventions every linear operator keeps), Identity, Function
    masks       Mask and the masks: box_mask, random_pixel_mask, half_mask
    resampling  Downsample, Blur, gaussian_kernel1d
    fourier     FourierSubsample, fourier_mask (k-space masks), fourier_magnitude (phase retrieval)
    registry    OPERATORS by name, make_operator (what the CLI types)
"""

# (the option tuples HALVES, PADDINGS, FOURIER_MASKS and CENTER_FRACTIONS too, as before the split)
from .base import Function, Identity, Operator, real_part
from .fourier import CENTER_FRACTIONS, FOURIER_MASKS, FourierSubsample, fourier_magnitude, fourier_mask
from .masks import HALVES, Mask, box_mask, half_mask, random_pixel_mask
from .registry import OPERATOR_NAMES, OPERATORS, make_operator
from .resampling import PADDINGS, Blur, Downsample, gaussian_kernel1d

__all__ = [
    "Operator", "Identity", "Mask", "Downsample", "Blur", "FourierSubsample", "Function",
    "box_mask", "random_pixel_mask", "half_mask", "fourier_mask", "gaussian_kernel1d", "fourier_magnitude",
    "OPERATORS", "OPERATOR_NAMES", "make_operator", "real_part",
]
