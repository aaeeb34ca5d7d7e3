"""What the property tests (hypothesis, tests/test_fuzz_*.py) share: the contract, tolerances,
the strategies that make valid and invalid arguments, and the counter of cases run.

Random *valid* input (sizes including 0, 1 and odd ones, large ids, every id dtype) must match the
NumPy reference (``ptbfast.reference``) within the tolerances of the other test files: 1e-5 for a
kernel, 1e-4 for the whole model, in the max-norm relative error of tests/helpers.py.

Random *invalid* input must raise the exception class the API documents, and nothing else:

  TypeError           wrong Python type (list, None, str, ...) or dtype (float64, int, bool, object,
                      complex, byte-swapped) where the raw kernels or the float32 policy want another;
  ValueError          wrong rank or shape, a non-C-contiguous or read-only array for a raw kernel,
                      sizes beyond the kernels' int range, an inconsistent batch or state;
  IndexError          an id outside [0, V) (negative, V, int32/int64 extremes, uint64 beyond int64);
  MemoryError         (or NumPy's ValueError "array is too big") for a result that cannot be allocated;
  FloatingPointError  a model loss that is NaN or Inf.

Never a crash, a hang or memory corruption: run the files under scripts/sanitize.sh to check the
last one. NaN and Inf inside float arrays are not errors for the kernels: they propagate, row by row.

Public kernels are called through ``ptbfast.ops`` (the one way into ``_core``); only properties
about what the raw binding refuses call ``_core`` itself, and say so.

Arrays are made by NumPy from a drawn seed (fast, and it keeps hypothesis' data small); shapes,
dtypes, layouts and the kind of corruption are drawn by hypothesis. Profiles are in conftest.py:
HYPOTHESIS_PROFILE=ci (default, 25 examples per property) or fuzz (>= 10,000 cases in all). Every
property counts the examples it ran to the end in :data:`CASES`; conftest.py prints the totals as
the terminal summary line "test_fuzz_*: N valid and M invalid cases run".
"""

import collections

import numpy as np
from hypothesis import strategies as st
from numpy.lib.stride_tricks import as_strided

from helpers import f64

KERNEL_TOL = 1e-5
MODEL_TOL = 1e-4

CASES = collections.Counter()  # examples that ran to the end, "valid" / "invalid" (conftest prints it)


def ran(kind: str) -> None:
    CASES[kind] += 1


# ---- helpers ---------------------------------------------------------------------------------------

def draw_rng(data) -> np.random.Generator:
    return np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))


def normal(rng, shape, scale=1.0) -> np.ndarray:
    return np.asarray(rng.standard_normal(shape) * scale, dtype=np.float32)  # 0-d stays an array


def ints(rng, low, high, shape, dtype="int64") -> np.ndarray:
    """Integers in [low, high) of the given shape and dtype (a 0-d array for shape ())."""
    return np.asarray(rng.integers(low, high, size=shape, dtype=np.int64)).astype(dtype)


def draw_shape(data, min_rank=0, max_rank=3, max_side=6, label="shape") -> tuple:
    rank = data.draw(st.integers(min_rank, max_rank), label=f"{label} rank")
    return tuple(data.draw(st.lists(st.integers(0, max_side), min_size=rank, max_size=rank), label=label))


def assert_close(got, want, tol, floor=0.0, name=""):
    """max|got - want| <= tol * max(max|want|, floor): max_rel_error, except that a result which
    cancels to far below the size of the terms that made it (``floor``) is measured against them."""
    got64, want64 = f64(got, want)
    assert got64.shape == want64.shape, (name, got64.shape, want64.shape)
    if want64.size == 0:
        return
    scale = max(float(np.max(np.abs(want64))), floor)
    diff = float(np.max(np.abs(got64 - want64)))
    assert diff <= tol * scale if scale > 0 else diff == 0, (name, diff, scale)


def nonfinite_values():
    return st.sampled_from([np.nan, np.inf, -np.inf])


# ---- bad variants of arguments -----------------------------------------------------------------------

BAD_FLOAT_DTYPES = ["float64", "float16", "int32", "int64", "uint8", "bool", "complex64", "object", ">f4"]
BAD_ID_DTYPES = ["float32", "float64", "bool", "int8", "int16", "uint8", "uint32", "uint64", "complex64",
                 "object", ">i4", ">i8", "<U3"]
NOT_ARRAYS = [None, "abc", 3, 1.5, {"a": 1}, (1, 2), object()]  # plus the array as a nested list
NOT_FLOATS = [None, "0.5", [0.5], 1j, {"a": 1}, np.zeros(2)]
NOT_INTS = [None, "3", 1.5, [3], 2**31, -(2**31) - 1, 2**70]


