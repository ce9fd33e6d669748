"""diffusekit.inverse's baselines: TV reconstruction (its weight tuned on training images), bicubic upsampling and
harmonic filling, and the grad / div pair under them."""

import torch

from diffusekit import inverse as inv
from diffusekit.inverse import baselines

F64 = torch.float64


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
