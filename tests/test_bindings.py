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
