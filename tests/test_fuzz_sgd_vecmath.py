"""Property tests of the SGD update (``param += step * grad``, sgd.cpp's axpy) against NumPy, and of
the vectorised exp / sigmoid / tanh (vecmath.h) on any float32, NaN and Inf included.

The contract, the strategies and the case counter are in tests/fuzz_strategies.py; what the raw
binding refuses is in tests/test_fuzz_bad_input.py.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ptbfast import _core, ops

from fuzz_strategies import assert_close, draw_rng, draw_shape, normal, ran


@given(data=st.data())
def test_sgd_update_matches_numpy(data):
    rng = draw_rng(data)
    shape = draw_shape(data, max_side=9)
    alpha = data.draw(st.floats(-1e3, 1e3, width=32), label="alpha")
    y, x = normal(rng, shape), normal(rng, shape)
    expected = y.astype(np.float64) + alpha * x.astype(np.float64)
    scale = float(np.max(np.abs(y) + abs(alpha) * np.abs(x), initial=0.0))  # terms that may cancel
    ops.sgd_update(y, x, alpha)
    assert_close(y, expected, 1e-6, floor=scale)
    ran("valid")


any_float32_arrays = hnp.arrays(np.float32, st.integers(0, 70),
                                elements=st.floats(width=32, allow_nan=True, allow_infinity=True))


@given(name=st.sampled_from(["exp", "sigmoid", "tanh"]), x=any_float32_arrays)
def test_vecmath_on_any_float32(name, x):
    # Bounds of vecmath.h (the ones tests/test_vecmath.py enforces on a dense sweep), on any input.
    out = _core._vecmath(name, x)
    assert out.dtype == np.float32 and out.shape == x.shape
    nan = np.isnan(x)
    assert np.isnan(out[nan]).all()
    assert not np.isnan(out[~nan]).any()
    xd, got = x[~nan].astype(np.float64), out[~nan].astype(np.float64)
    with np.errstate(all="ignore"):
        if name == "exp":
            assert np.isfinite(got).all() and (got >= 0).all()
            inside = (xd > -87.3) & (xd < 88.3)
            want = np.exp(xd[inside])
            assert (np.abs(got[inside] - want) <= 1.5e-7 * want).all()
            assert (got[xd >= 88.3] > 1e38).all() and (got[xd <= -87.3] < 1.25e-38).all()  # clamped
        elif name == "sigmoid":
            want = np.where(xd >= 0, 1 / (1 + np.exp(-np.abs(xd))), np.exp(-np.abs(xd)) / (1 + np.exp(-np.abs(xd))))
            assert np.isfinite(got).all() and (got >= 0).all() and (got <= 1).all()
            assert (np.abs(got - want) <= 1.2e-7).all()
            big = want > 1e-30
            assert (np.abs(got - want)[big] <= 2e-7 * want[big]).all()
        else:
            want = np.tanh(xd)
            assert np.isfinite(got).all() and (np.abs(got) <= 1).all()
            assert (np.abs(got - want) <= 2e-7 * np.abs(want)).all()  # exact 0 at 0, odd, relative
    ran("valid")
