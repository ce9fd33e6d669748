"""diffusekit.inverse's solvers: against the closed-form Gaussian posterior, and one interface test over every
method x operator.

The exact oracle: for x0 ~ N(mu, S) and y = A x0 + s_y n, p(x0 | y) = N(m, P) with
    m = mu + S A^T (A S A^T + s_y^2 I)^-1 (y - A mu),   P = S - S A^T (A S A^T + s_y^2 I)^-1 A S.
"""

import pytest
import torch
from oracles import GaussianOracle

import diffusekit as dk
from diffusekit import inverse as inv
from diffusekit.schedules import karras_sigmas

F64 = torch.float64


# ---- helpers ---------------------------------------------------------------------------------------------------------


class MatrixOperator(inv.Operator):
    """y = A x on (B, D, 1) for a dense (m, D) matrix: the general linear operator of the posterior formula."""

    name = "matrix"

    def __init__(self, A, sigma_y=0.0):
        super().__init__(sigma_y)
        self.A = A
        self.A_pinv = torch.linalg.pinv(A)
        self.orthonormal_rows = torch.allclose(A @ A.T, torch.eye(A.shape[0], dtype=A.dtype), atol=1e-12)

    def forward(self, x):
        return self.A @ x

    def adjoint(self, y):
        return self.A.T @ y

    def pinv(self, y):
        return self.A_pinv @ y

    def pinv_noise_std(self, x_shape):
        return self.sigma_y if self.orthonormal_rows or self.sigma_y == 0 else None

    def output_shape(self, x_shape):
        return (x_shape[0], self.A.shape[0], 1)

    def input_shape(self, y_shape):
        if tuple(y_shape[1:]) != (self.A.shape[0], 1):
            raise ValueError(f"y must be (B, {self.A.shape[0]}, 1), got {tuple(y_shape)}")
        return (y_shape[0], self.A.shape[1], 1)


def smooth_cov(d, length=1.5, nugget=0.01):
    t = torch.arange(d, dtype=F64)
    return torch.exp(-0.5 * (t[:, None] - t[None]) ** 2 / length**2) + nugget * torch.eye(d, dtype=F64)


def correlated_oracle(d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q = torch.randn(d, d, generator=g, dtype=F64)
    return GaussianOracle(0.5 * torch.randn(d, generator=g, dtype=F64), Q @ Q.T / d + 0.1 * torch.eye(d, dtype=F64))


def gaussian_posterior(oracle, A, y, s2):
    S, mu = oracle.cov, oracle.mu
    K = S @ A.T @ torch.linalg.inv(A @ S @ A.T + s2 * torch.eye(A.shape[0], dtype=F64))
    return mu + K @ (y - A @ mu), S - K @ A @ S


def ladder(steps, sigma_max=100.0):
    return torch.cat([karras_sigmas(steps, 0.002, sigma_max), torch.zeros(1, dtype=F64)])


class ImageGaussian:
    """A Gaussian prior on (B, C, H, W) images (a smooth stationary covariance): GaussianOracle on the flattened
    pixels, in the input's dtype. Exact E[x0 | x], differentiable, fast for tiny images."""

    def __init__(self, c=1, h=8, w=8):
        self.shape = (c, h, w)
        yy, xx = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
        p = torch.stack([yy.reshape(-1), xx.reshape(-1)], 1)
        k = torch.exp(-0.5 * torch.cdist(p, p) ** 2 / 2.0**2)
        cov = torch.block_diag(*[0.3 * k] * c) + 1e-3 * torch.eye(c * h * w, dtype=F64)
        self.oracle = GaussianOracle(torch.zeros(c * h * w, dtype=F64), cov)

    def __call__(self, x, sigma, cond=None):
        out = self.oracle(x.reshape(x.shape[0], -1, 1).to(F64), sigma)
        return out.reshape(x.shape).to(x.dtype)

    def sample(self, n, seed):
        return self.oracle.sample_data(n, torch.Generator().manual_seed(seed)).reshape(n, *self.shape).float()


# ---- solvers on the exact Gaussian posterior ---------------------------------------------------------------------


def smooth_oracle(d=6):
    """Strongly correlated coordinates: what is observed says much about what is not."""
    return GaussianOracle(torch.linspace(-0.5, 0.5, d, dtype=F64), smooth_cov(d))


def mask_problem(sigma_y, n, seed=0, oracle=None):
    oracle = oracle or smooth_oracle()
    m = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)
    op = inv.Mask(m[:, None], sigma_y=sigma_y)
    g = torch.Generator().manual_seed(seed + 10)
    y = op.measure(oracle.sample_data(1, g), g)
    mean, cov = gaussian_posterior(oracle, torch.eye(6, dtype=F64)[m], y[0, m, 0], sigma_y**2)
    return oracle, op, y.expand(n, 6, 1), mean, cov, m


