"""Property tests (hypothesis) of every public function and raw ``_core`` kernel.

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

Never a crash, a hang or memory corruption: run the file under scripts/sanitize.sh to check the
last one. NaN and Inf inside float arrays are not errors for the kernels: they propagate, row by row.

Arrays are made by NumPy from a drawn seed (fast, and it keeps hypothesis' data small); shapes,
dtypes, layouts and the kind of corruption are drawn by hypothesis. Profiles are in conftest.py:
HYPOTHESIS_PROFILE=ci (default, 25 examples per property) or fuzz (>= 10,000 cases in all). The
terminal summary line "test_fuzz: N valid and M invalid cases run" counts what ran.
"""

import collections

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib.stride_tricks import as_strided

import ptbfast
from ptbfast import _core, ops
from ptbfast import reference as ref

from helpers import f64, max_rel_error

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


# =====================================================================================================
# Valid input: same results as the NumPy reference
# =====================================================================================================

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

    # The raw dense kernel accumulates scale * scatter into an existing table (the SGD update).
    raw_ids = np.asarray(ids % V).astype(data.draw(st.sampled_from(["int32", "int64"]), label="raw id dtype"))
    table = rng.integers(-64, 65, size=(V, H)).astype(np.float32)
    scale = data.draw(st.sampled_from([1.0, -1.0, 0.5, -0.25, 2.0, 0.0]), label="scale")
    expected = table.astype(np.float64) + scale * ref.embedding_lookup_backward(d_out.astype(np.float64), raw_ids, V)
    _core.embedding_backward_dense(table, d_out, raw_ids, scale)
    np.testing.assert_array_equal(table, expected)
    ran("valid")


@given(data=st.data())
def test_lstm_matches_reference(data):
    rng = draw_rng(data)
    # T >= 8 packs the recurrent weight (MKL); a batch of 40+ with H of 10+ (B*H*4H >= 2^16) runs
    # the threaded time loop, whose unit split leaves some threads few or no units.
    T = data.draw(st.integers(0, 10), label="T")
    B = data.draw(st.one_of(st.integers(0, 6), st.integers(40, 120)), label="B")
    In, H = data.draw(st.integers(1, 40), label="In"), data.draw(st.integers(1, 40), label="H")
    scale = data.draw(st.sampled_from([0.5, 1.0, 2.0]), label="weight scale")
    forget_bias = data.draw(st.floats(-2, 2, width=32), label="forget_bias")
    x = normal(rng, (T, B, In))
    c0, h0 = normal(rng, (B, H), 0.5), normal(rng, (B, H), 0.5)
    kernel = normal(rng, (In + H, 4 * H), scale / np.sqrt(In + H))
    bias = normal(rng, (4 * H,), 0.1)

    h_all, c_all, gates = _core.lstm_forward(x, c0, h0, kernel, bias, forget_bias)
    ref_h, (ref_c_T, _), cache = ref.lstm_layer_forward(*f64(x, c0, h0, kernel, bias), forget_bias)
    assert h_all.shape == c_all.shape == (T, B, H) and gates.shape == (T, B, 4 * H)
    # Activations live in [-1, 1] (|c| a few units at most); a gate pre-activation that cancels to
    # ~1e-4 (seen: In=38, B=H=1) carries float32 rounding of its O(1) terms, so these are measured
    # against a floor of 0.1, as the model states are below.
    assert_close(h_all, ref_h, KERNEL_TOL, floor=0.1, name="h_all")
    if T:
        ref_c_all = np.stack([step.c for step in cache.cell_caches[1:]] + [ref_c_T])
        ref_gates = np.stack([np.concatenate([s.input_gate, s.candidate, s.forget_gate, s.output_gate], axis=1)
                              for s in cache.cell_caches])
        assert_close(c_all, ref_c_all, KERNEL_TOL, floor=0.1, name="c_all")
        assert_close(gates, ref_gates, KERNEL_TOL, floor=0.1, name="gates")

    d_h_all = normal(rng, (T, B, H))
    d_c_T = normal(rng, (B, H)) if data.draw(st.booleans(), label="d_c_T") else None
    d_h_T = normal(rng, (B, H)) if data.draw(st.booleans(), label="d_h_T") else None
    got = _core.lstm_backward(d_h_all, d_c_T, d_h_T, x, c0, h0, kernel, h_all, c_all, gates)
    want = ref.lstm_layer_backward(d_h_all.astype(np.float64), *(None if a is None else a.astype(np.float64)
                                                                  for a in (d_c_T, d_h_T)), cache)
    # dx and dh0 are d_gates @ W^T: sums of 4H products that can cancel far below their terms
    # (seen: one entry of -3.8e-4 from B = H = 1). Their terms are bounded by |d_gates| |W|, and
    # d_gates is dbias when T = B = 1; in general max|dbias| is the closest size we get from the API.
    terms = float(np.abs(want[4]).max(initial=0)) * float(np.abs(kernel).max(initial=0))
    for name, a, b in zip(("dx", "dc0", "dh0", "dkernel", "dbias"), got, want):
        assert a.dtype == np.float32 and a.shape == b.shape, name
        assert_close(a, b, KERNEL_TOL, floor=terms if name in ("dx", "dh0") else 0.0, name=name)
    ran("valid")


