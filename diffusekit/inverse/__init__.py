"""Reconstruction from incomplete data with a model trained only on clean data: y = A(x) + sigma_y n -> x.

    operators   measurement operators A: masks (inpainting), average pooling (super-resolution), blur, undersampled
                Fourier (MRI), identity (denoising), any function (non-linear); forward, adjoint, pinv, noise
    solvers     posterior samplers over any unconditional denoiser: ddnm, repaint, dps; `consistent_denoiser` turns
                any sampler of `diffusekit.samplers` into a DDNM-like solver; `reconstruct` is the entry point
    baselines   zero-filled IFFT, TV-regularised least squares (with lambda tuned on training images), bicubic,
                harmonic fill
    metrics     PSNR and SSIM (Gaussian window, Wang et al. 2004)
    tasks       the tasks of `diffusekit reconstruct`, one `Task` each in TASKS (inpaint | superres | mri): the
                operator, the baselines, the settings recorded, the measurement's panel
    images      load_image (PNG/JPEG/WebP/BMP/.npy at the model's size), load_mask
    report      side_by_side, save_reconstruction (the pictures and metrics.json)
    task        one task end to end (what `diffusekit reconstruct` runs): an image file in, a simulated
                measurement, the reconstruction, the baselines, metrics and pictures out

    import diffusekit as dk
    from diffusekit import inverse
    op = inverse.make_operator("mri", 64, acceleration=4, kind="cartesian", sigma_y=0.01)
    y = op.measure(x_true, generator=torch.Generator().manual_seed(0))          # complex (B, 1, 64, 64)
    x = inverse.reconstruct(denoiser, op, y, method="ddnm", steps=100, generator=torch.Generator().manual_seed(1))
    inverse.psnr(x, x_true), inverse.ssim(x, x_true)

Notation as in `diffusekit.schedules`, plus: A the operator, A^T its adjoint (A^H for complex y), A^+ its
pseudo-inverse, sigma_y the measurement noise std, sigma_r the noise std that A^+ y carries along A's row space.
"""

from .baselines import bicubic, harmonic_fill, tune_tv_lambda, tv_reconstruct, zero_filled
from .images import load_image, load_mask
from .metrics import mse, psnr, ssim
from .operators import (
    OPERATOR_NAMES,
    OPERATORS,
    Blur,
    Downsample,
    FourierSubsample,
    Function,
    Identity,
    Mask,
    Operator,
    box_mask,
    fourier_magnitude,
    fourier_mask,
    gaussian_kernel1d,
    half_mask,
    make_operator,
    random_pixel_mask,
)
from .solvers import (
    METHOD_OPTIONS,
    METHODS,
    ConsistentDenoiser,
    consistent_denoiser,
    denoiser_calls,
    jump_schedule,
    reconstruct,
    reconstruct_with_sampler,
    sample_ddnm,
    sample_dps,
    sample_repaint,
)
from .report import save_reconstruction, side_by_side
from .task import reconstruct_image
from .tasks import TASKS, task_operator

__all__ = [
    "METHODS", "METHOD_OPTIONS", "OPERATORS", "OPERATOR_NAMES",
    "Operator", "Identity", "Mask", "Downsample", "Blur", "FourierSubsample", "Function",
    "box_mask", "random_pixel_mask", "half_mask", "fourier_mask", "gaussian_kernel1d", "fourier_magnitude",
    "make_operator",
    "reconstruct", "reconstruct_with_sampler", "denoiser_calls", "consistent_denoiser", "ConsistentDenoiser", "jump_schedule",
    "sample_ddnm", "sample_repaint", "sample_dps",
    "zero_filled", "tv_reconstruct", "tune_tv_lambda", "bicubic", "harmonic_fill",
    "mse", "psnr", "ssim",
    "TASKS", "load_image", "load_mask", "task_operator", "reconstruct_image", "save_reconstruction", "side_by_side",
]