def matrix_problem(sigma_y, n, seed=0):
    """A random 3 x 6 operator with orthonormal rows (not a coordinate mask: row and null spaces are mixed)."""
    oracle = correlated_oracle(6, seed)
    g = torch.Generator().manual_seed(seed + 20)
    A = torch.linalg.qr(torch.randn(6, 3, generator=g, dtype=F64))[0].T
    op = MatrixOperator(A, sigma_y)
    y = op.measure(oracle.sample_data(1, g), g)
    mean, cov = gaussian_posterior(oracle, A, y[0, :, 0], sigma_y**2)
    return oracle, op, y.expand(n, 3, 1), mean, cov


def solve(method, oracle, op, y, steps, seed=1, **options):
    g = torch.Generator().manual_seed(seed)
    x = oracle.sample_marginal(y.shape[0], 100.0, g)
    return inv.reconstruct(oracle, op, y, method, sigmas=ladder(steps), x=x, generator=g, **options)[..., 0]


def posterior_errors(samples, mean, cov):
    """max |mean error| in posterior stds, and ||cov error||_F / ||cov||_F, over the directions y leaves open."""
    keep = cov.diagonal() > 1e-9
    m_err = ((samples.mean(0) - mean).abs() / cov.diagonal().clamp(min=1e-12).sqrt())[keep].max()
    c = torch.cov(samples.T)
    c_err = (c - cov)[keep][:, keep].norm() / cov[keep][:, keep].norm()
    return float(m_err), float(c_err)


def test_gaussian_posterior_formula_by_conditioning():
    """The oracle's posterior, checked once against conditioning the joint Gaussian of (x0, y) directly."""
    oracle, op, y, mean, cov = matrix_problem(0.3, 1)
    A, S, s2 = op.A, oracle.cov, 0.09
    joint = torch.cat([torch.cat([S, S @ A.T], 1), torch.cat([A @ S, A @ S @ A.T + s2 * torch.eye(3, dtype=F64)], 1)])
    Sxy, Syy = joint[:6, 6:], joint[6:, 6:]
    assert torch.allclose(mean, oracle.mu + Sxy @ torch.linalg.solve(Syy, y[0, :, 0] - A @ oracle.mu))
    assert torch.allclose(cov, S - Sxy @ torch.linalg.solve(Syy, Sxy.T))


@pytest.mark.parametrize("eta", [1.0, 0.0])
@pytest.mark.parametrize("problem", ["mask", "matrix"])
def test_ddnm_is_exactly_consistent(problem, eta):
    oracle, op, y, *_ = mask_problem(0.0, 64) if problem == "mask" else matrix_problem(0.0, 64)
    x = solve("ddnm", oracle, op, y, 30, eta=eta)[..., None]
    assert torch.allclose(op.forward(x), y, atol=1e-10, rtol=0)


