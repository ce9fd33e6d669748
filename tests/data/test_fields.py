"""Scientific fields (diffusekit.data.fields): the Gaussian random fields are deterministic and have exactly the
moments of their spectrum. (Their spectra, measured: tests/eval/test_physics.py.)"""

import math

import pytest
import torch

from diffusekit.data import DataError
from diffusekit.data.fields import grf_power, make_grf


def test_grf_deterministic_shape_and_exact_moments():
    a, b, c = make_grf(400, seed=0), make_grf(400, seed=0), make_grf(400, seed=1)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert a.x.shape == (400, 1, 32, 32) and a.x.dtype == torch.float32 and a.params["std"] == 0.25
    assert float(a.x.mean(dim=(-1, -2)).abs().max()) < 1e-6  # P_0 = 0: every field has mean exactly 0
    p = grf_power(32, 3.0, 0.25)
    assert p[0, 0] == 0 and math.isclose(p.sum() / 32**2, 0.25**2, rel_tol=1e-12)  # pixel variance std^2
    # the ensemble pixel variance is std^2; its sampling error follows from the spectrum (per-field variance of
    # the spatial mean square is 2 sum_k P_k^2 / S^4), so the tolerance is computed, not tuned
    big = make_grf(2000, seed=2).x.double()
    ms = (big**2).mean(dim=(1, 2, 3))
    se = math.sqrt(2 * (p**2).sum() / 32**4 / 2000)
    assert abs(float(ms.mean()) - 0.0625) < 5 * se
    assert 0.95 < float(ms.std()) / math.sqrt(2 * (p**2).sum() / 32**4) < 1.05
    assert make_grf(4, size=64).x.shape == (4, 1, 64, 64)
    with pytest.raises(DataError, match="even size"):
        make_grf(4, size=33)
