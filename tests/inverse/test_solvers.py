"""diffusekit.inverse: operators against dense matrices, solvers against the closed-form Gaussian posterior, one
interface test over every method x operator, the baselines and the metrics.

The exact oracle: for x0 ~ N(mu, S) and y = A x0 + s_y n, p(x0 | y) = N(m, P) with
    m = mu + S A^T (A S A^T + s_y^2 I)^-1 (y - A mu),   P = S - S A^T (A S A^T + s_y^2 I)^-1 A S.
"""

import math

import pytest
import torch
from oracles import GaussianOracle

import diffusekit as dk
from diffusekit import inverse as inv
from diffusekit.inverse import baselines
from diffusekit.schedules import karras_sigmas

torch.set_num_threads(1)
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


def dense(fn, shape, dtype=F64):
    """The matrix of a linear map: its columns are fn(basis vector), flattened (complex outputs as [re; im])."""
    n = math.prod(shape)
    cols = []
    for i in range(n):
        e = torch.zeros(n, dtype=dtype)
        e[i] = 1
        out = fn(e.reshape(shape)).reshape(-1)
        cols.append(torch.cat([out.real, out.imag]) if out.is_complex() else out)
    return torch.stack(cols, 1)


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


# ---- operators -------------------------------------------------------------------------------------------------------

# name -> (factory(spatial), x shape): the interface and identity tests run over all of them
OPS = {
    "mask-box": (lambda: inv.Mask(inv.box_mask(8)), (2, 3, 8, 8)),
    "mask-random": (lambda: inv.Mask(inv.random_pixel_mask(8, 0.5, seed=1)), (2, 3, 8, 8)),
    "mask-half": (lambda: inv.Mask(inv.half_mask(8, "top")), (2, 1, 8, 8)),
    "mask-1d": (lambda: inv.Mask(inv.random_pixel_mask((12,), 0.5)), (2, 2, 12)),
    "mask-3d": (lambda: inv.Mask(inv.random_pixel_mask((4, 4, 4), 0.5)), (1, 1, 4, 4, 4)),
    "sr2": (lambda: inv.Downsample(2), (2, 3, 8, 8)),
    "sr4": (lambda: inv.Downsample(4), (2, 1, 8, 8)),
    "sr2-1d": (lambda: inv.Downsample(2), (2, 1, 12)),
    "sr2-3d": (lambda: inv.Downsample(2), (1, 2, 4, 4, 4)),
    "blur-circular": (lambda: inv.Blur.gaussian(1.0), (2, 3, 8, 8)),
    "blur-zeros": (lambda: inv.Blur.gaussian(1.0, padding="zeros"), (2, 3, 8, 8)),
    "blur-asym": (lambda: inv.Blur(torch.tensor([0.1, 0.5, 0.2, 0.15, 0.05]), padding="zeros"), (1, 1, 7, 9)),
    "blur-asym-circ": (lambda: inv.Blur(torch.tensor([0.1, 0.5, 0.2, 0.15, 0.05])), (1, 1, 7, 9)),
    "blur-1d": (lambda: inv.Blur.gaussian(1.5), (2, 1, 16)),
    "mri-random": (lambda: inv.FourierSubsample.from_acceleration(8, 4, "random", seed=2), (2, 1, 8, 8)),
    "mri-cartesian": (lambda: inv.FourierSubsample.from_acceleration((8, 10), 4, "cartesian"), (2, 2, 8, 10)),
    "identity": (lambda: inv.Identity(), (2, 1, 5, 5)),
}
LINEAR_OPS = list(OPS)
# operators whose pinv is the exact Moore-Penrose inverse (circular blur's is truncated, zero-padded has none)
EXACT_PINV = [k for k in OPS if not k.startswith("blur")]


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_operator_shapes_and_dtypes(name, dtype):
    op, shape = OPS[name][0](), OPS[name][1]
    x = torch.randn(shape, dtype=dtype)
    y = op.forward(x)
    assert tuple(y.shape) == op.output_shape(shape)
    want = {torch.float32: torch.complex64, F64: torch.complex128}[dtype] if op.complex_output else dtype
    assert y.dtype == want
    assert op.check_y(y) == tuple(shape), "y tells the shape of the x it measures"
    back = op.adjoint(y)
    assert back.shape == shape
    if op.has_pinv:
        p = op.pinv(y)
        assert p.shape == shape and p.dtype == dtype, "pinv returns a real image"
    assert op.measure(x).shape == y.shape


