"""Exact oracles: driven by the closed-form denoiser of Gaussian (and mixture) data, every sampler must reproduce
the data distribution, and the deterministic ones must converge at their order."""

import math

import pytest
import torch
from oracles import GaussianOracle, MixtureOracle, fit_slope

import diffusekit as dk

MU = [0.5, -0.3, 0.1]
COV = [[0.30, 0.12, 0.00], [0.12, 0.20, -0.05], [0.00, -0.05, 0.08]]
N = 20000

# Steps per sampler: the real thing for DDPM (1000 leading steps), few steps for the high-order solvers.
STEPS = {"ddpm": 1000, "ddim": 200, "euler": 200, "euler-ancestral": 300, "heun": 40, "dpmpp-2m": 40,
         "dpmpp-2m-sde": 100, "dpmpp-3m": 40, "restart": 40}
assert set(STEPS) == set(dk.SAMPLERS), "every sampler is tested"


def run(sampler, oracle, steps, seed, schedule=None, n=N, options=None):
    schedule = schedule or dk.DiscreteSchedule()
    spacing = dk.SamplerConfig(sampler, steps).resolved_spacing
    sigmas = schedule.sigmas(steps, spacing)
    g = torch.Generator().manual_seed(seed)
    D = len(oracle.mu) if isinstance(oracle, GaussianOracle) else oracle.mu.shape[1]
    x = torch.randn(n, D, 1, generator=g, dtype=torch.float64) * math.sqrt(1 + float(sigmas[0]) ** 2)
    return dk.get_sampler(sampler)(oracle, x, sigmas, generator=g, **(options or {}))[..., 0]


@pytest.mark.parametrize("sampler", list(STEPS))
def test_gaussian_distribution(sampler):
    oracle = GaussianOracle(MU, COV)
    x = run(sampler, oracle, STEPS[sampler], seed=0)
    assert torch.isfinite(x).all()
    # standard errors at n = 20000: mean ~0.004, covariance ~0.003
    assert torch.allclose(x.mean(0), oracle.mu, atol=0.015), x.mean(0)
    assert torch.allclose(torch.cov(x.T), oracle.cov, atol=0.015), torch.cov(x.T)


@pytest.mark.parametrize("sampler", list(STEPS))
def test_mixture_distribution(sampler):
    oracle = MixtureOracle([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.5]], [[0.05, 0.1], [0.1, 0.04]])
    x = run(sampler, oracle, STEPS[sampler], seed=1)
    k = oracle.component(x[..., None])
    frac = (k == 0).double().mean()
    assert abs(frac - 0.3) < 0.015, frac  # the mode weights survive (std error 0.003)
    for j in range(2):
        xj = x[k == j]
        assert torch.allclose(xj.mean(0), oracle.mu[j], atol=0.02), (j, xj.mean(0))
        assert torch.allclose(xj.var(0), oracle.var[j], atol=0.015), (j, xj.var(0))


def test_raised_ladder_end_returns_the_posterior_mean_there():
    """With the ladder's last level raised to sigma_min the final step to 0 returns E[x0 | x at sigma_min]: for
    Gaussian data N(mu, S) its covariance is S (S + sigma_min^2 I)^-1 S, not S (the detail below that noise level)."""
    oracle = GaussianOracle(MU, COV)
    sig = 0.3
    sigmas = dk.DiscreteSchedule().sigmas(40, "logsnr", sigma_min=sig)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(N, 3, 1, generator=g, dtype=torch.float64) * math.sqrt(1 + float(sigmas[0]) ** 2)
    x = dk.get_sampler("dpmpp-2m")(oracle, x, sigmas, generator=g)[..., 0]
    S = oracle.cov
    shrunk = S @ torch.linalg.solve(S + sig**2 * torch.eye(3, dtype=S.dtype), S)
    assert torch.allclose(x.mean(0), oracle.mu, atol=0.015)
    assert torch.allclose(torch.cov(x.T), shrunk, atol=0.01), torch.cov(x.T)
    assert not torch.allclose(torch.cov(x.T), S, atol=0.03)  # the shrinkage is visible at this sigma_min


