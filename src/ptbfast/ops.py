"""Python face of the C++ kernels: accept what NumPy users pass, reject what would be wrong.

Conversion policy (the same for every public function):
  * float arrays must be float32; float64 is rejected with TypeError rather than silently halved
    in precision (convert with ``.astype(np.float32)``);
  * non-contiguous float arrays are copied to C order (a view such as ``a[:, ::2]`` is accepted);
  * ids may be any integer dtype (int32 and int64 are used as they are, others become int64);
    float or bool ids are a TypeError, ids outside ``[0, V)`` an IndexError.
"""

from __future__ import annotations

import numpy as np

from ptbfast import _core


def as_float32(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.float32:
        raise TypeError(
            f"{name} must be float32, got {array.dtype} "
            "(ptbfast computes in float32: convert with .astype(np.float32))"
        )
    return np.asarray(array, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)


def as_ids(ids, name: str = "ids") -> np.ndarray:
    if not isinstance(ids, np.ndarray) and np.size(ids) == 0:
        ids = np.asarray(ids, dtype=np.int64)  # NumPy makes [] float64; an empty list of ids is fine
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got {ids.dtype}")
    if ids.dtype not in (np.int32, np.int64):
        if ids.dtype.kind == "u" and ids.size and ids.max() > np.iinfo(np.int64).max:
            raise IndexError(f"{name} has values beyond int64")
        ids = ids.astype(np.int64)
    return np.asarray(ids, order="C")


def embedding_lookup(params, ids) -> np.ndarray:
    """``tf.nn.embedding_lookup(params, ids)``: the rows of ``params`` [V, H] picked by ``ids``.

    ``ids`` of any shape gives ``ids.shape + (H,)``; for the language model, ids ``[batch, steps]``
    become vectors ``[batch, steps, H]``.
    """
    params = as_float32(params, "params")
    if params.ndim != 2:
        raise ValueError(f"params must be a [V, H] matrix, got shape {params.shape}")
    return _core.embedding_forward(params, as_ids(ids))


def embedding_lookup_backward(d_out, ids, vocab_size: int) -> np.ndarray:
    """Dense gradient of ``embedding_lookup`` w.r.t. params: ``d_out`` scatter-added into [V, H]."""
    ids = as_ids(ids)
    d_out = as_float32(d_out, "d_out")
    d_params = np.zeros((vocab_size, d_out.shape[-1] if d_out.ndim else 0), dtype=np.float32)
    _core.embedding_backward_dense(d_params, d_out, ids)
    return d_params


def embedding_lookup_backward_sparse(d_out, ids):
    """Sparse gradient: ``(unique_ids, summed_rows)`` like TF's ``IndexedSlices`` after merging."""
    return _core.embedding_backward_sparse(as_float32(d_out, "d_out"), as_ids(ids))