# Measured on these problems (N = 2000; errors as `posterior_errors`: mean in posterior stds, covariance relative):
#   ddnm, 500 steps           0.02-0.06, 2-6%   (noiseless and noisy, mask and matrix)
#   repaint, 100 x jump 10 x 10 resamplings   0.02-0.14, 7-10%
#   repaint without resampling, 200 steps     0.25-0.31, up to 64%
#   dps (zeta = 0.1), 200 steps               0.11-0.26, 7-26%
POSTERIOR_CASES = [
    ("ddnm", "mask", 0.0, 500, {}),
    ("ddnm", "mask", 0.2, 500, {}),
    ("ddnm", "matrix", 0.0, 500, {}),
    ("ddnm", "matrix", 0.2, 500, {}),
    ("ddnm", "mask", 0.0, 500, {"eta": 0.0}),
    ("repaint", "mask", 0.0, 100, {"jump_length": 10, "resample": 10}),
    ("repaint", "matrix", 0.2, 100, {"jump_length": 10, "resample": 10}),
]


@pytest.mark.parametrize("method,problem,sigma_y,steps,options", POSTERIOR_CASES)
def test_posterior_mean_and_covariance(method, problem, sigma_y, steps, options):
    n = 2000
    oracle, op, y, mean, cov = (mask_problem(sigma_y, n)[:5] if problem == "mask" else matrix_problem(sigma_y, n))
    x = solve(method, oracle, op, y, steps, **options)
    m_err, c_err = posterior_errors(x, mean, cov)
    tol = 0.1 if method == "ddnm" else 0.12
    assert m_err < tol and c_err < tol, (m_err, c_err)


def test_repaint_needs_resampling_and_dps_is_biased():
    """What the docstrings say: RePaint without resampling and DPS miss the posterior's covariance by far more."""
    oracle, op, y, mean, cov, m = mask_problem(0.0, 2000)
    _, c_plain = posterior_errors(solve("repaint", oracle, op, y, 200, resample=1), mean, cov)
    _, c_dps = posterior_errors(solve("dps", oracle, op, y, 200, zeta=0.1), mean, cov)
    assert c_plain > 0.4 and c_dps > 0.2, (c_plain, c_dps)


def test_dps_moves_towards_the_data():
    n = 1000
    oracle, op, y, mean, cov, m = mask_problem(0.0, n)
    free = solve("dps", oracle, op, y, 200, zeta=0.0)
    guided = solve("dps", oracle, op, y, 200, zeta=0.1)
    resid = lambda x: float((x[:, m] - y[0, m, 0]).norm(dim=1).mean())  # noqa: E731
    assert resid(guided) < 0.1 * resid(free)
    m_err, _ = posterior_errors(guided, mean, cov)
    assert m_err < 0.3, m_err


def test_ddnm_plus_is_a_point_estimate_along_the_row_space():
    """The paper's DDNM+ leaves (almost) no spread where y measured; the default 'anchor' mode has the posterior's."""
    oracle, op, y, mean, cov, m = mask_problem(0.3, 1000)
    plus = solve("ddnm", oracle, op, y, 200, noisy="ddnm+")
    anchor = solve("ddnm", oracle, op, y, 200)
    assert (plus[:, m].var(0) < 0.1 * cov.diagonal()[m]).all()
    assert ((anchor[:, m].var(0) / cov.diagonal()[m] - 1).abs() < 0.2).all()


@pytest.mark.parametrize("sampler", list(dk.SAMPLERS))
def test_consistent_denoiser_makes_every_sampler_consistent(sampler):
    oracle, op, y, mean, cov, m = mask_problem(0.0, 16)
    g = torch.Generator().manual_seed(0)
    x = inv.reconstruct_with_sampler(oracle, op, y, sampler, sigmas=ladder(12), generator=g,
                                     x=oracle.sample_marginal(16, 100.0, g))
    assert torch.allclose(op.forward(x), y, atol=1e-10, rtol=0)
    noisy = inv.Mask(op.mask, sigma_y=0.2)  # noisy y: a partial pull towards y
    x0 = oracle.sample_marginal(16, 100.0, g)
    x = inv.reconstruct_with_sampler(oracle, noisy, y, sampler, sigmas=ladder(12), generator=g, x=x0)
    free = dk.get_sampler(sampler)(oracle, x0, ladder(12), generator=g)
    resid = lambda v: float((v[:, m, 0] - y[:, m, 0]).abs().mean())  # noqa: E731
    assert torch.isfinite(x).all() and resid(x) < 0.5 * resid(free)


