"""Accuracy of the vectorised exp / sigmoid / tanh used by the fused kernels (bounds in vecmath.h)."""

import numpy as np
import pytest

from ptbfast import _core


def vecmath(name, x):
    """The kernels' vectorised function over a float32 vector (a test hook of _core)."""
    return _core._vecmath(name, x)

# Every float32 step near 0 and a dense sweep of [-100, 100]; odd length to hit SIMD tails.
X = np.concatenate([np.linspace(-100, 100, 2_000_001), np.linspace(-1e-3, 1e-3, 20_001),
                    [0.0, -0.0, 1e-30, -1e-30, 0.625, -0.625]]).astype(np.float32)
XD = X.astype(np.float64)


def test_exp_relative_error():
    inside = (XD > -87.3) & (XD < 88.3)
    got = vecmath("exp", X)[inside]
    want = np.exp(XD[inside])
    assert np.max(np.abs(got - want) / want) <= 1.5e-7


def test_exp_clamps_instead_of_overflowing():
    got = vecmath("exp", np.array([1e4, 89.0, -1e4, -100.0], np.float32))
    assert np.isfinite(got).all() and got[0] > 1e38 and 0 <= got[2] < 1.2e-38


def test_sigmoid_error():
    got = vecmath("sigmoid", X).astype(np.float64)
    want = 1.0 / (1.0 + np.exp(-XD))
    assert np.max(np.abs(got - want)) <= 1.2e-7
    big = want > 1e-30
    assert np.max(np.abs(got - want)[big] / want[big]) <= 2e-7


def test_tanh_relative_error_including_near_zero():
    got = vecmath("tanh", X).astype(np.float64)
    want = np.tanh(XD)
    nonzero = want != 0
    assert np.max(np.abs(got - want)[nonzero] / np.abs(want[nonzero])) <= 2e-7
    assert got[X == 0].max() == 0.0


@pytest.mark.parametrize("name", ["exp", "sigmoid", "tanh"])
def test_nan_propagates(name):
    assert np.isnan(vecmath(name, np.array([np.nan], np.float32))).all()


def test_unknown_function():
    with pytest.raises(ValueError, match="unknown function"):
        vecmath("log", X)