@pytest.mark.parametrize("sampler,order", [("euler", 1), ("ddim", 1), ("heun", 2), ("dpmpp-2m", 2), ("dpmpp-3m", 3)])
def test_convergence_order(sampler, order):
    """Error against the exact ODE solution falls as steps^-order (log-log slope)."""
    oracle = GaussianOracle(MU, COV)
    sched = dk.KarrasSchedule(sigma_min=0.002, sigma_max=80.0)
    g = torch.Generator().manual_seed(3)
    x_T = oracle.sample_marginal(256, sched.sigma_max, g)
    # every sampler's last step returns D(x, sigma_min); the exact answer is that of the exact ODE solution
    exact = oracle(oracle.flow(x_T, sched.sigma_max, sched.sigma_min), sched.sigma_min)
    steps = [16, 32, 64, 128] if order == 1 else [8, 16, 32, 64]
    errors = []
    for n in steps:
        out = dk.get_sampler(sampler)(oracle, x_T.clone(), sched.sigmas(n, "karras"))
        errors.append(float((out - exact).abs().max()))
    slope = fit_slope(steps, errors)
    assert -order - 0.5 < slope < -order + 0.35, (slope, errors)


def test_restart_contracts_errors_made_above_the_restart_interval():
    """Restart's point (Xu et al. 2023, Theorem 2): an error made at high noise is carried to the sample by the ODE,
    but each restart (forward noise from t_min up to t_max, then the ODE back down) multiplies it by the exact flow's
    contraction sqrt((l + t_min^2) / (l + t_max^2)) along each eigen-direction l of Gaussian data. The oracle here is
    wrong by a fixed offset above sigma 2.5 only, so the restart interval [~0.3, 2] is solved with the exact one."""
    oracle = GaussianOracle(MU, COV)
    offset = oracle.U @ torch.tensor([3.0, 1.0, 1.0], dtype=torch.float64)

    def biased(x, sigma, cond=None):
        out = oracle(x, sigma)
        return out + offset[:, None] if float(sigma) > 2.5 else out

    sigmas = dk.DiscreteSchedule().sigmas(40, "karras")
    x_T = torch.randn(N, 3, 1, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    x_T = x_T * math.sqrt(1 + float(sigmas[0]) ** 2)
    errors = {}
    for restarts in (0, 1, 2):
        out = dk.get_sampler("restart")(biased, x_T.clone(), sigmas, generator=torch.Generator().manual_seed(7),
                                        restart_min=0.3, restart_max=2.0, restarts=restarts, restart_steps=8)
        errors[restarts] = (out[..., 0].mean(0) - oracle.mu) @ oracle.U  # mean error in the eigenbasis
    t_min = min(sigmas[1:-1].tolist(), key=lambda v: abs(math.log(v / 0.3)))  # the ladder level restarts start at
    c = ((oracle.lam + t_min**2) / (oracle.lam + 2.0**2)).sqrt()  # 0.18 to 0.32 here
    assert (errors[0].abs() > 0.15).all(), errors[0]  # the ODE carries the offset's effect into the samples
    # the same starting noise, so what is left is the offset's error times c per restart (+- sampling noise ~0.005)
    assert torch.allclose(errors[1], errors[0] * c, atol=0.02), (errors, c)
    assert torch.allclose(errors[2], errors[0] * c**2, atol=0.02), (errors, c)


def test_restart_needs_enough_descent_steps():
    """Why restart's default descent is 5 steps: the injected noise (std ~2 here) is only contracted as accurately as
    the descent solves the ODE; with 2 Heun steps over [~0.3, 2] every variance comes out about 25% too large, with 5
    steps it is within the tolerance of `test_gaussian_distribution`."""
    oracle = GaussianOracle(MU, COV)
    coarse = run("restart", oracle, 40, seed=0, options={"restart_steps": 2})
    fine = run("restart", oracle, 40, seed=0, options={"restart_steps": 5})
    assert (torch.diag(torch.cov(coarse.T)) / torch.diag(oracle.cov) > 1.2).all(), torch.cov(coarse.T)
    assert torch.allclose(torch.cov(fine.T), oracle.cov, atol=0.015), torch.cov(fine.T)


def test_ddpm_posterior_variances_both_reproduce_gaussian():
    oracle = GaussianOracle(MU, COV)
    for variance in ("fixed_small", "fixed_large"):
        x = run("ddpm", oracle, 1000, seed=4, options={"variance": variance})
        assert torch.allclose(torch.cov(x.T), oracle.cov, atol=0.02), (variance, torch.cov(x.T))


def test_churn_and_eta_variants_reproduce_gaussian():
    oracle = GaussianOracle(MU, COV)
    for sampler, opts, steps in [("heun", {"s_churn": 20.0}, 60), ("euler", {"s_churn": 40.0}, 300),
                                 ("ddim", {"eta": 1.0}, 300), ("ddim", {"eta": 0.5}, 300)]:
        x = run(sampler, oracle, steps, seed=5, options=opts)
        assert torch.allclose(x.mean(0), oracle.mu, atol=0.02), (sampler, opts, x.mean(0))
        assert torch.allclose(torch.cov(x.T), oracle.cov, atol=0.02), (sampler, opts, torch.cov(x.T))