def test_jump_schedule_matches_repaint():
    def official(t_T, jump_length, jump_n_sample):  # RePaint's get_schedule_jump (n_sample = 1), transcribed
        jumps = {j: jump_n_sample - 1 for j in range(0, t_T - jump_length, jump_length)}
        t, ts = t_T, []
        while t >= 1:
            t = t - 1
            ts.append(t)
            if jumps.get(t, 0) > 0:
                jumps[t] = jumps[t] - 1
                for _ in range(jump_length):
                    t = t + 1
                    ts.append(t)
        ts.append(-1)
        return ts

    for n, j, r in [(250, 10, 10), (20, 3, 2), (7, 10, 5), (5, 1, 1)]:
        assert inv.jump_schedule(n, j, r) == [n - 1 - t for t in official(n, j, r)]
    path = inv.jump_schedule(50, 5, 3)
    assert sum(b == a + 1 for a, b in zip(path, path[1:])) == 50 + 9 * 2 * 5  # denoiser calls
    assert inv.jump_schedule(10, 1, 1) == list(range(11))


def test_reconstruct_errors():
    oracle, op, y, *_ = mask_problem(0.0, 4)
    sig = ladder(5)
    with pytest.raises(ValueError, match="allowed: ddnm, repaint, dps"):
        inv.reconstruct(oracle, op, y, "dds", sigmas=sig)
    with pytest.raises(ValueError, match=r"no option\(s\) \['zeta'\]"):
        inv.reconstruct(oracle, op, y, "ddnm", sigmas=sig, zeta=1.0)
    with pytest.raises(ValueError, match="does not match the mask"):
        inv.reconstruct(oracle, op, y[:, :4], "ddnm", sigmas=sig)
    with pytest.raises(ValueError, match="no schedule"):
        inv.reconstruct(oracle, op, y, "ddnm")
    phase = inv.fourier_magnitude()
    img = torch.zeros(1, 1, 8, 8)
    for method in ("ddnm", "repaint"):
        with pytest.raises(ValueError, match="needs a linear operator.*dps"):
            inv.reconstruct(oracle, phase, phase(img), method, sigmas=sig)
        with pytest.raises(ValueError, match="pseudo-inverse.*dps"):
            blur = inv.Blur.gaussian(1.0, padding="zeros")
            inv.reconstruct(oracle, blur, blur(img), method, sigmas=sig)
        with pytest.raises(ValueError, match="singular values.*dps"):
            blur = inv.Blur.gaussian(1.0, sigma_y=0.1)
            inv.reconstruct(oracle, blur, blur(img), method, sigmas=sig)
    with pytest.raises(TypeError, match="Operator"):
        inv.reconstruct(oracle, lambda x: x, y, "dps", sigmas=sig)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        inv.reconstruct(oracle, op, y, "ddnm", sigmas=sig, eta=1.5)
    with pytest.raises(ValueError, match="allowed: anchor, ddnm\\+"):
        inv.reconstruct(oracle, op, y, "ddnm", sigmas=sig, noisy="clip")
    with pytest.raises(ValueError, match="starting noise"):
        inv.reconstruct(oracle, op, y, "ddnm", sigmas=sig, x=torch.zeros(4, 5, 1, dtype=F64))


# ---- one interface test over every method x operator ---------------------------------------------------------------


