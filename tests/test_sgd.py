"""The SGD step's kernels: the global norm's sum of squares, dense axpy and the scaled sparse
embedding update (ptbfast.ops)."""

import math

import numpy as np
import pytest

import ptbfast
from ptbfast import ops
from ptbfast.grads import IndexedSlices

from helpers import f32, max_rel_error


@pytest.mark.parametrize("shape", [(0,), (1,), (17,), (3, 33), (200, 800), (70000,)])
def test_sgd_update_matches_numpy(shape):
    rng = np.random.default_rng(0)
    y, x = f32(rng, *shape), f32(rng, *shape)
    expected = y.astype(np.float64) - 0.37 * x.astype(np.float64)
    ops.sgd_update(y, x, -0.37)
    assert max_rel_error(y, expected) <= 1e-6


def test_sgd_update_rejects_bad_arguments():
    y = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="x must have shape"):
        ops.sgd_update(y, np.zeros(3, np.float32), 1.0)
    with pytest.raises(TypeError, match="grad must be float32"):
        ops.sgd_update(y, np.zeros(4), 1.0)
    with pytest.raises(TypeError, match="in place"):  # a copy would be updated, not the parameter
        ops.sgd_update(np.zeros(8, np.float32)[::2], np.zeros(4, np.float32), 1.0)
    with pytest.raises(TypeError, match="in place"):
        ops.sgd_update(np.zeros(4), np.zeros(4, np.float32), 1.0)
    y.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.sgd_update(y, np.zeros(4, np.float32), 1.0)


# Sizes around the kernel's chunks of 16,384 elements (sgd.cpp), and past its parallel threshold.
@pytest.mark.parametrize("shape", [(0,), (1,), (17,), (3, 33), (16383,), (16384,), (16385,), (200, 800)])
def test_sum_of_squares_is_within_double_summation_bound(shape):
    rng = np.random.default_rng(2)
    x = f32(rng, *shape, scale=3.0)
    exact = math.fsum((x.astype(np.float64) ** 2).ravel())  # (a float32's square is exact in double)
    got = ops.sum_of_squares(x)
    assert isinstance(got, float)
    # Summing n positive terms in double: relative error at most n * 2^-53 (any order of the sums).
    assert abs(got - exact) <= x.size * 2.0**-53 * exact


def test_sum_of_squares_has_the_same_bits_for_any_thread_count():
    x = f32(np.random.default_rng(3), 300_007)
    saved = ptbfast.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3, 1):
            ptbfast.set_num_threads(threads)
            results.append(ops.sum_of_squares(x))
    finally:
        ptbfast.set_num_threads(saved)
    assert len(set(results)) == 1, results


def test_sum_of_squares_of_non_finite_and_huge_values():
    big = np.full(5, 3e38, np.float32)
    assert ops.sum_of_squares(big) == pytest.approx(5 * 3e38**2, rel=1e-7)  # float32's dot: inf
    assert ops.sum_of_squares(np.array([1.0, np.inf], np.float32)) == math.inf
    assert math.isnan(ops.sum_of_squares(np.array([np.inf, np.nan, 1.0], np.float32)))
    assert ops.sum_of_squares(np.arange(6, dtype=np.float32)[::2]) == 20.0  # (a strided view: 0 + 4 + 16)
    with pytest.raises(TypeError, match="x must be float32"):
        ops.sum_of_squares(np.ones(3))


def test_scaled_sparse_update_touches_only_used_rows():
    rng = np.random.default_rng(1)
    params = f32(rng, 10, 6)
    before = params.copy()
    ids = np.array([[3, 7, 3], [0, 3, 7]])
    rows = f32(rng, 2, 3, 6)
    ops.sparse_sgd_update(params, IndexedSlices(ids, rows, params.shape), -0.5)
    expected = before.astype(np.float64)
    np.add.at(expected, ids, -0.5 * rows.astype(np.float64))
    assert max_rel_error(params, expected) <= 1e-6
    unused = [1, 2, 4, 5, 6, 8, 9]
    np.testing.assert_array_equal(params[unused], before[unused])
