"""Embedding gather and scatter-add kernels against the NumPy reference."""

import numpy as np
import pytest

import ptbfast
from ptbfast import ops
from ptbfast import reference as ref

from helpers import f32, max_rel_error

# Sizes chosen to hit SIMD tails (not multiples of 16), size 1 and empty.
ID_SHAPES = [(), (0,), (1,), (7,), (3, 5), (2, 3, 4), (20, 25)]
WIDTHS = [1, 5, 16, 17, 33]


@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", ID_SHAPES)
@pytest.mark.parametrize("H", WIDTHS)
def test_lookup_matches_reference_exactly(id_dtype, shape, H):
    rng = np.random.default_rng(H)
    V = 11
    params = f32(rng, V, H)
    ids = rng.integers(0, V, size=shape).astype(id_dtype)
    out = ptbfast.embedding_lookup(params, ids)
    assert out.shape == shape + (H,) and out.dtype == np.float32
    np.testing.assert_array_equal(out, ref.embedding_lookup(params, ids))  # a copy: bit-exact


def test_lookup_shapes_of_the_tutorial():
    params = np.zeros((10000, 200), np.float32)
    ids = np.zeros((20, 25), np.int32)
    assert ptbfast.embedding_lookup(params, ids).shape == (20, 25, 200)


@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", ID_SHAPES)
@pytest.mark.parametrize("H", [1, 17, 33])
def test_scatter_add_matches_reference(id_dtype, shape, H):
    rng = np.random.default_rng(1)
    V = 6  # few rows, so ids repeat
    ids = rng.integers(0, V, size=shape).astype(id_dtype)
    d_out = f32(rng, *shape, H)
    dense = ops.embedding_lookup_backward(d_out, ids, V)
    assert max_rel_error(dense, ref.embedding_lookup_backward(d_out.astype(np.float64), ids, V)) <= 1e-6
    rows, summed = ops.merge_duplicate_ids(ids, d_out)
    ref_rows, ref_summed = ref.embedding_lookup_backward_sparse(d_out.astype(np.float64), ids)
    np.testing.assert_array_equal(rows, ref_rows)
    assert rows.dtype == np.int64 and summed.shape == (len(rows), H)
    assert max_rel_error(summed, ref_summed) <= 1e-6


def test_scatter_add_is_exact_on_integer_values():
    # Integer-valued floats add exactly in any order, so any lost or doubled row shows as a mismatch.
    rng = np.random.default_rng(2)
    ids = rng.integers(0, 9, size=(40, 13))
    d_out = rng.integers(-50, 50, size=(40, 13, 19)).astype(np.float32)
    np.testing.assert_array_equal(ops.embedding_lookup_backward(d_out, ids, 9),
                                  ref.embedding_lookup_backward(d_out, ids, 9))


def test_dense_scatter_add_accumulates_into_existing_gradient():
    rng = np.random.default_rng(3)
    d_params = f32(rng, 5, 4)
    before = d_params.copy()
    ids = np.array([1, 1, 4])
    d_out = f32(rng, 3, 4)
    ops.scatter_add(d_params, ids, d_out)
    expected = before.astype(np.float64)
    np.add.at(expected, ids, d_out)
    assert max_rel_error(d_params, expected) <= 1e-6


def test_scatter_add_is_deterministic_across_thread_counts():
    # Large enough to run the parallel path; many repeats of few ids stress the ordering.
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 37, size=(400, 20)).astype(np.int32)
    d_out = f32(rng, 400, 20, 211)
    results = []
    saved = ptbfast.get_num_threads()
    try:
        for threads in (1, 2, 1, 2):
            ptbfast.set_num_threads(threads)
            dense = ops.embedding_lookup_backward(d_out, ids, 37)
            rows, summed = ops.merge_duplicate_ids(ids, d_out)
            results.append((dense, rows, summed))
    finally:
        ptbfast.set_num_threads(saved)
    for dense, rows, summed in results[1:]:
        assert dense.tobytes() == results[0][0].tobytes()
        assert rows.tobytes() == results[0][1].tobytes()
        assert summed.tobytes() == results[0][2].tobytes()


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [-1, 10, 2**31 - 1])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
def test_out_of_range_ids_raise_index_error(bad, id_dtype):
    params = np.zeros((10, 3), np.float32)
    ids = np.array([0, 3, bad], dtype=id_dtype)
    with pytest.raises(IndexError, match=rf"{bad}.*\[0, 10\)"):
        ptbfast.embedding_lookup(params, ids)
    with pytest.raises(IndexError):
        ops.scatter_add(np.zeros((10, 3), np.float32), ids, np.zeros((3, 3), np.float32))


