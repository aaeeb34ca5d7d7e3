"""The raw bindings (ptbfast._core) refuse what ptbfast.ops would convert.

Everything else reaches the kernels through ptbfast.ops, which copies non-contiguous inputs and
converts id dtypes; these tests call _core directly to show that a caller who bypasses ops gets an
exception, never the wrong memory read as the right one.
"""

import numpy as np
import pytest

from ptbfast import _core


def test_non_contiguous_arrays_are_refused():
    params = np.zeros((8, 10), np.float32)[:, ::2]
    ids = (np.arange(16).reshape(4, 4) % 8)[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.embedding_forward(params, np.array([0]))
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.embedding_forward(np.ascontiguousarray(params), ids)
    x = np.zeros((2, 3, 4), np.float32)
    c0 = h0 = np.zeros((3, 5), np.float32)
    kernel, bias = np.zeros((9, 20), np.float32), np.zeros(20, np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.lstm_forward(np.asfortranarray(x), c0, h0, kernel, bias)
    h, w, b = np.zeros((4, 3), np.float32), np.zeros((3, 6), np.float32), np.zeros(6, np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.output_layer_forward(h, np.asfortranarray(w), b, np.array([0, 1, 2, 3]))


@pytest.mark.parametrize("ids", [np.array([0.0, 1.0]), np.array([True, False]), np.array(["a"]),
                                 np.array([0, 1], dtype=np.uint8), np.array([0, 1], dtype=">i8")])
def test_ids_must_be_native_int32_or_int64(ids):
    with pytest.raises(TypeError, match="int32 or int64"):
        _core.embedding_forward(np.zeros((3, 2), np.float32), ids)


def test_wrong_python_types():
    with pytest.raises(TypeError):
        _core.embedding_forward(np.zeros((2, 2), np.float32), None)
    with pytest.raises(TypeError, match="float32 numpy array or None"):
        x = np.zeros((1, 1, 1), np.float32)
        s = np.zeros((1, 1), np.float32)
        k, bias = np.zeros((2, 4), np.float32), np.zeros(4, np.float32)
        h_all, c_all, gates = _core.lstm_forward(x, s, s, k, bias)
        _core.lstm_backward(h_all, [0.0], None, x, s, s, k, h_all, c_all, gates)


def test_read_only_outputs_are_refused():
    y = np.zeros(4, np.float32)
    y.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        _core.axpy(y, np.zeros(4, np.float32), 1.0)


def test_block_floats_constant_is_exported():
    # Python's memory estimate (train.training_memory_bytes) reads the kernel's own constant.
    assert _core.OUTPUT_BLOCK_FLOATS == 4 << 20


# ---- arrays the caller shares with the kernel -----------------------------------------------------

def test_ids_written_by_another_thread_during_the_call_are_not_read():
    # The ids are copied before they are checked, and the kernel reads the copy: without the copy,
    # ids set out of range after the check sent the scatter-add outside d_params (a segfault).
    import threading

    rng = np.random.default_rng(0)
    V, H, n = 50, 4, 2_000_000
    ids = rng.integers(0, V, n)
    d_out = rng.standard_normal((n, H)).astype(np.float32)
    expected = np.zeros((V, H), np.float64)
    np.add.at(expected, ids, d_out)
    d_params = np.zeros((V, H), np.float32)
    original = ids.copy()
    call = threading.Thread(target=_core.embedding_backward_dense, args=(d_params, d_out, ids, 1.0))
    call.start()
    while call.is_alive():  # (the kernel runs without the GIL)
        ids[:] = 10**12
        ids[:] = original
    call.join()
    np.testing.assert_allclose(d_params, expected, rtol=1e-4, atol=1e-3)  # (float32 sums of ~40,000 terms)


def test_outputs_that_share_memory_with_inputs_are_refused():
    a = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="c shares memory with a"):
        _core.matmul(a, np.ones((4, 4), np.float32), c=a)
    b = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="c shares memory with b"):
        _core.matmul(np.ones((4, 4), np.float32), b, c=b[:, :].reshape(4, 4))
    buf = np.arange(1, 9, dtype=np.float32)
    with pytest.raises(ValueError, match="y shares memory with x"):
        _core.axpy(buf[1:], buf[:-1], 1.0)
    _core.axpy(buf, buf, 1.0)  # the same array: each element is read before it is written
    np.testing.assert_array_equal(buf, 2 * np.arange(1, 9))
    d = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="d_params shares memory with d_out"):
        _core.embedding_backward_dense(d, d, np.array([0, 1, 2]), 1.0)