@pytest.mark.parametrize("name", LINEAR_OPS)
def test_adjoint(name):
    """<A x, y> = <x, A^T y> (the complex inner product <a, b> = sum conj(a) b for the Fourier operator)."""
    op, shape = OPS[name][0](), OPS[name][1]
    g = torch.Generator().manual_seed(0)
    cplx = op.complex_output
    x = torch.randn(shape, generator=g, dtype=torch.complex128 if cplx else F64)
    y_shape = op.output_shape(shape)
    y = torch.randn(y_shape, generator=g, dtype=torch.complex128 if cplx else F64)
    lhs = (op.forward(x).conj() * y).sum()
    rhs = (x.conj() * op.adjoint(y)).sum()
    assert abs(complex(lhs - rhs)) < 1e-10 * max(1.0, abs(complex(lhs)))


@pytest.mark.parametrize("name", EXACT_PINV + ["blur-circular", "blur-asym-circ"])
def test_pinv_is_the_moore_penrose_inverse(name):
    """pinv A pinv = pinv and, against a dense pseudo-inverse of the same (real-linear) map, pinv = A^+."""
    op, shape = OPS[name][0](), (1,) + OPS[name][1][1:]
    g = torch.Generator().manual_seed(1)
    y = op.forward(torch.randn(shape, generator=g, dtype=F64))
    y = y + 0.3 * torch.randn(y.shape, generator=g, dtype=y.dtype)  # off the range too
    P = op.pinv
    assert torch.allclose(P(op.forward(P(y))), P(y), atol=1e-9)
    x = torch.randn(shape, generator=g, dtype=F64)
    if name in EXACT_PINV:
        assert torch.allclose(op.forward(P(op.forward(x))), op.forward(x), atol=1e-10), "A pinv A = A"
    A = dense(op.forward, shape)  # (m or 2m, n)
    if op.complex_output:
        def Pflat(v):  # pinv on [re; im] vectors
            h = v.shape[0] // 2
            return P((v[:h] + 1j * v[h:]).reshape(op.output_shape(shape)))
        Pd = dense(Pflat, (A.shape[0],))
    else:
        Pd = dense(P, op.output_shape(shape))
    rtol = op.rcond if isinstance(op, inv.Blur) else 1e-10
    assert torch.allclose(Pd, torch.linalg.pinv(A, rtol=rtol), atol=1e-8)


@pytest.mark.parametrize("name", EXACT_PINV)
def test_pinv_noise_std(name):
    """A^+ n carries noise of std sigma_r along the row space: E||A^+ n||^2 = sigma_r^2 rank(A)."""
    op, shape = OPS[name][0]().with_noise(0.3), OPS[name][1]
    g = torch.Generator().manual_seed(2)
    n = 4000
    xs = torch.randn((1,) + shape[1:], dtype=F64).expand(n, *shape[1:]).contiguous()
    noise = op.pinv(op.measure(xs, g)) - op.project(xs)
    rank = float(torch.linalg.matrix_rank(dense(op.forward, (1,) + shape[1:])))
    sig_r = op.pinv_noise_std(shape)
    assert abs(float(noise.pow(2).flatten(1).sum(1).mean()) / (sig_r**2 * rank) - 1) < 0.05


def test_fourier_noise_is_the_spectrum_of_real_noise():
    op = inv.FourierSubsample(torch.ones(8, 8, dtype=torch.bool), sigma_y=0.5)
    x = torch.zeros(4000, 1, 8, 8, dtype=F64)
    n = op.measure(x, torch.Generator().manual_seed(0))
    assert abs(float(n.abs().pow(2).mean()) - 0.25) < 0.01, "E|n|^2 = sigma_y^2"
    assert torch.allclose(torch.fft.ifft2(n, norm="ortho").imag, torch.zeros((), dtype=F64), atol=1e-12), "Hermitian"


