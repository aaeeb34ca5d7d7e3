"""Property tests of the embedding: ``embedding_lookup`` and its gradients (dense, sparse, and the
scatter-add of the SGD update) against the NumPy reference, and what they refuse.

The contract, the strategies and the case counter are in tests/fuzz_strategies.py.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ptbfast
from ptbfast import _core, ops
from ptbfast import reference as ref

from fuzz_strategies import (BAD_FLOAT_DTYPES, NOT_FLOATS, bad_float, bad_ids, draw_rng, draw_shape, ints, normal,
                             other_rank, other_shape, out_of_range, ran)


PUBLIC_ID_DTYPES = ["int32", "int64", "int8", "int16", "uint8", "uint16", "uint32", "uint64", "list"]


@given(data=st.data())
def test_embedding_lookup_matches_reference(data):
    rng = draw_rng(data)
    if data.draw(st.booleans(), label="large vocabulary"):  # ids up to 2**20 - 1, in a narrow table
        V, H = data.draw(st.integers(100_000, 2**20), label="V"), 1
    else:
        V, H = data.draw(st.integers(1, 60), label="V"), data.draw(st.integers(1, 40), label="H")
    if data.draw(st.integers(0, 9), label="empty with a huge side") == 0:
        shape = (0, data.draw(st.integers(1, 2**40), label="huge side"))  # size 0: nothing allocated
    else:
        shape = draw_shape(data)
    id_dtype = data.draw(st.sampled_from(PUBLIC_ID_DTYPES), label="id dtype")
    high = V - 1 if id_dtype == "list" else min(V - 1, np.iinfo(id_dtype).max)
    ids = ints(rng, 0, high + 1, shape)
    if ids.size:
        ids.flat[rng.integers(ids.size)] = high  # the largest id the dtype and table allow
    # (An empty Python list becomes a float64 array in NumPy, refused like float ids: lists only if non-empty.)
    ids = ids.tolist() if id_dtype == "list" and ids.size else ids.astype("int64" if id_dtype == "list" else id_dtype)
    params = normal(rng, (V, H))
    layout = data.draw(st.sampled_from(["C", "fortran", "strided", "read-only"]), label="params layout")
    if layout == "fortran":
        params = np.asfortranarray(params)
    elif layout == "strided":
        wide = np.zeros((V, 2 * H), np.float32)
        wide[:, ::2] = params
        params = wide[:, ::2]
    elif layout == "read-only":
        params.flags.writeable = False

    out = ptbfast.embedding_lookup(params, ids)
    expected = ref.embedding_lookup(params, ids)
    assert out.dtype == np.float32 and out.shape == np.shape(ids) + (H,)
    np.testing.assert_array_equal(out, expected)  # a copy of rows: bit-exact
    ran("valid")


@given(data=st.data())
def test_embedding_gradients_match_reference(data):
    # Integer-valued float32 gradients add exactly in any order, so every result must be bit-exact:
    # a lost, doubled or misplaced row cannot hide inside a tolerance.
    rng = draw_rng(data)
    V, H = data.draw(st.integers(1, 12), label="V"), data.draw(st.integers(1, 40), label="H")
    shape = draw_shape(data)
    id_dtype = data.draw(st.sampled_from(["int32", "int64", "uint8", "int16"]), label="id dtype")
    ids = ints(rng, 0, V, shape, id_dtype)
    d_out = ints(rng, -64, 65, shape + (H,), np.float32)

    dense = ops.embedding_lookup_backward(d_out, ids, V)
    np.testing.assert_array_equal(dense, ref.embedding_lookup_backward(d_out.astype(np.float64), ids, V))
    assert dense.dtype == np.float32 and dense.shape == (V, H)

    if data.draw(st.booleans(), label="large ids"):  # the sparse form has no vocabulary bound
        ids = ints(rng, 0, 2**62, shape)
        if ids.size > 1:
            ids.flat[0] = ids.flat[-1]  # a repeat
    rows, summed = ops.merge_duplicate_ids(ids, d_out)
    ref_rows, ref_summed = ref.embedding_lookup_backward_sparse(d_out.astype(np.float64), ids)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(summed, ref_summed)
    assert rows.dtype == np.int64 and summed.dtype == np.float32 and summed.shape == (len(rows), H)

    # scatter_add accumulates scale * scatter into an existing table (the embedding's SGD update).
    raw_ids = np.asarray(ids % V).astype(data.draw(st.sampled_from(["int32", "int64"]), label="raw id dtype"))
    table = rng.integers(-64, 65, size=(V, H)).astype(np.float32)
    scale = data.draw(st.sampled_from([1.0, -1.0, 0.5, -0.25, 2.0, 0.0]), label="scale")
    expected = table.astype(np.float64) + scale * ref.embedding_lookup_backward(d_out.astype(np.float64), raw_ids, V)
    ops.scatter_add(table, raw_ids, d_out, scale)
    np.testing.assert_array_equal(table, expected)
    ran("valid")


@given(data=st.data())
def test_embedding_lookup_rejects_bad_input(data):
    rng = draw_rng(data)
    V, H = data.draw(st.integers(1, 20), label="V"), data.draw(st.integers(1, 9), label="H")
    params = normal(rng, (V, H))
    ids = rng.integers(0, V, size=draw_shape(data, min_rank=1)).astype(
        data.draw(st.sampled_from(["int32", "int64", "int8", "uint8", "uint64"]), label="id dtype"))
    target = data.draw(st.sampled_from(["params", "ids"]), label="argument")
    if target == "params":  # public policy: any non-float32 -> TypeError, rank != 2 -> ValueError
        kind = data.draw(st.sampled_from(["dtype", "python", "rank", "ragged"]), label="corruption")
        if kind == "dtype":
            params, exc = params.astype(data.draw(st.sampled_from(BAD_FLOAT_DTYPES))), TypeError
        elif kind == "python":  # None, str, int, float and lists of floats are not float32 arrays
            params = data.draw(st.sampled_from([None, "abc", 3, 1.5, {"a": 1}, params.tolist()]))
            exc = TypeError
        elif kind == "rank":
            params, exc = other_rank(data, params), ValueError
        else:
            params, exc = [[1.0] * H, [1.0] * (H + 1)], ValueError  # NumPy: inhomogeneous shape
    else:
        kind = data.draw(st.sampled_from(["dtype", "python", "range", "ragged", "beyond int64"]
                                         if ids.size else ["dtype", "python", "ragged"]), label="corruption")
        if kind == "dtype":  # float, bool, complex, object or str ids
            dtype = data.draw(st.sampled_from(["float32", "float64", "bool", "complex64", "object", "<U3"]))
            ids, exc = ids.astype(dtype), TypeError
        elif kind == "python":
            ids, exc = data.draw(st.sampled_from([None, "abc", 1.5, [0.5, 1.0], {"a": 1}, object()])), TypeError
        elif kind == "range":
            ids, exc = out_of_range(data, ids if ids.dtype.kind == "i" else ids.astype(np.int64), V), IndexError
        elif kind == "beyond int64":
            ids = ids.astype(np.uint64)
            ids.flat[data.draw(st.integers(0, ids.size - 1))] = data.draw(st.integers(2**63, 2**64 - 1))
            exc = IndexError
        else:
            ids, exc = [[0], [0, 0]], ValueError
    with pytest.raises(exc):
        ptbfast.embedding_lookup(params, ids)
    ran("invalid")


@given(data=st.data())
def test_embedding_gradients_reject_bad_input(data):
    rng = draw_rng(data)
    V, H = data.draw(st.integers(1, 12), label="V"), data.draw(st.integers(1, 9), label="H")
    shape = draw_shape(data, min_rank=1)
    ids = rng.integers(0, V, size=shape).astype(data.draw(st.sampled_from(["int32", "int64"]), label="dtype"))
    d_out = normal(rng, shape + (H,))
    d_params = normal(rng, (V, H))
    scale = 1.0
    function = data.draw(st.sampled_from(["public dense", "public sparse", "raw dense", "raw sparse"]))
    arguments = {"public dense": ["d_out", "ids", "vocab_size"], "public sparse": ["d_out", "ids"],
                 "raw dense": ["d_params", "d_out", "ids", "scale"], "raw sparse": ["d_out", "ids"]}[function]
    target = data.draw(st.sampled_from(arguments), label="argument")
    vocab_size = V
    # d_out must be ids.shape + (H,); its H is free except against an existing table (raw dense).
    d_out_axes = tuple(range(d_out.ndim - (function != "raw dense")))
    if function.startswith("public"):
        if target == "d_out":
            kind = data.draw(st.sampled_from(["dtype", "python", "rank", "shape"]), label="corruption")
            if kind == "dtype":
                d_out, exc = d_out.astype(data.draw(st.sampled_from(BAD_FLOAT_DTYPES))), TypeError
            elif kind == "python":  # become float64 / object / str arrays
                d_out, exc = data.draw(st.sampled_from([None, "abc", 2.5, d_out.tolist()])), TypeError
            elif kind == "rank":
                d_out, exc = other_rank(data, d_out), ValueError
            else:
                d_out, exc = other_shape(data, rng, d_out, d_out_axes), ValueError
        elif target == "ids":
            kind = data.draw(st.sampled_from(["dtype", "range"] if ids.size else ["dtype"]), label="corruption")
            if kind == "dtype":
                ids, exc = ids.astype(data.draw(st.sampled_from(["float64", "bool", "complex64", "object"]))), TypeError
            else:
                ids, exc = out_of_range(data, ids, V, lower_only=function == "public sparse"), IndexError
        else:
            kind = data.draw(st.sampled_from(["negative", "type", "too small", "huge"]), label="corruption")
            if kind == "negative":
                vocab_size, exc = data.draw(st.integers(-(2**63), -1)), ValueError
            elif kind == "type":
                vocab_size, exc = data.draw(st.sampled_from([None, 2.5, "3", [3]])), TypeError
            elif kind == "too small":
                if ids.size == 0:
                    ids = np.zeros(1, ids.dtype)
                    d_out = normal(rng, (1, H))
                vocab_size, exc = data.draw(st.integers(0, int(ids.max()))), IndexError
            else:  # [vocab_size, H] float32 beyond any address space: MemoryError, or ValueError past 2**63
                vocab_size, exc = data.draw(st.integers(2**48, 2**70)), (MemoryError, ValueError)
        with pytest.raises(exc):
            if function == "public dense":
                ops.embedding_lookup_backward(d_out, ids, vocab_size)
            else:
                ops.merge_duplicate_ids(ids, d_out)
    else:  # the raw kernels, called directly: they refuse what ops would convert or copy
        if target == "d_params":
            d_params, exc = bad_float(data, rng, d_params, axes=(1,), readonly=True)
        elif target == "d_out":
            d_out, exc = bad_float(data, rng, d_out, axes=d_out_axes)
        elif target == "ids":
            ids, exc = bad_ids(data, ids, V, lower_only=function == "raw sparse")
        else:
            scale, exc = data.draw(st.sampled_from(NOT_FLOATS)), TypeError
        with pytest.raises(exc):
            if function == "raw dense":
                _core.embedding_backward_dense(d_params, d_out, ids, scale)
            else:
                _core.embedding_backward_sparse(d_out, ids)
    ran("invalid")