@given(data=st.data())
def test_output_layer_matches_reference(data):
    rng = draw_rng(data)
    N, H = data.draw(st.integers(0, 40), label="N"), data.draw(st.integers(1, 40), label="H")
    V = data.draw(st.integers(1, 300), label="V")
    block_rows = data.draw(st.integers(-2, 50), label="block_rows")  # <= 0: the default block
    d_loss = data.draw(st.floats(-2, 2, width=32).filter(lambda v: abs(v) >= 1e-3), label="d_loss")
    h = normal(rng, (N, H))
    w = normal(rng, (H, V), 1.0 / np.sqrt(H))
    b = normal(rng, (V,), 0.1)
    targets = rng.integers(0, V, size=N).astype(data.draw(st.sampled_from(["int32", "int64"]), label="dtype"))

    ref_losses, cache = ref.output_layer_forward(*f64(h, w, b), targets)
    total, losses = _core.output_layer_forward(h, w, b, targets, block_rows)
    # A loss is log(sum of exps) with the sum >= 1, so its float32 rounding is absolute (~1e-7):
    # measured against at least 1 when every row is confidently right and the losses are ~0.
    assert_close(losses, ref_losses, KERNEL_TOL, floor=1.0, name="losses")
    assert abs(total - ref_losses.sum()) <= KERNEL_TOL * max(1.0, abs(ref_losses.sum()))
    block_columns = data.draw(st.integers(-2, V + 2), label="block_columns")  # column chunks
    _, chunked = _core.output_layer_forward(h, w, b, targets, block_rows, block_columns=block_columns)
    assert_close(chunked, ref_losses, KERNEL_TOL, floor=1.0, name="losses in column chunks")
    chunked_grads = _core.output_layer_forward_backward(h, w, b, targets, d_loss, block_rows,
                                                        block_columns=block_columns)[2:]

    total2, losses2, dh, dw, db = _core.output_layer_forward_backward(h, w, b, targets, d_loss, block_rows)
    np.testing.assert_array_equal(losses2, losses)
    assert total2 == total
    ref_dh, ref_dw, ref_db = ref.output_layer_backward(float(d_loss), cache)
    # d_logits = d_loss * (softmax - onehot): entries carry ~1e-7 * |d_loss| of absolute rounding, so a
    # gradient that cancels (a confident row: softmax ~ onehot) is measured against that scale.
    assert_close(dh, ref_dh, KERNEL_TOL, floor=abs(d_loss) * float(np.abs(w).max()), name="dh")
    assert_close(dw, ref_dw, KERNEL_TOL, floor=abs(d_loss) * float(np.abs(h).max(initial=0)), name="dw")
    assert_close(db, ref_db, KERNEL_TOL, floor=abs(d_loss), name="db")
    for name, got, want, floor in zip(("dh", "dw", "db"), chunked_grads, (ref_dh, ref_dw, ref_db),
                                      (abs(d_loss) * float(np.abs(w).max()),
                                       abs(d_loss) * float(np.abs(h).max(initial=0)), abs(d_loss))):
        assert_close(got, want, KERNEL_TOL, floor=floor, name=f"{name} in column chunks")
    ran("valid")