@pytest.mark.parametrize("kind", inv.operators.FOURIER_MASKS)
@pytest.mark.parametrize("acceleration", [4, 8])
def test_fourier_masks(kind, acceleration):
    size = (64, 64)
    m = inv.fourier_mask(size, acceleration, kind, seed=3)
    assert m.shape == size and m.dtype == torch.bool
    assert torch.equal(m, inv.fourier_mask(size, acceleration, kind, seed=3)), "deterministic for a seed"
    assert not torch.equal(m, inv.fourier_mask(size, acceleration, kind, seed=4)), "another seed, another mask"
    assert abs(m.numel() / m.sum().item() - acceleration) < 0.05 * acceleration, "the asked acceleration"
    c = torch.fft.fftshift(m)  # centred: frequency 0 at (32, 32)
    frac = inv.operators.CENTER_FRACTIONS[acceleration]
    n_c = round(64 * frac)
    block = c[32 - n_c // 2 : 32 - n_c // 2 + n_c]
    assert block[:, 32 - n_c // 2 : 32 - n_c // 2 + n_c].all(), "fully sampled centre"
    assert m[0, 0], "DC measured"
    if kind == "cartesian":
        assert torch.equal(m, m[:1].expand_as(m)), "whole phase-encoding lines (columns)"
    op = inv.FourierSubsample(m)
    assert abs(op.acceleration - acceleration) < 0.05 * acceleration


def test_pixel_masks():
    m = inv.random_pixel_mask(16, missing=0.75, seed=5)
    assert torch.equal(m, inv.random_pixel_mask(16, missing=0.75, seed=5))
    assert not torch.equal(m, inv.random_pixel_mask(16, missing=0.75, seed=6))
    assert int(m.sum()) == 64
    b = inv.box_mask(16)
    assert int((~b).sum()) == 64 and not b[4:12, 4:12].any() and b[:4].all()
    h = inv.half_mask((4, 6), "right")
    assert h[:, :3].all() and not h[:, 3:].any()
    assert inv.Mask(b).missing_fraction == 0.25


def test_blur_is_a_normalized_gaussian_and_adjoint_flips():
    k = inv.gaussian_kernel1d(2.0)
    assert k.numel() == 13 and abs(float(k.sum()) - 1) < 1e-12 and torch.equal(k, k.flip(0))
    op = inv.Blur(torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]).roll(1), padding="circular")  # a one-pixel shift
    x = torch.arange(5.0).reshape(1, 1, 5)
    assert torch.equal(op.forward(x), x.roll(1, -1)) and torch.equal(op.adjoint(x), x.roll(-1, -1))


def test_make_operator_and_errors():
    for name in inv.OPERATOR_NAMES:
        assert isinstance(inv.make_operator(name, 16), inv.Operator)
    assert inv.make_operator("mri", 16, acceleration=8, kind="random", sigma_y=0.1).sigma_y == 0.1
    with pytest.raises(ValueError, match="allowed: inpaint-box, .*mri"):
        inv.make_operator("mri-fast", 16)
    with pytest.raises(ValueError, match=r"no option\(s\) \['factor'\]; allowed"):
        inv.make_operator("mri", 16, factor=2)
    with pytest.raises(ValueError, match="allowed: random, cartesian"):
        inv.fourier_mask(16, 4, "radial")
    with pytest.raises(ValueError, match="sigma_y"):
        inv.Identity(sigma_y=-1.0)
    with pytest.raises(ValueError, match="does not fit"):
        inv.box_mask(8, (6, 6, 4, 4))
    mri = inv.make_operator("mri", 16)
    with pytest.raises(ValueError, match="complex"):
        mri.check_y(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, C, 16, 16\)"):
        mri.check_y(torch.zeros(1, 1, 8, 16, dtype=torch.complex64))
    with pytest.raises(ValueError, match="real"):
        inv.make_operator("inpaint-box", 16).check_y(torch.zeros(1, 1, 16, 16, dtype=torch.complex64))
    with pytest.raises(ValueError, match="does not match the mask"):
        inv.make_operator("inpaint-box", 16).check_y(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="not divisible"):
        inv.Downsample(4).forward(torch.zeros(1, 1, 10, 8))


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


# ---- baselines -------------------------------------------------------------------------------------------------------


def test_grad_div_adjoint():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 5, 7, generator=g, dtype=F64)
    q = torch.randn(2, 2, 1, 5, 7, generator=g, dtype=F64)
    q[0, ..., -1, :] = 0  # grad's last row/column are 0; div ignores them
    q[1, ..., :, -1] = 0
    assert abs(float((baselines.grad(x) * q).sum() + (x * baselines.div(q)).sum())) < 1e-10


def test_tv_reconstruct_beats_zero_filling_and_lambda_is_tuned_on_training_images():
    from diffusekit.data.phantoms import make_phantoms

    train, test = make_phantoms(3, 32, seed=1).double(), make_phantoms(1, 32, seed=2).double()
    op = inv.make_operator("mri", 32, acceleration=4, kind="random", sigma_y=0.01)
    lam, table = inv.tune_tv_lambda(op, train, lambdas=[1e-3, 1e-2, 1e-1], iters=100, refine=False,
                                    generator=torch.Generator().manual_seed(0))
    assert lam == max(table, key=table.get) and set(table) == {1e-3, 1e-2, 1e-1}
    y = op.measure(test, torch.Generator().manual_seed(1))
    tv = inv.tv_reconstruct(op, y, lam, iters=150)
    zf = inv.zero_filled(op, y)
    assert torch.equal(zf, op.adjoint(y).real)
    assert float(inv.psnr(tv, test)) > float(inv.psnr(zf, test)) + 3
    assert tv.min() >= -1 and tv.max() <= 1


