"""One denoiser interface, D(x, sigma, cond) -> x0_hat, over any network parameterization.

Every sampler calls a denoiser in the sigma view (x = x0 + sigma eps, see `diffusekit.schedules`); the denoiser turns
that call into whatever its network was trained on, with the preconditioning of Karras et al. 2022 (eq. 7):

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma), cond)

prediction  network F predicts       c_skip            c_out                      c_in
eps         the noise eps            1                 -sigma                     1 / sqrt(1 + sigma^2)
x0          the clean data x0        0                 1                          1 / sqrt(1 + sigma^2)
v           v = sqrt(ab) eps - sqrt(1-ab) x0         1 / (1 + sigma^2)   -sigma / sqrt(1 + sigma^2)
edm         EDM's F (Table 1)        sd^2/(s^2+sd^2)   s sd / sqrt(s^2 + sd^2)   1 / sqrt(s^2 + sd^2)

For eps, x0 and v, c_in x is exactly the VP sample x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps, so networks
trained the DDPM way (diffusers' included) plug in unchanged. c_noise is what the network sees as its noise level:
`timestep` (the discrete schedule's t, fractional between timesteps, diffusers' convention) or `log_sigma`
(log(sigma) / 4, EDM's choice for networks trained on a continuum of noise levels).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .process import add_noise, bcast, training_target, x0_loss_weight
from .schedules import DiscreteSchedule, KarrasSchedule, Schedule, sigma_to_alpha_bar

PARAMETERIZATIONS = ("eps", "x0", "v", "edm")
NOISE_CONDITIONINGS = ("timestep", "log_sigma")


class Denoiser(nn.Module):
    """Wraps a network F(x_in, c_noise[, cond]) -> output into D(x, sigma, cond) -> x0_hat.

    `net` can be any callable: our UNet, or e.g. `lambda x, t: diffusers_unet(x, t).sample` for a model trained
    elsewhere with diffusers' timestep convention (t in 0..999). A module `net` is registered, so `.to()`,
    `.parameters()` and `state_dict()` see it.

    quantize: with noise_cond='timestep', round t to the nearest training timestep (k-diffusion's `quantize`;
    diffusers' DPMSolverMultistepScheduler does this with Karras sigmas). Off by default: a network evaluated at
    the fractional t of its own sigma is the consistent choice."""

    def __init__(
        self,
        net: Callable,
        schedule: Schedule,
        prediction: str = "eps",
        noise_cond: str | None = None,
        sigma_data: float = 0.5,
        check_finite: bool = True,
        quantize: bool = False,
    ):
        super().__init__()
        if prediction not in PARAMETERIZATIONS:
            raise ValueError(f"unknown prediction {prediction!r}; allowed: {', '.join(PARAMETERIZATIONS)}")
        if noise_cond is None:
            noise_cond = "timestep" if isinstance(schedule, DiscreteSchedule) else "log_sigma"
        if noise_cond not in NOISE_CONDITIONINGS:
            raise ValueError(f"unknown noise_cond {noise_cond!r}; allowed: {', '.join(NOISE_CONDITIONINGS)}")
        if noise_cond == "timestep" and not isinstance(schedule, DiscreteSchedule):
            raise ValueError("noise_cond='timestep' needs a DiscreteSchedule; use noise_cond='log_sigma'")
        if not isinstance(schedule, (DiscreteSchedule, KarrasSchedule)):
            raise TypeError(f"schedule must be a DiscreteSchedule or KarrasSchedule, got {type(schedule).__name__}")
        self.net = net
        self.schedule = schedule
        self.prediction = prediction
        self.noise_cond = noise_cond
        self.sigma_data = getattr(schedule, "sigma_data", sigma_data) if prediction == "edm" else sigma_data
        self.check_finite = check_finite
        self.quantize = quantize
        self._scalar_cache: dict[float, tuple[float, float, float, float]] = {}

    # -- the preconditioning -----------------------------------------------------------------------------------------
    @property
    def vp(self) -> bool:
        """True when the network was trained on VP inputs (eps, x0, v): its prior at sigma_max has variance
        1 + sigma_max^2 in the sigma view, not sigma_max^2."""
        return self.prediction != "edm"

    def coefficients(self, sigma: torch.Tensor):
        """c_skip, c_out, c_in, c_noise for noise levels sigma (any shape, float64 recommended)."""
        s = sigma
        if self.prediction == "edm":
            sd = self.sigma_data
            c_skip = sd**2 / (s**2 + sd**2)
            c_out = s * sd / (s**2 + sd**2) ** 0.5
            c_in = 1 / (s**2 + sd**2) ** 0.5
        else:
            c_in = 1 / (1 + s**2) ** 0.5
            if self.prediction == "eps":
                c_skip, c_out = torch.ones_like(s), -s
            elif self.prediction == "x0":
                c_skip, c_out = torch.zeros_like(s), torch.ones_like(s)
            else:  # v
                c_skip, c_out = 1 / (1 + s**2), -s * c_in
        if self.noise_cond == "timestep":
            c_noise = self.schedule.sigma_to_t(s)
            if self.quantize:
                c_noise = c_noise.round()
        else:
            c_noise = torch.log(s) / 4
        return c_skip, c_out, c_in, c_noise

    def _scalar_coefficients(self, sigma: float) -> tuple[float, float, float, float]:
        """The same for one Python float, cached: samplers call with a handful of fixed sigmas, so the per-step cost
        of the preconditioning is a dictionary look-up."""
        c = self._scalar_cache.get(sigma)
        if c is None:
            c = tuple(float(v) for v in self.coefficients(torch.tensor(sigma, dtype=torch.float64)))
            if len(self._scalar_cache) < 4096:
                self._scalar_cache[sigma] = c
        return c

    def _run(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond):
        out = self.net(x_in, c_noise) if cond is None else self.net(x_in, c_noise, cond)
        out = out.to(x_in.dtype)  # a bf16 network (autocast) still gets fp32 sampler and loss arithmetic
        if out.shape != x_in.shape:
            raise ValueError(
                f"the network returned shape {tuple(out.shape)} for input {tuple(x_in.shape)}; a denoising network "
                f"must return the shape of its input (B, C, *spatial)"
            )
        # one reduction pass: NaN and inf survive a sum (a NaN-free sum overflows only for absurd outputs too)
        if self.check_finite and not torch.isfinite(out.sum()):
            raise FloatingPointError(
                "the network returned NaN or inf; check the model's weights (a diverged checkpoint?) and its input "
                "range, or sample in float32"
            )
        return out

    def forward(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        """x0_hat = D(x; sigma). `sigma` is a Python float (one level for the batch, the samplers' case) or a
        tensor of shape (B,) (training)."""
        B = x.shape[0]
        if isinstance(sigma, (float, int)):
            c_skip, c_out, c_in, c_noise = self._scalar_coefficients(float(sigma))
            out = self._run(x * c_in, torch.full((B,), c_noise, dtype=x.dtype, device=x.device), cond)
            if c_skip == 1:  # eps-prediction: x - sigma * eps in one pass
                return torch.add(x, out, alpha=c_out)
            return out.mul(c_out).add_(x, alpha=c_skip) if c_skip else out.mul(c_out)
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).expand(B)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        out = self._run(x * bcast(c_in, x), c_noise.to(x.dtype), cond)
        return bcast(c_skip, x) * x + bcast(c_out, x) * out

    # -- training ----------------------------------------------------------------------------------------------------
    def loss(
        self,
        x0: torch.Tensor,
        sigma: torch.Tensor,
        eps: torch.Tensor,
        cond=None,
        weighting: str = "uniform",
        gamma: float = 5.0,
    ) -> torch.Tensor:
        """Weighted denoising loss for one batch, shape (B,): mean over each sample of w(sigma) (F - F_target)^2.

        F_target is what the parameterization predicts (eps, x0, v, or EDM's target), so `uniform` weighting is the
        plain MSE on the network output (DDPM's L_simple for eps). Other weightings are defined on the denoised
        estimate (`process.x0_loss_weight`) and carried into F-space by c_out^2, since D - x0 = c_out (F - F_target)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x0.device)
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        x = add_noise(x0, sigma, eps)
        out = self._run(x * bcast(c_in, x0), c_noise.to(x0.dtype), cond)
        if self.prediction == "edm":  # EDM's F target (Karras et al. 2022, eq. 8): (x0 - c_skip x) / c_out
            target = (x0 - bcast(c_skip, x0) * x) / bcast(c_out, x0)
        else:  # the VP targets, alpha_bar = 1 / (1 + sigma^2)
            target = training_target(self.prediction, x0, eps, sigma_to_alpha_bar(sigma))
        dtype = torch.promote_types(out.dtype, torch.float32)  # bf16 network outputs: the loss in fp32
        mse = (out.to(dtype) - target.to(dtype)).pow(2).flatten(1).mean(1)
        if weighting == "uniform":
            return mse
        w = x0_loss_weight(weighting, sigma, gamma=gamma, sigma_data=self.sigma_data) * c_out**2
        return w.to(mse.dtype) * mse

    def prior_std(self, sigma_max: float) -> float:
        """Standard deviation of the noise a sampler starts from at sigma_max, in the sigma view.

        VP-trained networks saw x_t ~ N(0, 1) at their last timestep, which is sqrt(1 + sigma^2) here (this is what
        makes our DDPM loop start from the same noise as diffusers'); EDM starts from sigma_max (Karras et al.)."""
        return math.sqrt(1 + sigma_max**2) if self.vp else sigma_max
