"""The fused SGD update kernels: dense axpy and the scaled sparse embedding update (ptbfast.ops)."""

import numpy as np
import pytest

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
