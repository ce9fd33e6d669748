"""diffusekit.inverse's operators: against dense matrices (adjoints, Moore-Penrose pseudo-inverses, the noise they
carry), the masks they are built from, and their errors."""

import math

import pytest
import torch

from diffusekit import inverse as inv

F64 = torch.float64


# ---- helpers ---------------------------------------------------------------------------------------------------------


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