@given(data=st.data())
def test_axpy_matches_numpy(data):
    rng = draw_rng(data)
    shape = draw_shape(data, max_side=9)
    alpha = data.draw(st.floats(-1e3, 1e3, width=32), label="alpha")
    y, x = normal(rng, shape), normal(rng, shape)
    expected = y.astype(np.float64) + alpha * x.astype(np.float64)
    scale = float(np.max(np.abs(y) + abs(alpha) * np.abs(x), initial=0.0))  # terms that may cancel
    _core.axpy(y, x, alpha)
    assert_close(y, expected, 1e-6, floor=scale)
    ran("valid")


any_float32_arrays = hnp.arrays(np.float32, st.integers(0, 70),
                                elements=st.floats(width=32, allow_nan=True, allow_infinity=True))


@given(name=st.sampled_from(["exp", "sigmoid", "tanh"]), x=any_float32_arrays)
def test_vecmath_on_any_float32(name, x):
    # Bounds of vecmath.h (the ones tests/test_vecmath.py enforces on a dense sweep), on any input.
    out = _core._vecmath(name, x)
    assert out.dtype == np.float32 and out.shape == x.shape
    nan = np.isnan(x)
    assert np.isnan(out[nan]).all()
    assert not np.isnan(out[~nan]).any()
    xd, got = x[~nan].astype(np.float64), out[~nan].astype(np.float64)
    with np.errstate(all="ignore"):
        if name == "exp":
            assert np.isfinite(got).all() and (got >= 0).all()
            inside = (xd > -87.3) & (xd < 88.3)
            want = np.exp(xd[inside])
            assert (np.abs(got[inside] - want) <= 1.5e-7 * want).all()
            assert (got[xd >= 88.3] > 1e38).all() and (got[xd <= -87.3] < 1.25e-38).all()  # clamped
        elif name == "sigmoid":
            want = np.where(xd >= 0, 1 / (1 + np.exp(-np.abs(xd))), np.exp(-np.abs(xd)) / (1 + np.exp(-np.abs(xd))))
            assert np.isfinite(got).all() and (got >= 0).all() and (got <= 1).all()
            assert (np.abs(got - want) <= 1.2e-7).all()
            big = want > 1e-30
            assert (np.abs(got - want)[big] <= 2e-7 * want[big]).all()
        else:
            want = np.tanh(xd)
            assert np.isfinite(got).all() and (np.abs(got) <= 1).all()
            assert (np.abs(got - want) <= 2e-7 * np.abs(want)).all()  # exact 0 at 0, odd, relative
    ran("valid")


@given(data=st.data())
def test_model_matches_reference(data):
    rng = draw_rng(data)
    V, H = data.draw(st.integers(1, 30), label="V"), data.draw(st.integers(1, 12), label="H")
    L, B, T = (data.draw(st.integers(1, 3), label="L"), data.draw(st.integers(1, 5), label="B"),
               data.draw(st.integers(0, 5), label="T"))
    forget_bias = data.draw(st.sampled_from([0.0, 1.0, -0.5]), label="forget_bias")
    seed = data.draw(st.integers(0, 2**16), label="init seed")
    fast = ptbfast.LSTMLanguageModel(V, H, L, forget_bias=forget_bias, seed=seed)
    slow = ref.NumpyLSTMLanguageModel(V, H, L, forget_bias=forget_bias, seed=seed, dtype=np.float64)
    slow.params = {k: v.astype(np.float64) for k, v in fast.params.items()}
    id_dtype = data.draw(st.sampled_from(["int32", "int64", "uint16", "list"]), label="id dtype")
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    x, y = (a.tolist() if id_dtype == "list" and T else a.astype("int64" if id_dtype == "list" else id_dtype)
            for a in (x, y))
    state = [tuple(normal(rng, (B, H), 0.3) for _ in range(2)) for _ in range(L)]
    masks = None
    if data.draw(st.booleans(), label="dropout"):
        keep = data.draw(st.sampled_from([0.35, 0.5, 0.9]), label="keep_prob")
        masks = [((rng.random((T, B, H)) < keep) / keep).astype(np.float32) for _ in range(L + 1)]

    cost, grads, new_state = fast.loss_and_grads(x, y, state, masks)
    ref_cost, ref_grads, ref_state = slow.loss_and_grads(
        np.asarray(x), np.asarray(y), [(c.astype(np.float64), h.astype(np.float64)) for c, h in state], masks)
    assert abs(cost - ref_cost) <= 1e-5 * max(1.0, abs(ref_cost))
    assert list(grads) == list(fast.params)
    for name, g in grads.items():
        assert g.dtype == np.float32 and g.shape == fast.params[name].shape, name
        assert max_rel_error(g, ref_grads[name]) <= MODEL_TOL, name
    # c = c_prev * f + i * j can cancel: with B * H = 1 the only entry may be ~1e-4 while its float32
    # rounding is that of terms ~0.1-1, so a state is measured against at least 0.1.
    for (c, h), (rc, rh) in zip(new_state, ref_state):
        assert_close(c, rc, KERNEL_TOL, floor=0.1, name="c")
        assert_close(h, rh, KERNEL_TOL, floor=0.1, name="h")
    ran("valid")