def test_tv_objective_decreases_for_any_linear_operator():
    x = torch.zeros(1, 1, 16, 16, dtype=F64)
    x[..., 4:12, 4:12] = 0.8
    for op in (inv.make_operator("sr", 16, factor=2), inv.make_operator("blur", 16, std=1.0, padding="zeros")):
        y = op.measure(x, torch.Generator().manual_seed(0))

        def obj(v, lam=0.01):
            return float(0.5 * (op.forward(v) - y).pow(2).sum() + lam * baselines.grad(v).norm(dim=0).sum())

        start = baselines.real_part(op.adjoint(y))
        assert obj(inv.tv_reconstruct(op, y, 0.01, iters=200)) < 0.5 * obj(start)


def test_bicubic_and_harmonic_fill():
    op = inv.make_operator("sr", 16, factor=4)
    c = torch.full((1, 1, 16, 16), 0.3)
    assert torch.allclose(inv.bicubic(op, op.forward(c)), c, atol=1e-6)
    assert inv.bicubic(op, op.forward(torch.zeros(2, 3, 16, 16))).shape == (2, 3, 16, 16)
    # a linear ramp is harmonic: a hole away from the edges is filled exactly
    ramp = torch.linspace(-1, 1, 16, dtype=F64).expand(1, 1, 16, 16) * 0.7 + 0.1
    mask_op = inv.Mask(inv.box_mask(16, (4, 3, 8, 9)))
    filled = inv.harmonic_fill(mask_op, mask_op.forward(ramp))
    assert torch.allclose(filled, ramp, atol=1e-6)
    rnd = inv.Mask(inv.random_pixel_mask(16, 0.7, seed=0))
    img = torch.rand(2, 1, 16, 16, dtype=F64)
    out = inv.harmonic_fill(rnd, rnd.forward(img))
    assert torch.equal(rnd.forward(out), rnd.forward(img)), "known pixels kept"
    lap = -baselines.div(baselines.grad(out))
    assert float((lap * (1 - rnd.mask.double())).abs().max()) < 1e-5, "harmonic where missing"


# ---- metrics ---------------------------------------------------------------------------------------------------------


def test_psnr():
    x = torch.zeros(2, 1, 4, 4)
    ref = x.clone()
    ref[0] += 0.1
    v = inv.psnr(x, ref)
    mse = float(torch.tensor(0.1)) ** 2  # the float32 0.1, squared in float64 as psnr does
    assert abs(float(v[0]) - 10 * math.log10(4 / mse)) < 1e-9 and math.isinf(float(v[1]))


def test_ssim_identity_and_errors():
    x = torch.rand(3, 2, 16, 16) * 2 - 1
    assert torch.allclose(inv.ssim(x, x), torch.ones(3, dtype=F64))
    assert (inv.ssim(x, x + 0.3 * torch.randn_like(x)) < 0.95).all()
    with pytest.raises(ValueError, match="window"):
        inv.ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        inv.ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 17))


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    from diffusekit.data.phantoms import make_phantoms

    g = torch.Generator().manual_seed(0)
    ref = make_phantoms(2, 32, seed=3).double()
    cases = [ref + 0.1 * torch.randn(ref.shape, generator=g, dtype=F64),
             torch.rand(2, 3, 20, 24, generator=g, dtype=F64) * 2 - 1,
             torch.rand(2, 1, 12, 13, 14, generator=g, dtype=F64) * 2 - 1]
    refs = [ref, torch.rand(2, 3, 20, 24, generator=g, dtype=F64) * 2 - 1,
            torch.rand(2, 1, 12, 13, 14, generator=g, dtype=F64) * 2 - 1]
    for a, b in zip(cases, refs):
        ours = inv.ssim(a, b)
        for i in range(a.shape[0]):
            theirs = metrics.structural_similarity(
                a[i].numpy(), b[i].numpy(), data_range=2.0, channel_axis=0, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False)
            assert abs(float(ours[i]) - theirs) < 1e-6, (float(ours[i]), theirs)
        assert abs(float(inv.psnr(a, b)[0]) - metrics.peak_signal_noise_ratio(b[0].numpy(), a[0].numpy(),
                                                                               data_range=2.0)) < 1e-9