def non_contiguous(data, arr: np.ndarray, how: str) -> np.ndarray:
    """The values of ``arr`` in a layout that is not C-contiguous (``arr`` must have a side >= 2)."""
    axes = [a for a, n in enumerate(arr.shape) if n >= 2]
    axis = data.draw(st.sampled_from(axes), label="axis")
    if how == "strided":  # every other element of a twice-as-long axis
        big_shape = list(arr.shape)
        big_shape[axis] *= 2
        index = [slice(None)] * arr.ndim
        index[axis] = slice(None, None, 2)
        view = np.zeros(big_shape, arr.dtype)[tuple(index)]
        view[...] = arr
    elif how == "zero-stride":  # one element repeated without memory (as_strided / broadcast_to)
        strides = list(arr.strides)
        strides[axis] = 0
        view = as_strided(arr, arr.shape, strides, writeable=False)
    else:  # "transposed": Fortran order (needs two sides >= 2)
        view = np.asfortranarray(arr)
    assert not view.flags.c_contiguous
    return view


def layouts(arr: np.ndarray) -> list:
    """The non-C-contiguous layouts ``arr`` can have (NumPy flags any layout of an empty array, or of
    one with a single side >= 2, C-contiguous when the strides agree on that side)."""
    if arr.size == 0:
        return []
    long_sides = sum(n >= 2 for n in arr.shape)
    return (["strided", "zero-stride"] if long_sides else []) + (["transposed"] if long_sides >= 2 else [])


def other_rank(data, arr: np.ndarray) -> np.ndarray:
    choices = ["add axis", "0-d"] + (["flatten"] if arr.ndim >= 2 else [])
    if arr.ndim == 0:
        choices.remove("0-d")
    how = data.draw(st.sampled_from(choices), label="rank change")
    if how == "add axis":
        return arr[None] if data.draw(st.booleans(), label="leading") else arr[..., None]
    if how == "flatten":
        return arr.reshape(-1)
    return np.array(arr.reshape(-1)[0] if arr.size else 0, dtype=arr.dtype)


def other_shape(data, rng, arr: np.ndarray, axes) -> np.ndarray:
    """Same rank, one of ``axes`` longer or shorter (the axes the kernel checks against the others)."""
    axis = data.draw(st.sampled_from(axes), label="axis")
    deltas = [d for d in (-2, -1, 1, 2, 5) if arr.shape[axis] + d >= 0]
    shape = list(arr.shape)
    shape[axis] += data.draw(st.sampled_from(deltas), label="delta")
    return normal(rng, shape).astype(arr.dtype)


def bad_float(data, rng, arr, *, axes=(), rank=True, layout=True, readonly=False, none_ok=False):
    """A bad variant of float32 argument ``arr`` of a raw kernel, and the exception it must raise."""
    kinds = ["dtype", "not an array", "nested list"]
    if rank:
        kinds.append("rank")
    if axes:
        kinds.append("shape")
    if layout:
        kinds += layouts(arr)
    if readonly:
        kinds.append("read-only")
    kind = data.draw(st.sampled_from(kinds), label="corruption")
    if kind == "dtype":
        return arr.astype(data.draw(st.sampled_from(BAD_FLOAT_DTYPES), label="dtype")), TypeError
    if kind == "not an array":
        values = [v for v in NOT_ARRAYS if not (none_ok and v is None)]
        return data.draw(st.sampled_from(values), label="value"), TypeError
    if kind == "nested list":
        return arr.tolist(), TypeError
    if kind == "rank":
        return other_rank(data, arr), ValueError
    if kind == "shape":
        return other_shape(data, rng, arr, axes), ValueError
    if kind == "read-only":
        arr = arr.copy()
        arr.flags.writeable = False
        return arr, ValueError
    return non_contiguous(data, arr, kind), ValueError


def out_of_range(data, ids: np.ndarray, V: int, lower_only=False) -> np.ndarray:
    """``ids`` with one entry moved outside [0, V) (outside [0, 2**63 - 1) if ``lower_only``)."""
    info = np.iinfo(ids.dtype)
    candidates = [-1, -2, V, V + 1, V + 977, -(2**31), 2**31 - 1, -(2**63), 2**63 - 1, 2**40]
    bad = [v for v in candidates if info.min <= v <= info.max
           and (v < 0 or v == 2**63 - 1 if lower_only else not 0 <= v < V)]
    ids = ids.copy()
    position = data.draw(st.integers(0, ids.size - 1), label="position")
    ids.flat[position] = data.draw(st.sampled_from(bad), label="bad id")
    return ids


def bad_ids(data, ids, V, *, lower_only=False, shape_checked=False):
    """A bad variant of int32/int64 ids for a raw kernel, and the exception it must raise."""
    kinds = ["dtype", "not an array", "nested list"]
    if ids.size:
        kinds.append("range")
    kinds += layouts(ids)
    if shape_checked:
        kinds.append("rank")
    kind = data.draw(st.sampled_from(kinds), label="corruption")
    if kind == "dtype":
        dtype = data.draw(st.sampled_from(BAD_ID_DTYPES), label="dtype")
        return ids.astype(dtype), TypeError
    if kind == "not an array":
        return data.draw(st.sampled_from(NOT_ARRAYS), label="value"), TypeError
    if kind == "nested list":
        return ids.tolist(), TypeError
    if kind == "range":
        return out_of_range(data, ids, V, lower_only), IndexError
    if kind == "rank":
        return other_rank(data, ids), ValueError
    return non_contiguous(data, ids, kind), ValueError