# =====================================================================================================
# Invalid input: the documented exception, nothing else
# =====================================================================================================

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
    else:
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
def test_model_rejects_bad_input(data):
    rng = draw_rng(data)
    V, H, L = data.draw(st.integers(2, 12), label="V"), data.draw(st.integers(1, 5), label="H"), 2
    B, T = data.draw(st.integers(1, 4), label="B"), data.draw(st.integers(1, 4), label="T")
    model = ptbfast.LSTMLanguageModel(V, H, L, seed=1)
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    state = [tuple(normal(rng, (B, H), 0.3) for _ in range(2)) for _ in range(L)]
    masks = None
    kind = data.draw(st.sampled_from(["ids dtype", "ids range", "ids shape", "ids python", "empty batch",
                                      "state count", "state shape", "state dtype", "state python", "state pair",
                                      "masks count", "masks shape", "masks dtype", "nan state",
                                      "nan mask", "nan param"]), label="corruption")
    which = data.draw(st.sampled_from(["x", "y"]), label="which ids")
    ids = {"x": x, "y": y}
    if kind == "ids dtype":
        dtype = data.draw(st.sampled_from(["float32", "bool", "complex64", "object"]), label="dtype")
        ids[which], exc = ids[which].astype(dtype), TypeError
    elif kind == "ids range":
        ids[which], exc = out_of_range(data, ids[which], V), IndexError
    elif kind == "ids shape":
        ids[which], exc = data.draw(st.sampled_from([ids[which][:, :-1], ids[which][0], ids[which][None],
                                                     ids[which][..., None]])), ValueError
    elif kind == "ids python":
        ids[which], exc = data.draw(st.sampled_from([None, "abc", 1.5])), TypeError
    elif kind == "empty batch":
        ids, state, exc = {"x": x[:0], "y": y[:0]}, model.initial_state(0), ValueError
    elif kind == "state count":
        state, exc = data.draw(st.sampled_from([state[:1], state + state[:1], []])), ValueError
    elif kind == "state shape":
        c, h = state[0]
        state[0], exc = data.draw(st.sampled_from([(c[:, :-1], h), (c, h[:-1]), (c[None], h),
                                                   (c, np.zeros((B, H + 1), np.float32))])), ValueError
    elif kind == "state dtype":
        c, h = state[-1]
        state[-1], exc = (c.astype(data.draw(st.sampled_from(["float64", "float16", "int32"]))), h), TypeError
    elif kind == "state python":
        # not a sequence, pairs that are not iterable: TypeError; pairs of floats (shape ()): ValueError
        state, exc = data.draw(st.sampled_from([(None, TypeError), (3, TypeError), ([None] * L, TypeError),
                                                ([(1.0, 2.0)] * L, ValueError)]))
    elif kind == "state pair":
        c, h = state[0]
        state[0], exc = data.draw(st.sampled_from([(c,), (c, h, h)])), ValueError
    elif kind == "masks count":
        masks, exc = [np.ones((T, B, H), np.float32)] * data.draw(st.sampled_from([0, 1, L, L + 2])), ValueError
    elif kind == "masks shape":
        masks, exc = [np.ones((T, B, H), np.float32)] * L + [np.ones((B, T, H + 1), np.float32)], ValueError
    elif kind == "masks dtype":  # the float32 policy: strings, float64 and bool masks are TypeErrors
        dtype = data.draw(st.sampled_from(["U1", "float64", "bool"]), label="mask dtype")
        masks, exc = [np.ones((T, B, H), np.float32)] * L + [np.ones((T, B, H), dtype)], TypeError
    elif kind == "nan state":  # a non-finite loss is a FloatingPointError that names the cause
        c, h = state[0]
        c = c.copy()
        c[data.draw(st.integers(0, B - 1)), data.draw(st.integers(0, H - 1))] = np.nan
        state[0], exc = (c, h), FloatingPointError
    elif kind == "nan mask":
        masks = [np.ones((T, B, H), np.float32) for _ in range(L + 1)]
        masks[data.draw(st.integers(0, L))][data.draw(st.integers(0, T - 1)), 0, 0] = np.nan
        exc = FloatingPointError
    else:
        # (NaN, not Inf: an infinite pre-activation saturates a gate to a finite value.)
        name = data.draw(st.sampled_from(["lstm_0/bias", "lstm_1/kernel", "softmax_b"]), label="param")
        model.params[name].flat[0] = np.nan
        exc = FloatingPointError
    call = data.draw(st.sampled_from(["loss", "loss_and_grads", "loss_and_sparse_grads"]), label="method")
    with pytest.raises(exc):
        getattr(model, call)(ids["x"], ids["y"], state, masks)
    ran("invalid")