IMAGE_OPS = {
    "inpaint-box": lambda: inv.make_operator("inpaint-box", 8),
    "inpaint-random-noisy": lambda: inv.make_operator("inpaint-random", 8, sigma_y=0.1, missing=0.5),
    "sr2": lambda: inv.make_operator("sr", 8, factor=2),
    "sr4-noisy": lambda: inv.make_operator("sr", 8, factor=4, sigma_y=0.05),
    "blur": lambda: inv.make_operator("blur", 8, std=1.0),
    "blur-zeros": lambda: inv.make_operator("blur", 8, std=1.0, padding="zeros"),
    "blur-noisy": lambda: inv.make_operator("blur", 8, std=1.0, sigma_y=0.05),
    "mri": lambda: inv.make_operator("mri", 8, acceleration=4, kind="random"),
    "mri-noisy": lambda: inv.make_operator("mri", 8, acceleration=4, sigma_y=0.05),
    "denoise": lambda: inv.make_operator("denoise", 8, sigma_y=0.2),
    "phase-retrieval": lambda: inv.make_operator("phase-retrieval", 8),
}


@pytest.mark.parametrize("op_name", list(IMAGE_OPS))
@pytest.mark.parametrize("method", inv.METHODS)
def test_every_method_on_every_operator(method, op_name):
    """Runs where the method's requirements hold (any operator for DPS; linear, with a pinv, and for noisy y equal
    singular values for DDNM and RePaint), and otherwise refuses with an error that points to DPS."""
    prior = ImageGaussian()
    op = IMAGE_OPS[op_name]()
    x_true = prior.sample(2, seed=0)
    y = op.measure(x_true, torch.Generator().manual_seed(1))
    runnable = method == "dps" or (op.linear and op.has_pinv and op.pinv_noise_std(x_true.shape) is not None)
    sig = ladder(8, 20.0)
    options = {"repaint": {"jump_length": 2, "resample": 2}}.get(method, {})
    if not runnable:
        with pytest.raises(ValueError, match="dps"):
            inv.reconstruct(prior, op, y, method, sigmas=sig, **options)
        return
    calls = []
    run = lambda seed, cb=None: inv.reconstruct(prior, op, y, method, sigmas=sig, callback=cb,  # noqa: E731
                                                generator=torch.Generator().manual_seed(seed), **options)
    x = run(0, calls.append)
    assert x.shape == x_true.shape and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(x, run(0)) and not torch.equal(x, run(1)), "seeded"
    assert len(calls) >= 8, "a callback per denoising step"
    assert set(calls[0]) == {"i", "step", "x", "sigma", "sigma_next", "x0_hat"}
    assert [c["step"] for c in calls] == list(range(len(calls)))
    if op.linear and op.sigma_y == 0 and method != "dps" and op.has_pinv and not isinstance(op, inv.Blur):
        assert torch.allclose(op.forward(x), y, atol=1e-4), "noiseless y is met exactly"


def test_reconstruct_with_a_trained_style_denoiser():
    """The path users take: a Denoiser with a schedule (default ladder and starting noise), float32, gradients
    through an nn.Module for DPS."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, x, c_noise):
            return torch.tanh(self.w * x)

    den = dk.Denoiser(Net(), dk.DiscreteSchedule(), prediction="eps")
    op = inv.make_operator("inpaint-box", 8)
    y = op.measure(torch.rand(2, 1, 8, 8) * 2 - 1)
    for method in inv.METHODS:
        x = inv.reconstruct(den, op, y, method, steps=6, generator=torch.Generator().manual_seed(0),
                            **({"resample": 2, "jump_length": 2} if method == "repaint" else {}))
        assert x.shape == y.shape and x.dtype == torch.float32 and torch.isfinite(x).all()
    x = inv.reconstruct_with_sampler(den, op, y, "dpmpp-2m", steps=6)
    assert torch.allclose(op.forward(x), y, atol=1e-6)
    assert den.net.w.grad is None, "DPS differentiates w.r.t. x only"
