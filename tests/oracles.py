"""Closed-form denoisers: for Gaussian data, and mixtures of Gaussians, E[x0 | x0 + sigma eps] is known exactly.

They take the samplers' denoiser call, D(x, sigma, cond) -> x0_hat, on tensors (B, D, 1) (D-dimensional data as a
1-D 'signal' of length 1, so they run through the same (B, C, *spatial) machinery) in float64."""

import math

import torch


class GaussianOracle:
    """Data N(mu, Sigma). E[x0 | x] = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu)."""

    def __init__(self, mu, cov):
        self.mu = torch.as_tensor(mu, dtype=torch.float64)
        self.cov = torch.as_tensor(cov, dtype=torch.float64)
        self.lam, self.U = torch.linalg.eigh(self.cov)

    def __call__(self, x, sigma, cond=None):
        s2 = float(sigma) ** 2
        z = (x[..., 0] - self.mu) @ self.U  # (B, D) in the eigenbasis
        return (self.mu + (z * (self.lam / (self.lam + s2))) @ self.U.T)[..., None]

    def sample_data(self, n, generator):
        z = torch.randn(n, len(self.mu), generator=generator, dtype=torch.float64)
        return (self.mu + (z * self.lam.sqrt()) @ self.U.T)[..., None]

    def sample_marginal(self, n, sigma, generator):
        """Exact samples of x = x0 + sigma eps: N(mu, Sigma + sigma^2 I)."""
        z = torch.randn(n, len(self.mu), generator=generator, dtype=torch.float64)
        return (self.mu + (z * (self.lam + sigma**2).sqrt()) @ self.U.T)[..., None]

    def flow(self, x, sigma_from, sigma_to):
        """The exact probability-flow ODE map: scales each eigen-direction by sqrt((l + s_to^2) / (l + s_from^2))."""
        z = (x[..., 0] - self.mu) @ self.U
        scale = ((self.lam + sigma_to**2) / (self.lam + sigma_from**2)).sqrt()
        return (self.mu + (z * scale) @ self.U.T)[..., None]


class FieldOracle:
    """Stationary Gaussian fields (B, 1, S, S) with per-mode spectrum P_k on the fft2 grid (sum_k P_k / S^2 = the
    pixel variance, as `diffusekit.data.fields.grf_power`): the exact denoiser is the Wiener filter,
    E[x0 | x] = IFFT(P / (P + sigma^2) FFT(x)), mode by mode (white noise has P = sigma^2 in these units)."""

    def __init__(self, power):
        self.power = torch.as_tensor(power, dtype=torch.float64)

    def __call__(self, x, sigma, cond=None):
        gain = self.power / (self.power + float(sigma) ** 2)
        return torch.fft.ifft2(torch.fft.fft2(x.double()) * gain).real.to(x.dtype)


class MixtureOracle:
    """Data sum_k w_k N(mu_k, diag(var_k)). E[x0 | x] = sum_k r_k(x) (mu_k + var_k / (var_k + sigma^2) (x - mu_k)),
    with responsibilities r_k(x) proportional to w_k N(x; mu_k, var_k + sigma^2)."""

    def __init__(self, weights, means, variances):
        self.w = torch.as_tensor(weights, dtype=torch.float64)
        self.mu = torch.as_tensor(means, dtype=torch.float64)  # (K, D)
        self.var = torch.as_tensor(variances, dtype=torch.float64)  # (K, D)

    def __call__(self, x, sigma, cond=None):
        s2 = float(sigma) ** 2
        x = x[..., 0][:, None, :]  # (B, 1, D)
        v = self.var + s2  # (K, D)
        logp = self.w.log() - 0.5 * (((x - self.mu) ** 2) / v + v.log()).sum(-1)  # (B, K)
        r = torch.softmax(logp, dim=1)[..., None]  # (B, K, 1)
        post = self.mu + self.var / v * (x - self.mu)  # (B, K, D)
        return (r * post).sum(1)[..., None]

    def component(self, x):
        """Index of the nearest component mean, for reading samples back."""
        return torch.cdist(x[..., 0], self.mu).argmin(1)


def fit_slope(steps, errors):
    """Slope of log(error) against log(steps): minus the convergence order."""
    lx = torch.tensor([math.log(s) for s in steps], dtype=torch.float64)
    ly = torch.tensor([math.log(e) for e in errors], dtype=torch.float64)
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())