@given(data=st.data())
def test_non_finite_values_stay_in_their_rows(data):
    # NaN and Inf are data, not errors, for the kernels: they must not crash anything, and must not
    # leak into the results of other (independent) rows of the batch.
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
        clean = _core.lstm_forward(x, c0, h0, kernel, bias)
        b = data.draw(st.integers(0, B - 1), label="row")
        where = data.draw(st.sampled_from(["x", "c0", "h0"]), label="where")
        if where == "x":
            x[data.draw(st.integers(0, T - 1)), b, data.draw(st.integers(0, In - 1))] = bad
        else:
            {"c0": c0, "h0": h0}[where][b, data.draw(st.integers(0, H - 1))] = bad
        h_all, c_all, gates = _core.lstm_forward(x, c0, h0, kernel, bias)
        others = [r for r in range(B) if r != b]
        for got, want in zip((h_all, c_all, gates), clean):
            assert np.isfinite(got[:, others]).all()
            assert max_rel_error(got[:, others], want[:, others]) <= 1e-6
        _core.lstm_backward(np.ones_like(h_all), None, None, x, c0, h0, kernel, h_all, c_all, gates)  # no crash
    elif kernel_name == "output layer":
        N, H, V = data.draw(st.integers(2, 9)), data.draw(st.integers(1, 6)), data.draw(st.integers(1, 40))
        h, w, b = normal(rng, (N, H)), normal(rng, (H, V)), normal(rng, (V,))
        targets = rng.integers(0, V, N)
        _, clean = _core.output_layer_forward(h, w, b, targets)
        r = data.draw(st.integers(0, N - 1), label="row")
        h[r, data.draw(st.integers(0, H - 1))] = bad
        _, losses = _core.output_layer_forward(h, w, b, targets, data.draw(st.integers(0, 4)))
        others = [k for k in range(N) if k != r]
        assert max_rel_error(losses[others], clean[others]) <= 1e-6
        _core.output_layer_forward_backward(h, w, b, targets, 1.0, 0)  # no crash
    else:
        n = data.draw(st.integers(1, 40))
        y, x = normal(rng, (n,)), normal(rng, (n,))
        k = data.draw(st.integers(0, n - 1))
        x[k] = bad
        expected = y.astype(np.float64) + 0.5 * x.astype(np.float64)
        _core.axpy(y, x, 0.5)
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
