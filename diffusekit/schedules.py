"""Noise schedules, their conversions, and the timestep spacings used at sampling time.

Notation (used across diffusekit; other modules refer here):

    x0          clean data                          (B, C, *spatial)
    eps         standard Gaussian noise             same shape
    t           discrete training timestep, 0..T-1 (T = num_timesteps, 1000 by default)
    alpha_bar   cumulative product of (1 - beta_t): the variance-preserving (VP) process is
                x_t = sqrt(alpha_bar) * x0 + sqrt(1 - alpha_bar) * eps                (Ho et al. 2020, eq. 4)
    sigma       noise level of the variance-exploding (VE) view, sigma = sqrt((1 - alpha_bar) / alpha_bar):
                x = x0 + sigma * eps = x_t / sqrt(alpha_bar)                         (Karras et al. 2022, sec. 2)
    SNR         alpha_bar / (1 - alpha_bar) = 1 / sigma**2;   logSNR = -2 log sigma = lambda * 2

Every sampler in diffusekit works in the sigma view, so one sampler serves VP-trained (DDPM-style) and
VE/EDM-trained networks alike; the denoiser (denoiser.py) maps sigma back to whatever the network was trained on.

Two schedule families, both with `sigma_min`, `sigma_max`, `sigmas(steps, spacing)`, `to_dict()`:
    DiscreteSchedule   the VP schedules of DDPM-family models over T discrete timesteps
                       (betas: linear, scaled_linear, cosine, sigmoid; optional zero terminal SNR)
    KarrasSchedule     a continuous VE/EDM range [sigma_min, sigma_max] with Karras spacing (rho = 7)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine", "sigmoid")
SPACINGS = ("leading", "trailing", "linspace", "karras", "logsnr")
LADDERS = ("karras", "logsnr")  # spacings in sigma, whose ends (sigma_min, sigma_max) a user may move

# A zero-terminal-SNR schedule has alpha_bar[T-1] = 0, i.e. sigma = inf, which no sigma-space sampler can start
# from. Like diffusers' Euler schedulers we clamp the terminal alpha_bar to 2**-24 (sigma ~ 4096) in the sigma view.
ZERO_SNR_ALPHA_BAR = 2.0**-24


# ---------------------------------------------------------------------------------------------------------------------
# Conversions (float or tensor in, same kind out)


def alpha_bar_to_sigma(alpha_bar):
    """sigma = sqrt((1 - alpha_bar) / alpha_bar)."""
    return ((1 - alpha_bar) / alpha_bar) ** 0.5


def sigma_to_alpha_bar(sigma):
    """alpha_bar = 1 / (1 + sigma^2)."""
    return 1 / (1 + sigma**2)


def sigma_to_snr(sigma):
    """SNR = alpha_bar / (1 - alpha_bar) = 1 / sigma^2."""
    return sigma**-2


def snr_to_sigma(snr):
    return snr**-0.5


def sigma_to_logsnr(sigma):
    """logSNR = -2 log sigma."""
    return -2 * torch.log(torch.as_tensor(sigma, dtype=torch.float64))


def logsnr_to_sigma(logsnr):
    return torch.exp(-0.5 * torch.as_tensor(logsnr, dtype=torch.float64))


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """The `steps` noise levels of Karras et al. 2022, eq. 5, from sigma_max down to sigma_min (float64, no final 0).

    rho = 7 spends more steps at low noise, where the sample's detail is decided."""
    _check_steps(steps)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv_rho = 1.0 / rho
    return (sigma_max**inv_rho + ramp * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho


def logsnr_sigmas(steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """`steps` noise levels uniform in logSNR (= uniform in log sigma), sigma_max down to sigma_min (float64, no final
    0): DPM-Solver's "logSNR" time steps (Lu et al. 2022), its recommendation for few steps in pixel space."""
    _check_steps(steps)
    return torch.linspace(math.log(sigma_max), math.log(sigma_min), steps, dtype=torch.float64).exp()


def _ladder(steps, spacing, rho, lo, hi) -> torch.Tensor:
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < sigma_min < sigma_max for the {spacing} ladder, got {lo}, {hi}")
    return karras_sigmas(steps, lo, hi, rho) if spacing == "karras" else logsnr_sigmas(steps, lo, hi)


def _check_steps(steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def _check_spacing(spacing: str, allowed=SPACINGS) -> None:
    if spacing not in allowed:
        raise ValueError(f"unknown spacing {spacing!r}; allowed: {', '.join(allowed)}")


# ---------------------------------------------------------------------------------------------------------------------
# Discrete VP schedules


def make_betas(name: str, num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Betas of the named schedule (float64), defined exactly as diffusers defines them so models port both ways."""
    T = num_timesteps
    if name == "linear":  # DDPM, Ho et al. 2020: 1e-4 to 0.02 over 1000 steps
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    if name == "scaled_linear":  # latent diffusion / Stable Diffusion: linear in sqrt(beta)
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
    if name == "cosine":  # Nichol & Dhariwal 2021, eq. 17, s = 0.008, betas capped at 0.999
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = [min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)]
        return torch.tensor(betas, dtype=torch.float64)
    if name == "sigmoid":  # GeoDiff (Xu et al. 2022): a sigmoid ramp between beta_start and beta_end
        return torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64)) * (beta_end - beta_start) + beta_start
    raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(BETA_SCHEDULES)}")


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha_bar) so the last timestep has SNR exactly 0 (Lin et al. 2024, Algorithm 1)."""
    sqrt_ab = torch.cumprod(1 - betas, 0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    ab = sqrt_ab**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return 1 - alphas


@dataclass
class DiscreteSchedule:
    """A variance-preserving schedule over `num_timesteps` discrete steps (DDPM family).

    `alphas_cumprod` equals diffusers' `alphas_cumprod` for the same settings (tested to 1e-6)."""

    name: str = "linear"
    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    zero_terminal_snr: bool = False

    def __post_init__(self):
        if self.name not in BETA_SCHEDULES:
            raise ValueError(f"unknown schedule {self.name!r}; allowed: {', '.join(BETA_SCHEDULES)}")
        if isinstance(self.num_timesteps, bool) or not isinstance(self.num_timesteps, int) or self.num_timesteps < 2:
            raise ValueError(f"num_timesteps must be an integer >= 2, got {self.num_timesteps!r}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")
        betas = make_betas(self.name, self.num_timesteps, self.beta_start, self.beta_end)
        if self.zero_terminal_snr:
            betas = rescale_zero_terminal_snr(betas)
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, 0)
        ab = self.alphas_cumprod.clamp(min=ZERO_SNR_ALPHA_BAR)
        self.sigmas_table = alpha_bar_to_sigma(ab)  # (T,) increasing with t
        self._log_sigmas = self.sigmas_table.log()

    # -- the sigma view ---------------------------------------------------------------------------------------------
    @property
    def sigma_min(self) -> float:
        return float(self.sigmas_table[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas_table[-1])

    def sigma_at(self, t) -> torch.Tensor:
        """sigma at (possibly fractional) timesteps t, linear interpolation in t as diffusers does (float64)."""
        t = torch.as_tensor(t, dtype=torch.float64).clamp(0, self.num_timesteps - 1)
        lo = t.floor().long().clamp(max=self.num_timesteps - 2)
        w = t - lo
        return (1 - w) * self.sigmas_table[lo] + w * self.sigmas_table[lo + 1]

    def sigma_to_t(self, sigma) -> torch.Tensor:
        """The (fractional) timestep whose sigma this is: linear interpolation in log sigma (float64).

        This is how a network trained on discrete t is evaluated at any noise level (Karras sigmas, Heun's
        intermediate points); at the schedule's own sigmas it returns the integer timesteps."""
        log_sigma = torch.log(torch.as_tensor(sigma, dtype=torch.float64).clamp(min=1e-10))
        ls = self._log_sigmas.to(log_sigma.device)  # sigma may live on the GPU; the table is 8 KB
        idx = torch.searchsorted(ls, log_sigma.reshape(-1)).clamp(1, len(ls) - 1)
        lo, hi = ls[idx - 1], ls[idx]
        w = ((log_sigma.reshape(-1) - lo) / (hi - lo)).clamp(0, 1)
        return ((idx - 1) + w).reshape(log_sigma.shape)

    # -- sampling-time discretisations ------------------------------------------------------------------------------
    def timesteps(self, steps: int, spacing: str = "leading", steps_offset: int = 0) -> torch.Tensor:
        """Integer training timesteps for a `steps`-step sampler, high noise first (Lin et al. 2024, Table 2).

        leading:  0, k, 2k, ... (+ offset), k = T // steps    (DDPM/DDIM in diffusers; never visits t = T-1)
        trailing: T-1, T-1-k, ...                             (always starts at the last, noisiest timestep)
        linspace: round(linspace(0, T-1, steps + 1))[1:]      (DPM-Solver in diffusers)"""
        _check_steps(steps)
        _check_spacing(spacing, ("leading", "trailing", "linspace"))
        T = self.num_timesteps
        if steps > T:
            raise ValueError(f"steps={steps} is more than the schedule's {T} training timesteps")
        if spacing == "leading":
            ts = torch.arange(steps, dtype=torch.float64) * (T // steps) + steps_offset
        elif spacing == "trailing":
            ts = torch.arange(T, 0, -T / steps, dtype=torch.float64).round() - 1
        else:
            ts = torch.linspace(0, T - 1, steps + 1, dtype=torch.float64).round()[1:]
        return ts.round().long().sort(descending=True).values

    def sigmas(self, steps: int, spacing: str = "leading", rho: float = 7.0, sigma_min: float | None = None,
               sigma_max: float | None = None) -> torch.Tensor:
        """`steps + 1` noise levels for a sampler, high to low, ending with 0 (float64).

        With `karras` spacing the levels follow Karras et al. eq. 5 (as diffusers' `use_karras_sigmas`), with
        `logsnr` they are uniform in logSNR, both between this schedule's sigma_min and sigma_max unless the ladder's
        ends are given (within those: the network never saw noise outside them); otherwise they are the sigmas of
        `timesteps(steps, spacing)`."""
        _check_spacing(spacing)
        if spacing in LADDERS:
            lo = self.sigma_min if sigma_min is None else sigma_min
            hi = self.sigma_max if sigma_max is None else sigma_max
            tol = 1e-9 * self.sigma_max
            if lo < self.sigma_min - tol or hi > self.sigma_max + tol:
                raise ValueError(f"the ladder's ends must lie within the schedule's noise levels [{self.sigma_min:.4g}, "
                                 f"{self.sigma_max:.4g}] (the network was trained there); got sigma_min={lo}, "
                                 f"sigma_max={hi}")
            s = _ladder(steps, spacing, rho, lo, hi)
        elif sigma_min is not None or sigma_max is not None:
            raise ValueError(f"sigma_min / sigma_max move the ends of the {' and '.join(LADDERS)} ladders; "
                             f"{spacing!r} spacing takes the schedule's own timesteps: choose one of those spacings")
        else:
            s = self.sigmas_table[self.timesteps(steps, spacing)]
        return torch.cat([s, s.new_zeros(1)])

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class KarrasSchedule:
    """The continuous VE/EDM view: noise levels in [sigma_min, sigma_max] (Karras et al. 2022, Table 1 defaults).

    `sigma_data` is the data's standard deviation, used by EDM preconditioning and loss weighting."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sigma_data: float = 0.5
    name: str = "karras"

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.sigma_data <= 0:
            raise ValueError(f"sigma_data must be > 0, got {self.sigma_data}")

    def sigmas(self, steps: int, spacing: str = "karras", rho: float | None = None, sigma_min: float | None = None,
               sigma_max: float | None = None) -> torch.Tensor:
        """`steps + 1` noise levels, high to low, ending with 0; `linspace` and `logsnr` are both uniform in log sigma
        here. sigma_min / sigma_max move the ladder's ends (default: this schedule's)."""
        _check_spacing(spacing, ("karras", "linspace", "logsnr"))
        lo = self.sigma_min if sigma_min is None else sigma_min
        hi = self.sigma_max if sigma_max is None else sigma_max
        s = _ladder(steps, "logsnr" if spacing == "linspace" else spacing, self.rho if rho is None else rho, lo, hi)
        return torch.cat([s, s.new_zeros(1)])

    def to_dict(self) -> dict:
        return asdict(self)


Schedule = DiscreteSchedule | KarrasSchedule


def schedule_from_dict(d: dict) -> Schedule:
    """Inverse of `schedule.to_dict()`: picks the family by name, refuses unknown keys."""
    d = dict(d)
    cls = KarrasSchedule if d.get("name") == "karras" else DiscreteSchedule
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings {sorted(unknown)}; allowed: {sorted(known)}")
    return cls(**d)


def get_schedule(name: str = "linear", **kwargs) -> Schedule:
    """A schedule by the name users type: linear, scaled_linear, cosine, sigmoid (discrete VP) or karras (VE/EDM)."""
    if name == "karras":
        return KarrasSchedule(**kwargs)
    if name not in BETA_SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(BETA_SCHEDULES + ('karras',))}")
    if name == "scaled_linear":
        kwargs.setdefault("beta_start", 0.00085)  # Stable Diffusion's defaults
        kwargs.setdefault("beta_end", 0.012)
    return DiscreteSchedule(name=name, **kwargs)
