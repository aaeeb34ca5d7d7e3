"""Property tests of ptbfast's float32 products (``ops.matmul``: blas.cpp's routing to MKL, OpenBLAS
or ptbfast's loops of one row, row_product.h) on random shapes and layouts, against float64.

Each drawn product runs with the products of one row on ptbfast's loops and on the BLAS
(``ops.set_one_row_products``), A and B plain or as transposed views (read in place), writing a
new result or accumulating into ``out``. The contract, the strategies and the case counter are in
tests/fuzz_strategies.py; what the raw binding refuses is in tests/test_fuzz_bad_input.py.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ptbfast import ops

from fuzz_strategies import draw_rng, normal, ran
from helpers import ONE_ROW_SETTING, within_summation_bound


def as_read(data, m: np.ndarray, label: str) -> np.ndarray:
    """``m`` itself, or the same values as the transposed view of a C-contiguous copy of its transpose."""
    if data.draw(st.booleans(), label=f"{label} transposed"):
        return np.ascontiguousarray(m.T).T
    return m


@given(data=st.data())
def test_products_match_float64_on_either_route(data):
    rng = draw_rng(data)
    M = data.draw(st.sampled_from([0, 1, 1, 1, 2, 3]), label="M")  # (mostly one row: the loops' case)
    K, N = data.draw(st.integers(0, 40), label="K"), data.draw(st.integers(0, 70), label="N")
    route = data.draw(st.sampled_from(["ptbfast", "blas"]), label="route")
    a, b = normal(rng, (M, K)), normal(rng, (K, N))
    accumulate = data.draw(st.booleans(), label="accumulate")
    c0 = normal(rng, (M, N))
    ops.set_one_row_products(route)
    try:
        if accumulate:
            got = c0.copy()
            ops.matmul(as_read(data, a, "a"), as_read(data, b, "b"), out=got)
        else:
            got = ops.matmul(as_read(data, a, "a"), as_read(data, b, "b"))
    finally:
        ops.set_one_row_products(ONE_ROW_SETTING)
    assert got.shape == (M, N) and got.dtype == np.float32
    assert within_summation_bound(got, a, b, c0 if accumulate else None)
    ran("valid")


@given(data=st.data())
def test_non_finite_values_reach_the_columns_they_touch_on_either_route(data):
    """NaN anywhere in the row makes every column NaN; an Inf in a column of B (times a nonzero, finite
    row) makes that column non-finite and leaves the others finite."""
    rng = draw_rng(data)
    K, N = data.draw(st.integers(1, 30), label="K"), data.draw(st.integers(1, 60), label="N")
    route = data.draw(st.sampled_from(["ptbfast", "blas"]), label="route")
    a, b = normal(rng, (1, K)) + 3.0, normal(rng, (K, N))  # (a's entries are nonzero: |a| > 0 whp)
    a[a == 0] = 1.0
    where = data.draw(st.sampled_from(["nan in a", "inf in b"]), label="where")
    column = data.draw(st.integers(0, N - 1), label="column")
    if where == "nan in a":
        a[0, data.draw(st.integers(0, K - 1), label="k")] = np.nan
    else:
        b[data.draw(st.integers(0, K - 1), label="k"), column] = np.inf
    ops.set_one_row_products(route)
    try:
        got = ops.matmul(as_read(data, a, "a"), as_read(data, b, "b"))
    finally:
        ops.set_one_row_products(ONE_ROW_SETTING)
    if where == "nan in a":
        assert np.isnan(got).all()
    else:
        assert not np.isfinite(got[0, column])
        assert np.isfinite(np.delete(got[0], column)).all()
    ran("valid")
