"""One entry point for the three solvers: `reconstruct`, and `denoiser_calls`, the number of denoising steps it
takes (a progress bar's length)."""

from __future__ import annotations

from typing import Callable

import torch

from ...samplers.base import check_sigmas, starting_noise
from ..operators import Operator
from .ladder import check_linear, default_sigmas, insert_sigma, jump_path, row_noise_std
from .methods import METHOD_OPTIONS, SOLVERS, check_method


def reconstruct(denoiser, operator: Operator, y: torch.Tensor, method: str = "ddnm", *, steps: int = 100,
                sigmas: torch.Tensor | None = None, spacing: str | None = None,
                generator: torch.Generator | None = None, callback: Callable | None = None, cond=None,
                x: torch.Tensor | None = None, **options) -> torch.Tensor:
    """Samples x of p(x | y) for y = A(x) + sigma_y n, with an unconditional denoiser D(x, sigma, cond).

    method    ddnm | repaint | dps (see `diffusekit.inverse.solvers`; `METHOD_OPTIONS[method]` lists the options)
    steps     ladder length, from the denoiser's schedule (`spacing` as for `default_sigmas`), unless `sigmas` given
    x         the starting noise at sigmas[0] (default: N(0, prior_std^2) from `generator`)
    callback  called at every denoising step with i (ladder index), step (count), x, sigma, sigma_next, x0_hat
    Returns x of the shape `operator.input_shape(y.shape)` in y's real dtype; one sample per row of y (repeat y
    along the batch for several samples of one measurement)."""
    check_method(method, options)
    allowed = METHOD_OPTIONS[method]
    if not isinstance(operator, Operator):
        raise TypeError(f"operator must be a diffusekit.inverse Operator, got {type(operator).__name__}")
    if method != "dps":
        check_linear(operator, method)
    x_shape = operator.check_y(y)
    if sigmas is None:
        sigmas = default_sigmas(denoiser, steps, spacing)
    if x is None:
        dtype = y.real.dtype if y.is_complex() else y.dtype
        x = starting_noise(denoiser, x_shape, float(sigmas[0]), generator, dtype, y.device)
    elif tuple(x.shape) != tuple(x_shape):
        raise ValueError(f"the starting noise has shape {tuple(x.shape)}; y measures x of shape {tuple(x_shape)}")
    solver = SOLVERS[method]
    if method == "dps":
        return solver(denoiser, operator, y, x, sigmas, cond=cond, generator=generator, callback=callback,
                      **{**allowed, **options})
    with torch.no_grad():
        return solver(denoiser, operator, y, x, sigmas, cond=cond, generator=generator, callback=callback,
                      **{**allowed, **options})


def denoiser_calls(method: str, operator: Operator, x_shape, sigmas, **options) -> int:
    """How many denoising steps (denoiser evaluations, one `callback` each) `reconstruct` makes on this ladder:
    the length of a progress bar. RePaint's resampling and DDNM's time travel walk parts of the ladder several
    times, and the noisy-y solvers add a level at sigma_r, so it is not len(sigmas) - 1. Mirrors each solver's
    ladder and walk (tested against the callbacks)."""
    check_method(method)
    opts = {**METHOD_OPTIONS[method], **options}
    s = check_sigmas(sigmas)
    if method == "dps":
        return len(s) - 1
    sig_r = row_noise_std(operator, x_shape, method)
    if method == "ddnm" and opts["noisy"] != "anchor":
        path = jump_path(s, 0.0, opts["jump_length"], opts["resample"])
    else:  # ddnm's default 'anchor' and repaint: a level at sigma_r, no jumps below it
        s = insert_sigma(s, sig_r)
        path = jump_path(s, sig_r, opts["jump_length"], opts["resample"])
    return sum(b == a + 1 for a, b in zip(path[:-1], path[1:]))