def test_ids_beyond_int64_raise():
    with pytest.raises(IndexError):
        ptbfast.embedding_lookup(np.zeros((3, 2), np.float32), np.array([2**63], dtype=np.uint64))


@pytest.mark.parametrize("ids", [np.array([0.0, 1.0]), np.array([True, False]), np.array(["a"])])
def test_non_integer_ids_raise_type_error(ids):
    with pytest.raises(TypeError, match="ids must be integers"):
        ptbfast.embedding_lookup(np.zeros((3, 2), np.float32), ids)
    with pytest.raises(TypeError, match="ids must be integers"):
        ops.merge_duplicate_ids(ids, np.zeros(ids.shape + (2,), np.float32))


def test_other_integer_dtypes_are_converted():
    params = np.arange(12, dtype=np.float32).reshape(6, 2)
    for dtype in (np.uint8, np.int16, np.uint32):
        ids = np.array([5, 0, 2], dtype=dtype)
        np.testing.assert_array_equal(ptbfast.embedding_lookup(params, ids), params[[5, 0, 2]])
    np.testing.assert_array_equal(ptbfast.embedding_lookup(params, [1, 2]), params[[1, 2]])  # a list


def test_float64_params_are_rejected_not_downcast():
    with pytest.raises(TypeError, match=r"float32.*astype"):
        ptbfast.embedding_lookup(np.zeros((3, 2)), np.array([0]))


@pytest.mark.parametrize("params", [np.zeros(3, np.float32), np.zeros((2, 3, 4), np.float32)])
def test_params_of_wrong_rank_raise(params):
    with pytest.raises(ValueError, match="params"):
        ptbfast.embedding_lookup(params, np.array([0]))


def test_non_contiguous_arrays():
    rng = np.random.default_rng(5)
    params = f32(rng, 8, 10)[:, ::2]  # a strided view
    ids = (np.arange(16).reshape(4, 4) % 8)[:, ::2]  # a strided view
    # Inputs are copied to C order (tests/test_bindings.py: the raw kernel refuses them) ...
    np.testing.assert_array_equal(ptbfast.embedding_lookup(params, ids), params[ids])
    # ... but an array updated in place cannot be: a copy would be updated instead.
    with pytest.raises(TypeError, match="in place"):
        ops.scatter_add(np.zeros((8, 10), np.float32)[:, ::2], np.array([0]), np.ones((1, 5), np.float32))


def test_read_only_output_and_inputs():
    params = np.ones((4, 3), np.float32)
    params.flags.writeable = False
    ids = np.array([1, 2])
    ids.flags.writeable = False
    assert ptbfast.embedding_lookup(params, ids).shape == (2, 3)  # read-only inputs are fine
    with pytest.raises(ValueError, match="dense is updated in place and is read-only"):  # (its own name)
        ops.scatter_add(params, ids, np.ones((2, 3), np.float32))


def test_mismatched_gradient_shape_raises():
    with pytest.raises(ValueError, match="d_out"):
        ops.merge_duplicate_ids(np.array([0, 1]), np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="width"):
        ops.scatter_add(np.zeros((5, 3), np.float32), np.array([0, 1]), np.zeros((2, 4), np.float32))


def test_wrong_python_types_raise_type_error():
    with pytest.raises(TypeError):
        ptbfast.embedding_lookup(None, np.array([0]))
    with pytest.raises(TypeError):
        ptbfast.embedding_lookup(np.zeros((2, 2), np.float32), None)
