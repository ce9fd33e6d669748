"""Reconstruction with a latent diffusion prior: the solver walks the autoencoder's latent space, the measurement
lives in pixel space, and the decoder joins them.

What we chose, and why. Seen from the latent space the measurement is y = A(decode(z)) + sigma_y n: non-linear in z
(the decoder is a network), so DDNM's and RePaint's projections, which need a linear A on the space the sampler
walks, do not apply; DPS does, unchanged: its gradient of ||y - A(decode(D(z, sigma)))|| flows back through the
decoder and the denoiser (the "latent DPS" of PSLD, Rout et al. 2023, without their gluing term). The decoder cannot
reproduce every image exactly, so after the walk the decoded image gets one step of pixel-space data consistency
where A is linear with a pseudo-inverse: x <- x + A^+ (y - A x) (DDNM's range-space correction, once, at the
end): the measured part of the image is then exactly y's (for noiseless y; masks: the known pixels; MRI: the measured
k-space lines; super-resolution: the low-resolution image), and the decoder supplies the rest.
"""

from __future__ import annotations

import torch

from .operators import Function, Operator

LATENT_METHODS = ("dps",)


def latent_operator(codec, op: Operator) -> Function:
    """A(decode(z)) as an operator on scaled latents z (B, *codec.latent_shape); differentiable in z."""
    ae, scale, latent = codec.autoencoder, codec.scale, tuple(codec.latent_shape)

    def measure_latent(z):
        return op.forward(ae.decode(z / scale))

    return Function(measure_latent, sigma_y=op.sigma_y, name=f"{op.name} of the decoded latent",
                    input_shape=lambda y_shape: (y_shape[0], *latent))


def pixel_consistency(op: Operator, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x + A^+ (y - A x) for a linear A with a pseudo-inverse (x itself otherwise)."""
    if not (op.linear and op.has_pinv):
        return x
    fix = op.pinv(y - op.forward(x))
    return x + (fix.real if fix.is_complex() else fix)


def check_latent_method(method: str) -> None:
    if method not in LATENT_METHODS:
        raise ValueError(f"method {method!r} needs a linear measurement of the space the sampler walks; on a latent "
                         f"run the decoder makes it non-linear: use --method dps (the gradient flows through the "
                         f"decoder, then the known part is restored in pixel space)")