def test_misaligned_float_arrays_are_refused():
    x = np.frombuffer(bytearray(4 * 10 + 1), np.float32, offset=1)
    assert not x.flags.aligned
    with pytest.raises(ValueError, match="not aligned"):
        _core.sum_of_squares(x)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_misaligned_ids_are_read_as_they_are(dtype):
    # An id array at an odd offset is copied byte by byte (reading it through an int32_t* was
    # undefined behaviour): the same rows, and the same refusal of an id out of range.
    params = np.arange(12, dtype=np.float32).reshape(6, 2)
    itemsize = np.dtype(dtype).itemsize
    buffer = bytearray(itemsize * 5 + 1)
    ids = np.frombuffer(buffer, dtype, offset=1)
    ids[:] = [5, 0, 3, 3, 1]  # (a NumPy view of a bytearray: writable)
    assert not ids.flags.aligned
    np.testing.assert_array_equal(_core.embedding_forward(params, ids), params[[5, 0, 3, 3, 1]])
    ids[2] = 6
    with pytest.raises(IndexError, match="has 6 at flat position 2"):
        _core.embedding_forward(params, ids)


@pytest.mark.parametrize("keep_prob,scale", [(float("nan"), 2.0), (0.0, 1.0), (1.5, 1.0), (0.5, float("inf")),
                                             (0.5, float("nan"))])
def test_dropout_mask_refuses_a_keep_prob_or_scale_it_cannot_use(keep_prob, scale):
    # (a NaN keep_prob compared false with every draw: a mask of zeros, silently)
    with pytest.raises(ValueError, match="keep_prob in \\(0, 1\\] and a finite scale"):
        _core.dropout_mask(np.zeros(8, np.float32), 1, 0, keep_prob, scale)

@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("V", [2**31, 2**32 + 7])
def test_a_vocabulary_beyond_an_int_is_refused_when_h_is_empty(V, transposed):
    # With H = 0 softmax_w has no elements whatever V is: V itself was cast to int (2^32 + 7 became
    # 7, a loss of log 7; 2^31 became negative). Checked before softmax_b, so no V floats are needed.
    h = np.zeros((1, 0), np.float32)
    w = np.empty((V, 0) if transposed else (0, V), np.float32)
    with pytest.raises(ValueError, match=f"the vocabulary size V = {V} is too large"):
        _core.output_layer_forward(h, w, np.zeros(1, np.float32), np.array([5]), transposed=transposed)
    named = "rows of the embedding \\(softmax_w transposed\\)" if transposed else "columns of softmax_w"
    with pytest.raises(ValueError, match=f"{named} = {V} is too large"):
        _core.freeze_output_weights_bf16(w, transposed)


def test_lstm_backward_checks_the_kernel_before_allocating_for_it():
    # A kernel of 0 rows and 2^40 columns has no elements; a bias-sized array made to check it took 4 TiB.
    state = np.zeros((2, 3), np.float32)
    x, kernel = np.zeros((1, 2, 5), np.float32), np.empty((0, 2**40), np.float32)
    with pytest.raises(ValueError, match=r"kernel has 0 rows; expected In \+ H"):
        _core.lstm_backward(np.zeros((1, 2, 3), np.float32), None, None, x, state, state, kernel,
                            np.zeros((1, 2, 3), np.float32), np.zeros((1, 2, 3), np.float32),
                            np.zeros((1, 2, 12), np.float32))


def test_each_side_of_an_lstm_input_must_fit_an_int():
    # With B = 0 the products T * B are 0 whatever T is: T itself was cast to int and wrapped.
    x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (2**32 + 2, 0, 5), (0, 0, 0))
    kernel, bias = np.zeros((8, 12), np.float32), np.zeros(12, np.float32)
    c0 = h0 = np.zeros((0, 3), np.float32)
    with pytest.raises(ValueError, match="T = 4294967298 is too large"):
        _core.lstm_forward(np.ascontiguousarray(x), c0, h0, kernel, bias)
