"""Property tests of what the raw binding (``ptbfast._core``) refuses, of non-finite data, and of
sizes that cannot be allocated or overflow the kernels' int.

The refusals call ``_core`` directly on purpose: ``ptbfast.ops`` would copy a non-contiguous array
or convert an id dtype, and the point is that a caller who bypasses it gets an exception, never the
wrong memory read as the right one. Non-finite data is valid input, so it goes through ``ops``. The public functions' rejections are tested with their kernels
(tests/test_fuzz_embedding.py, tests/test_fuzz_model.py). The contract, the strategies and the case
counter are in tests/fuzz_strategies.py.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import as_strided

import ptbfast
from ptbfast import _core, ops

from fuzz_strategies import (NOT_FLOATS, NOT_INTS, bad_float, bad_ids, draw_rng, draw_shape, ints, nonfinite_values,
                             normal, ran)
from helpers import max_rel_error


@given(data=st.data())
def test_core_embedding_forward_rejects_bad_input(data):
    rng = draw_rng(data)
    V, H = data.draw(st.integers(1, 20), label="V"), data.draw(st.integers(1, 9), label="H")
    params = normal(rng, (V, H))
    ids = ints(rng, 0, V, draw_shape(data), data.draw(st.sampled_from(["int32", "int64"])))
    if data.draw(st.sampled_from(["params", "ids"]), label="argument") == "params":
        params, exc = bad_float(data, rng, params)  # any V, H is fine: only rank and layout are checked
    else:
        ids, exc = bad_ids(data, ids, V)
    with pytest.raises(exc):
        _core.embedding_forward(params, ids)
    ran("invalid")


@given(data=st.data())
def test_axpy_rejects_bad_input(data):
    rng = draw_rng(data)
    shape = draw_shape(data)
    y, x, alpha = normal(rng, shape), normal(rng, shape), 0.5
    target = data.draw(st.sampled_from(["y", "x", "alpha"]), label="argument")
    axes = tuple(range(len(shape)))  # x must have y's shape, whatever it is
    if target == "y":
        y, exc = bad_float(data, rng, y, axes=axes, readonly=True)
    elif target == "x":
        x, exc = bad_float(data, rng, x, axes=axes)
    else:
        alpha, exc = data.draw(st.sampled_from(NOT_FLOATS)), TypeError
    with pytest.raises(exc):
        _core.axpy(y, x, alpha)
    ran("invalid")


@given(data=st.data())
def test_core_matmul_rejects_bad_input(data):
    rng = draw_rng(data)
    M, K, N = (data.draw(st.integers(0, 5), label=side) for side in "MKN")
    args = {"a": normal(rng, (M, K)), "b": normal(rng, (K, N)), "c": normal(rng, (M, N))}
    # a's K is checked against b's, c's shape against both; c may be None (a new result)
    target = data.draw(st.sampled_from(["a", "b", "c"]), label="argument")
    if target == "a":
        args["a"], exc = bad_float(data, rng, args["a"], axes=(1,))
    elif target == "b":
        args["b"], exc = bad_float(data, rng, args["b"], axes=(0,))
    else:
        args["c"], exc = bad_float(data, rng, args["c"], axes=(0, 1), readonly=True, none_ok=True)
    with pytest.raises(exc):
        _core.matmul(args["a"], args["b"], False, False, False, args["c"])
    ran("invalid")


def lstm_problem(data, rng):
    T, B = data.draw(st.integers(0, 4), label="T"), data.draw(st.integers(0, 4), label="B")
    In, H = data.draw(st.integers(1, 6), label="In"), data.draw(st.integers(1, 6), label="H")
    return dict(x=normal(rng, (T, B, In)), c0=normal(rng, (B, H)), h0=normal(rng, (B, H)),
                kernel=normal(rng, (In + H, 4 * H), 0.3), bias=normal(rng, (4 * H,)))


@given(data=st.data())
def test_lstm_forward_rejects_bad_input(data):
    rng = draw_rng(data)
    args = lstm_problem(data, rng)
    # T (x's axis 0) may be anything; every other size is checked against another argument.
    axes = {"x": (1, 2), "c0": (0, 1), "h0": (0, 1), "kernel": (0, 1), "bias": (0,)}
    target = data.draw(st.sampled_from([*axes, "forget_bias"]), label="argument")
    if target == "forget_bias":
        args[target], exc = data.draw(st.sampled_from(NOT_FLOATS)), TypeError
    else:
        args[target], exc = bad_float(data, rng, args[target], axes=axes[target])
    with pytest.raises(exc):
        _core.lstm_forward(**args)
    ran("invalid")


@given(data=st.data())
def test_lstm_backward_rejects_bad_input(data):
    rng = draw_rng(data)
    fwd = lstm_problem(data, rng)
    h_all, c_all, gates = _core.lstm_forward(**fwd)
    T, B, _ = fwd["x"].shape
    H = fwd["c0"].shape[1]
    args = dict(d_h_all=normal(rng, (T, B, H)), d_c_T=normal(rng, (B, H)), d_h_T=None, x=fwd["x"], c0=fwd["c0"],
                h0=fwd["h0"], kernel=fwd["kernel"], h_all=h_all, c_all=c_all, gates=gates)
    if data.draw(st.booleans(), label="swap optional"):
        args["d_c_T"], args["d_h_T"] = None, args["d_c_T"]
    target = data.draw(st.sampled_from(list(args)), label="argument")
    if args[target] is None:
        args[target] = normal(rng, (B, H))
    three = (0, 1, 2)
    axes = {"d_h_all": three, "d_c_T": (0, 1), "d_h_T": (0, 1), "x": three, "c0": (0, 1), "h0": (0, 1),
            "kernel": (0, 1), "h_all": three, "c_all": three, "gates": three}[target]
    # d_c_T and d_h_T may be None; anything else that is not an array is a TypeError.
    args[target], exc = bad_float(data, rng, args[target], axes=axes, none_ok=target in ("d_c_T", "d_h_T"))
    with pytest.raises(exc):
        _core.lstm_backward(**args)
    ran("invalid")


@given(data=st.data())
def test_output_layer_rejects_bad_input(data):
    rng = draw_rng(data)
    N, H, V = (data.draw(st.integers(0, 6), label="N"), data.draw(st.integers(1, 6), label="H"),
               data.draw(st.integers(1, 9), label="V"))
    args = dict(h=normal(rng, (N, H)), softmax_w=normal(rng, (H, V)), softmax_b=normal(rng, (V,)),
                targets=rng.integers(0, V, N).astype(data.draw(st.sampled_from(["int32", "int64"]))),
                block_rows=data.draw(st.integers(0, 8), label="block_rows"))
    backward = data.draw(st.booleans(), label="forward_backward")
    if backward:
        args["d_loss"] = 1.0
    target = data.draw(st.sampled_from(list(args)), label="argument")
    if target in ("h", "softmax_w"):
        args[target], exc = bad_float(data, rng, args[target], axes=(0, 1))
    elif target == "softmax_b":
        args[target], exc = bad_float(data, rng, args[target], axes=(0,))
    elif target == "targets":
        if data.draw(st.booleans(), label="wrong length"):
            args[target], exc = rng.integers(0, V, N + data.draw(st.sampled_from([1, 2, 7]))), ValueError
        else:
            args[target], exc = bad_ids(data, args[target], V, shape_checked=True)
    elif target == "block_rows":  # an int that fits C int; floats are not truncated
        args[target], exc = data.draw(st.sampled_from(NOT_INTS)), TypeError
    else:
        args[target], exc = data.draw(st.sampled_from(NOT_FLOATS)), TypeError
    with pytest.raises(exc):
        (_core.output_layer_forward_backward if backward else _core.output_layer_forward)(**args)
    ran("invalid")


@given(data=st.data())
def test_vecmath_rejects_bad_input(data):
    rng = draw_rng(data)
    x = normal(rng, (data.draw(st.integers(0, 40), label="n"),))
    name = data.draw(st.sampled_from(["exp", "sigmoid", "tanh"]), label="name")
    if data.draw(st.booleans(), label="bad name"):
        name, exc = data.draw(st.one_of(st.text(max_size=8).filter(lambda s: s not in ("exp", "sigmoid", "tanh")),
                                        st.sampled_from(["EXP", "log", "exp ", "tanh\0"]))), ValueError
        if data.draw(st.booleans(), label="not a str"):
            name, exc = data.draw(st.sampled_from([None, 3, ["exp"], 1.5])), TypeError
    else:
        x, exc = bad_float(data, rng, x)
    with pytest.raises(exc):
        _core._vecmath(name, x)
    ran("invalid")


@given(data=st.data())
def test_non_finite_values_stay_in_their_rows(data):
    # NaN and Inf are data, not errors, for the kernels: they must not crash anything, and must not
    # leak into the results of other (independent) rows of the batch. (Valid calls: through ops.)
    rng = draw_rng(data)
    bad = data.draw(nonfinite_values(), label="value")
    kernel_name = data.draw(st.sampled_from(["embedding", "lstm", "output layer", "axpy"]), label="kernel")
    if kernel_name == "embedding":
        V, H = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
        params = normal(rng, (V, H))
        params[data.draw(st.integers(0, V - 1)), data.draw(st.integers(0, H - 1))] = bad
        ids = ints(rng, 0, V, draw_shape(data))
        np.testing.assert_array_equal(ptbfast.embedding_lookup(params, ids), params[ids])  # NaN == NaN here
    elif kernel_name == "lstm":
        T, B = data.draw(st.integers(1, 4), label="T"), data.draw(st.integers(2, 5), label="B")
        In, H = data.draw(st.integers(1, 8), label="In"), data.draw(st.integers(1, 8), label="H")
        x, c0, h0 = normal(rng, (T, B, In)), normal(rng, (B, H)), normal(rng, (B, H))
        kernel, bias = normal(rng, (In + H, 4 * H), 0.5), normal(rng, (4 * H,))
        clean = ops.lstm_forward(x, c0, h0, kernel, bias)
        b = data.draw(st.integers(0, B - 1), label="row")
        where = data.draw(st.sampled_from(["x", "c0", "h0"]), label="where")
        if where == "x":
            x[data.draw(st.integers(0, T - 1)), b, data.draw(st.integers(0, In - 1))] = bad
        else:
            {"c0": c0, "h0": h0}[where][b, data.draw(st.integers(0, H - 1))] = bad
        h_all, c_all, gates = ops.lstm_forward(x, c0, h0, kernel, bias)
        others = [r for r in range(B) if r != b]
        for got, want in zip((h_all, c_all, gates), clean):
            assert np.isfinite(got[:, others]).all()
            assert max_rel_error(got[:, others], want[:, others]) <= 1e-6
        ops.lstm_backward(np.ones_like(h_all), None, None, x, c0, h0, kernel, h_all, c_all, gates)  # no crash
    elif kernel_name == "output layer":
        N, H, V = data.draw(st.integers(2, 9)), data.draw(st.integers(1, 6)), data.draw(st.integers(1, 40))
        h, w, b = normal(rng, (N, H)), normal(rng, (H, V)), normal(rng, (V,))
        targets = rng.integers(0, V, N)
        _, clean = ops.output_layer_loss(h, w, b, targets)
        r = data.draw(st.integers(0, N - 1), label="row")
        h[r, data.draw(st.integers(0, H - 1))] = bad
        _, losses = ops.output_layer_loss(h, w, b, targets, data.draw(st.integers(0, 4)))
        others = [k for k in range(N) if k != r]
        assert max_rel_error(losses[others], clean[others]) <= 1e-6
        ops.output_layer_loss_and_grads(h, w, b, targets, 1.0, 0)  # no crash
    else:
        n = data.draw(st.integers(1, 40))
        y, x = normal(rng, (n,)), normal(rng, (n,))
        k = data.draw(st.integers(0, n - 1))
        x[k] = bad
        expected = y.astype(np.float64) + 0.5 * x.astype(np.float64)
        ops.sgd_update(y, x, 0.5)
        others = np.arange(n) != k
        assert max_rel_error(y[others], expected[others]) <= 1e-6
        assert np.isnan(y[k]) if np.isnan(bad) else y[k] == bad
    ran("invalid")


# ---- sizes that cannot be allocated or overflow the kernels' int ---------------------------------------
# Zero-stride views (as_strided) and size-0 arrays describe astronomically large inputs in no memory.
# Every allocation these cases attempt is >= 2**48 bytes, beyond any x86-64 or arm64 user address
# space, so it fails whatever the overcommit policy: a merely "large" request (say the 2**33 ids a
# zero-stride view would be copied into) could succeed lazily on a big machine and then be filled.
# Nothing here may crash or hang.

@given(data=st.data())
def test_huge_sizes_raise_instead_of_allocating(data):
    case = data.draw(st.sampled_from(["lookup ids copy", "raw zero-stride", "lstm T*B", "lstm T*B*4H",
                                      "lstm_backward kernel", "model ids copy"]), label="case")
    zero = np.zeros(1, np.float32)
    if case == "lookup ids copy":  # the public function copies non-contiguous ids to C order first
        dtype = np.dtype(data.draw(st.sampled_from(["int32", "int64", "int8", "int16"])))
        n = 2 ** data.draw(st.integers(46, 62 - dtype.itemsize.bit_length() + 1), label="log2 ids")
        ids = as_strided(np.zeros(1, dtype), (n,), (0,))
        with pytest.raises((MemoryError, ValueError)):
            ptbfast.embedding_lookup(np.zeros((3, 2), np.float32), ids)
    elif case == "raw zero-stride":  # the raw kernels refuse non-contiguous input before any work
        n = 2 ** data.draw(st.integers(33, 58), label="log2 size")
        view = as_strided(zero, (n,), (0,))
        which = data.draw(st.sampled_from(["embedding ids", "embedding params", "axpy", "vecmath", "lstm x"]))
        with pytest.raises(ValueError, match="C-contiguous"):
            if which == "embedding ids":
                _core.embedding_forward(np.zeros((3, 2), np.float32), as_strided(np.zeros(1, np.int64), (n,), (0,)))
            elif which == "embedding params":
                _core.embedding_forward(as_strided(zero, (n, 4), (0, 0)), np.zeros(3, np.int64))
            elif which == "axpy":
                _core.axpy(view, view, 1.0)
            elif which == "vecmath":
                _core._vecmath("exp", view)
            else:
                _core.lstm_forward(as_strided(zero, (n // 4, 2, 2), (0, 0, 0)), np.zeros((2, 1), np.float32),
                                   np.zeros((2, 1), np.float32), np.zeros((3, 4), np.float32), np.zeros(4, np.float32))
    elif case in ("lstm T*B", "lstm T*B*4H"):  # x of shape [T, B, 0] is empty however large T * B is
        B = data.draw(st.integers(1, 3), label="B")
        if case == "lstm T*B":
            H = data.draw(st.integers(1, 4), label="H")
            T = data.draw(st.integers((2**31 - 1) // B + 1, 2**40), label="T")
        else:
            H = data.draw(st.integers(256, 600), label="H")
            T = data.draw(st.integers((2**31 - 1) // (4 * H * B) + 1, (2**31 - 1) // B), label="T")
        state = np.zeros((B, H), np.float32)
        args = (np.empty((T, B, 0), np.float32), state, state, np.zeros((H, 4 * H), np.float32))
        with pytest.raises(ValueError, match="too large"):
            if data.draw(st.booleans(), label="backward"):
                _core.lstm_backward(state, None, None, *args, state, state, state)
            else:
                _core.lstm_forward(*args, np.zeros(4 * H, np.float32))
    elif case == "lstm_backward kernel":  # its width sizes an allocation: validated first
        kernel = as_strided(zero, (1, 2 ** data.draw(st.integers(46, 60), label="log2 width")), (0, 0))
        small = np.zeros((1, 1, 1), np.float32)
        with pytest.raises((ValueError, MemoryError)):
            _core.lstm_backward(small, None, None, small, small[0], small[0], kernel, small, small, small)
    else:  # the model copies ids to C order (and transposes them): 2**47 ids of int64
        side = 2 ** data.draw(st.integers(24, 29), label="log2 side")
        ids = as_strided(np.zeros(1, np.int64), (side, side), (0, 0))
        model = ptbfast.LSTMLanguageModel(5, 2, 1)
        with pytest.raises((MemoryError, ValueError)):
            model.loss(ids, ids, model.initial_state(1))
    ran("invalid")


def test_unallocatable_lookup_result_raises_memory_error():
    # Real inputs (2**23 ids, a 1 x 2**23 table: 64 MiB) whose [2**23, 2**23] float32 result (256 TiB)
    # cannot be allocated: the binding's own allocation must fail as a Python MemoryError.
    ids = np.zeros(2**23, np.int32)
    params = np.zeros((1, 2**23), np.float32)
    with pytest.raises(MemoryError):
        _core.embedding_forward(params, ids)
    with pytest.raises(MemoryError):
        ptbfast.embedding_lookup(params, ids)
    ran("invalid")
    ran("invalid")


def test_big_endian_and_non_canonical_dtypes():
    # Byte-swapped ids would be read as other ids (silently wrong rows): refused by the raw kernels,
    # converted by the public function. A native float32 whose descriptor is not NumPy's singleton
    # (metadata, explicit '<f4') is float32 and accepted.
    params = np.arange(12, dtype=np.float32).reshape(6, 2)
    swapped = np.array([2**56, 3], dtype=">i8")  # bytes of 1 and 3 << 56 when read little-endian
    with pytest.raises(TypeError, match="int32 or int64"):
        _core.embedding_forward(params, swapped)
    np.testing.assert_array_equal(ptbfast.embedding_lookup(params, np.array([1, 3], ">i8")), params[[1, 3]])
    with pytest.raises(IndexError):
        ptbfast.embedding_lookup(params, swapped)
    for dtype in (np.dtype("f4", metadata={"unit": "none"}), np.dtype("f4").newbyteorder("<")):
        x = np.array([0.0, 1.0], dtype)
        np.testing.assert_array_equal(_core._vecmath("exp", x), _core._vecmath("exp", x.astype(np.float32)))
    with pytest.raises(TypeError, match="float32"):
        _core._vecmath("exp", np.array([0.0], ">f4"))
    for _ in range(5):
        ran("invalid")
