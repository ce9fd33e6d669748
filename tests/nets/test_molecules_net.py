"""The conformer EGNN: E(3)-equivariance (rotation with a reflection, translation and atom permutation applied together
with the graph), padding that changes nothing, a zero-mean output, and the config round trip.
Tolerances: float64 to 1e-10 (exact up to rounding); float32 to 1e-4 absolute on outputs of size ~0.1-1."""

import pytest
import torch

from diffusekit.nets.molecules import EGNN, EGNNConfig

A, N = 12, 9  # padded size, real atoms of the first molecule (the second has 6)


def _graph(B=2, generator=None):
    """Random valid-looking graphs: atoms (B, A) with padding after the real atoms, symmetric bonds (B, A, A)."""
    g = generator or torch.Generator().manual_seed(0)
    atoms = torch.zeros(B, A, dtype=torch.int64)
    bonds = torch.zeros(B, A, A, dtype=torch.int64)
    for b, n in enumerate([N, 6][:B]):
        atoms[b, :n] = torch.randint(1, 6, (n,), generator=g)
        upper = torch.triu(torch.randint(0, 5, (n, n), generator=g), 1)
        bonds[b, :n, :n] = upper + upper.T
    return atoms, bonds


def _net(dtype):
    torch.manual_seed(0)
    net = EGNN(EGNNConfig(width=16, layers=3)).to(dtype)
    with torch.no_grad():  # the coordinate heads start near 0 (EGNN's init): make them matter for the test
        for block in net.blocks:
            block.coord.weight.normal_(0, 0.3)
    return net


def _random_orthogonal(dtype):
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    if torch.det(q) > 0:
        q[:, 0] = -q[:, 0]  # an improper rotation: E(3) includes reflections
    return q.to(dtype)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_rotation_reflection_translation_permutation_equivariance(dtype, tol):
    net, (atoms, bonds) = _net(dtype), _graph()
    x = torch.randn(2, 3, A, dtype=dtype) * (atoms > 0)[:, None]
    c_noise = torch.tensor([3.0, 700.0], dtype=dtype)
    y = net(x, c_noise, (atoms, bonds))
    assert y.abs().max() > 1e-2  # not trivially zero
    Q, t = _random_orthogonal(dtype), torch.tensor([[1.5], [-2.0], [0.7]], dtype=dtype)
    perm = torch.cat([torch.randperm(N), torch.arange(N, A)])  # shuffles the real atoms of molecule 0 (and of 1)
    x2 = (Q @ x + t)[:, :, perm]  # translation lands on padding atoms too: they must be ignored
    y2 = net(x2, c_noise, (atoms[:, perm], bonds[:, perm][:, :, perm]))
    expect = (Q @ y)[:, :, perm]
    assert torch.allclose(y2, expect, atol=tol, rtol=0), (y2 - expect).abs().max()


def test_extra_padding_with_garbage_changes_nothing():
    net, (atoms, bonds) = _net(torch.float64), _graph()
    x = torch.randn(2, 3, A, dtype=torch.float64) * (atoms > 0)[:, None]
    c_noise = torch.tensor([10.0, 10.0], dtype=torch.float64)
    y = net(x, c_noise, (atoms, bonds))
    extra = 5
    x_big = torch.cat([x, torch.randn(2, 3, extra, dtype=torch.float64) * 1e3], 2)
    x_big[:, :, N:] = torch.randn(2, 3, A + extra - N, dtype=torch.float64) * 1e3  # garbage on every padding atom
    x_big[0, 1, -1] = float("nan")
    atoms_big = torch.cat([atoms, torch.zeros(2, extra, dtype=torch.int64)], 1)
    bonds_big = torch.zeros(2, A + extra, A + extra, dtype=torch.int64)
    bonds_big[:, :A, :A] = bonds
    y_big = net(x_big, c_noise, (atoms_big, bonds_big))
    real = atoms > 0
    assert torch.allclose(y_big[:, :, :A] * real[:, None], y, atol=1e-12, rtol=0)
    assert (y_big[:, :, :A][~real[:, None].expand(-1, 3, -1)] == 0).all() and (y_big[:, :, A:] == 0).all()


def test_output_is_zero_mean_and_gradients_are_finite():
    net, (atoms, bonds) = _net(torch.float32), _graph()
    x = (torch.randn(2, 3, A) * (atoms > 0)[:, None]).requires_grad_()
    y = net(x, torch.tensor([1.0, 999.0]), (atoms, bonds))
    real = (atoms > 0)[:, None]
    assert ((y * real).sum(2) / real.sum(2)).abs().max() < 1e-6
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_molecules_in_a_batch_do_not_interact():
    net, (atoms, bonds) = _net(torch.float64), _graph()
    x = torch.randn(2, 3, A, dtype=torch.float64) * (atoms > 0)[:, None]
    c = torch.tensor([5.0, 50.0], dtype=torch.float64)
    y = net(x, c, (atoms, bonds))
    y0 = net(x[:1], c[:1], (atoms[:1], bonds[:1]))
    assert torch.allclose(y[:1], y0, atol=1e-12, rtol=0)


def test_config_round_trip_and_errors():
    c = EGNNConfig(width=32, layers=2, emb_scale=250.0)
    assert EGNNConfig.from_json(c.to_json()) == c and EGNNConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown EGNNConfig fields"):
        EGNNConfig.from_dict({"width": 32, "heads": 4})
    with pytest.raises(ValueError, match="even width"):
        EGNNConfig(width=33)
    atoms, bonds = _graph()
    with pytest.raises(ValueError, match=r"needs atoms \(2, 10\)"):
        EGNN(c)(torch.zeros(2, 3, 10), torch.zeros(2), (atoms, bonds))


def test_centre_projects_onto_the_zero_mean_subspace():
    from diffusekit.nets.molecules import centre

    atoms, _ = _graph()
    x = torch.randn(2, 3, A) + 5
    x[1, 0, -1] = float("inf")  # padding garbage never reaches the real atoms
    y = centre(x, atoms)
    real = (atoms > 0)[:, None]
    assert (y[~real.expand(-1, 3, -1)] == 0).all() and (y.sum(2) / real.sum(2)).abs().max() < 1e-5
    assert torch.allclose(centre(y, atoms), y, atol=1e-6)  # a projection (up to float32 rounding)
