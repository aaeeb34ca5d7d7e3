"""The one way from Python into the C++ kernels (``ptbfast._core``).

Every kernel call of the model, the trainer, the tests and the benchmarks goes through here, so
one conversion policy holds everywhere:
  * float arrays must be float32; float64 is rejected with TypeError rather than silently halved
    in precision (convert with ``.astype(np.float32)``);
  * non-contiguous float inputs are copied to C order (a view such as ``a[:, ::2]`` is accepted);
    arrays updated in place must already be C-contiguous float32 (a copy would be updated instead);
  * ids may be any integer dtype (int32 and int64 are used as they are, others become int64);
    float or bool ids are a TypeError, ids outside ``[0, V)`` an IndexError.
``_core`` itself refuses anything else (tests/test_bindings.py), so a caller that bypasses this
module gets an exception, never a wrong answer.
"""

from __future__ import annotations

import numbers
import operator
import os
import numpy as np

from ptbfast import _openblas

_openblas.load()
from ptbfast import _core  # noqa: E402 (after the library it links)

# At most this many logits exist at once in the output layer (16 MiB; src/cpp/kernels.h).
OUTPUT_BLOCK_FLOATS: int = _core.OUTPUT_BLOCK_FLOATS

# How bf16 products may run: "auto", or a kernel of the bf16 GEMM table by name (src/cpp/gemm/bf16/,
# in the order "auto" tries them; BF16_KERNELS_HERE: those this CPU and build can run).
BF16_KERNELS = tuple(_core.bf16_product_names())
BF16_KERNELS_HERE = tuple(_core.usable_bf16_product_names())
BF16_PRODUCTS = ("auto", *BF16_KERNELS)
# The kernels that multiply by a B packed once (pack_bf16), as the model's weights are.
BF16_PACKED_B_KERNELS = tuple(_core.BF16_PACKED_B_KERNELS)


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


def _is_transposed_view(a: np.ndarray) -> bool:
    """A matrix that is the ``.T`` of a C-contiguous one (the tied embedding's [H, V] view): the
    kernels read it in place, as its transpose, instead of copying it to C order."""
    return a.ndim == 2 and not a.flags.c_contiguous and a.T.flags.c_contiguous


def _matrix(x, name: str):
    """(C-contiguous float32 array, transposed): ``x`` itself, or where ``x`` is a transposed view of
    a C-contiguous matrix, that matrix, which the kernels read in place as its transpose."""
    x = np.asarray(x)
    if _is_transposed_view(x):
        return as_float32(x.T, name), True
    return as_float32(x, name), False


def _in_place(array, name: str) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.dtype != np.float32 or not array.flags.c_contiguous:
        raise TypeError(f"{name} is updated in place and must be a C-contiguous float32 array")
    if not array.flags.writeable:  # (here: the kernel's message would name its own argument)
        raise ValueError(f"{name} is updated in place and is read-only")
    return array


def checked_count(value, name: str, minimum: int = 0) -> int:
    """A count or size from the caller as an int >= ``minimum``, or TypeError/ValueError naming it
    (4.7 rows is an error, not 4; NumPy's integers and 0-d integer arrays are integers)."""
    try:
        if isinstance(value, (bool, np.bool_)):  # (operator.index takes True as 1)
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


# ---- embedding (src/cpp/embedding.cpp) ----------------------------------------------------------

def embedding_lookup(params, ids) -> np.ndarray:
    """``tf.nn.embedding_lookup(params, ids)``: the rows of ``params`` [V, H] picked by ``ids``.

    ``ids`` of any shape gives ``ids.shape + (H,)``; for the language model, ids ``[batch, steps]``
    become vectors ``[batch, steps, H]``.
    """
    params = as_float32(params, "params")
    if params.ndim != 2:
        raise ValueError(f"params must be a [V, H] matrix, got shape {params.shape}")
    return _core.embedding_forward(params, as_ids(ids))


def scatter_add(dense, ids, rows, scale: float = 1.0) -> None:
    """``dense[ids[k]] += scale * rows[k]`` for every k, in place; rows of one id are added in
    position order, so the bits do not depend on the thread count."""
    _core.embedding_backward_dense(_in_place(dense, "dense"), as_float32(rows, "rows"), as_ids(ids), scale)


def embedding_lookup_backward(d_out, ids, vocab_size: int) -> np.ndarray:
    """Dense gradient of ``embedding_lookup`` w.r.t. params: ``d_out`` scatter-added into [V, H]."""
    d_out = as_float32(d_out, "d_out")
    d_params = np.zeros((checked_count(vocab_size, "vocab_size"), d_out.shape[-1] if d_out.ndim else 0), np.float32)
    scatter_add(d_params, ids, d_out)
    return d_params


def merge_duplicate_ids(ids, rows):
    """``(unique_ids ascending, summed_rows)``: the rows of each id summed, in position order."""
    return _core.embedding_backward_sparse(as_float32(rows, "rows"), as_ids(ids))


# ---- LSTM (src/cpp/lstm.cpp) ----------------------------------------------------------------------

def lstm_forward(x, c0, h0, kernel, bias, forget_bias: float = 0.0, bf16: bool = False, frozen=None):
    """One LSTM layer over T steps, time-major x [T, B, In]: ``(h_all, c_all, gates)``.
    ``bf16``: x must already be rounded (:func:`round_bf16`); the kernel rounds the weights for its
    products (into scratch fp32 needs too) and h as it is made. ``frozen``: this kernel's packs from
    :func:`freeze_lstm_weights_bf16`, for many calls with the same weights (the same results)."""
    return _core.lstm_forward(as_float32(x, "x"), as_float32(c0, "c0"), as_float32(h0, "h0"),
                              as_float32(kernel, "kernel"), as_float32(bias, "bias"), forget_bias, bf16, frozen)


def freeze_lstm_weights_bf16(kernel, input_size: int, rounded_copies: bool = False):
    """An LSTM kernel [input_size + H, 4H] packed once in bf16 for :func:`lstm_forward`'s ``frozen``
    (its Wx, and each time-loop thread's columns of Wh), as each call would pack them; only where
    the CPU's bf16 products take packed weights (otherwise it holds nothing). ``rounded_copies``:
    where the products are SGEMMs instead, the weights rounded to bf16 once, as each call would
    round them (as much memory as the kernel; for calls of one step each, such as generation's,
    which would round a copy of the kernel for every step). Copies: changing ``kernel`` afterwards
    is not seen through them."""
    return _core.freeze_lstm_weights_bf16(as_float32(kernel, "kernel"), checked_count(input_size, "input_size"),
                                          bool(rounded_copies))


def lstm_backward(d_h_all, d_c_T, d_h_T, x, c0, h0, kernel, h_all, c_all, gates, bf16: bool = False):
    """Backward through time: ``(dx, dc0, dh0, dkernel, dbias)``; ``d_c_T``/``d_h_T`` may be None.
    ``bf16``: the same flag, x and kernel as the forward."""
    optional = [None if a is None else as_float32(a, name) for a, name in ((d_c_T, "d_c_T"), (d_h_T, "d_h_T"))]
    return _core.lstm_backward(as_float32(d_h_all, "d_h_all"), *optional, as_float32(x, "x"),
                               as_float32(c0, "c0"), as_float32(h0, "h0"), as_float32(kernel, "kernel"),
                               as_float32(h_all, "h_all"), as_float32(c_all, "c_all"), as_float32(gates, "gates"),
                               bf16)


# ---- output layer (src/cpp/output_layer.cpp) -------------------------------------------------------

def _output_weights(w):
    """(array for the kernel, transposed): softmax_w [H, V] as it is, or a transposed view of a
    C-contiguous [V, H] (the tied embedding's ``.T``) read in place by the kernel, without a copy."""
    return _matrix(w, "softmax_w")


def output_layer_loss(h, w, b, targets, block_rows: int = 0, block_columns: int = 0, bf16: bool = False,
                      w_is_bf16: bool = False, frozen=None):
    """``(total, losses [N])``: softmax cross-entropy of ``h @ w + b`` against ``targets``, the
    logits made a block at a time (block sizes 0: chosen by the kernel). ``w`` is [H, V].
    ``bf16``: h must already be rounded; the kernel rounds w for the product, a piece at a time,
    unless ``w_is_bf16`` says that w already holds bf16 values (:func:`round_bf16` of the weights,
    made once for many calls): then it multiplies w as it is, in whole blocks, as fp32 does; or
    ``frozen`` (:func:`freeze_output_weights_bf16` of w, made once for many calls): the products
    read it instead of packing w."""
    w, transposed = _output_weights(w)
    return _core.output_layer_forward(as_float32(h, "h"), w, as_float32(b, "softmax_b"), as_ids(targets, "targets"),
                                      block_rows, transposed, block_columns, bf16, bf16 and w_is_bf16, frozen)


def freeze_output_weights_bf16(w):
    """``w`` [H, V] (or the tied embedding's transposed view) packed once in bf16 for
    :func:`output_layer_loss`'s ``frozen`` (half the bytes of a rounded float32 copy), or None where
    no kernel here multiplies packed weights (then :func:`round_bf16` of w with ``w_is_bf16``).
    A copy: changing ``w`` afterwards is not seen through it."""
    w, transposed = _output_weights(w)
    return _core.freeze_output_weights_bf16(w, transposed)


def output_layer_loss_and_grads(h, w, b, targets, d_loss: float, block_rows: int = 0, block_columns: int = 0,
                                bf16: bool = False):
    """``(total, losses, dh, dw, db)``: the loss and the gradients of ``d_loss * sum(losses)``;
    ``dw`` has ``w``'s shape [H, V] (a transposed view when ``w`` is one). ``bf16``: h must already
    be rounded; the kernel rounds w, and the logits' gradient for the dh and dw products."""
    w, transposed = _output_weights(w)
    total, losses, dh, dw, db = _core.output_layer_forward_backward(
        as_float32(h, "h"), w, as_float32(b, "softmax_b"), as_ids(targets, "targets"), d_loss, block_rows,
        transposed, block_columns, bf16)
    return total, losses, dh, (dw.T if transposed else dw), db


# ---- bf16 rounding (src/cpp/bf16.cpp) ----------------------------------------------------------------

def round_bf16(x) -> np.ndarray:
    """``x`` rounded to bfloat16 (nearest even) as float32 with the low 16 bits zero (a new array);
    a transposed view comes back as the same kind of view. NaN stays NaN, overflow becomes inf."""
    x = np.asarray(x)
    if _is_transposed_view(x):
        return _core.round_bf16(as_float32(x.T, "x")).T
    return _core.round_bf16(as_float32(x, "x"))


def round_bf16_in_place(x: np.ndarray) -> np.ndarray:
    """:func:`round_bf16` written over ``x`` (float32, C-contiguous, writable); returns ``x``. For
    arrays the caller owns: a bf16 step rounds its fresh layer inputs this way, with no copy."""
    if not isinstance(x, np.ndarray):  # (pybind11 would round a converted copy and drop it)
        raise TypeError(f"x must be a NumPy array to round in place, got {type(x).__name__}")
    if not x.flags.c_contiguous:  # (the kernel's message advises a contiguous copy: not rounded in place)
        raise ValueError("x must be C-contiguous to be rounded in place (a copy would be rounded, not x)")
    _core.round_bf16_in_place(x)
    return x


# ---- dropout's random numbers (src/cpp/dropout.cpp) ------------------------------------------------------

def _philox_arguments(shape, seed, stream) -> tuple:
    shape = tuple(operator.index(d) for d in (shape if isinstance(shape, tuple) else np.atleast_1d(shape)))
    if any(d < 0 for d in shape):
        raise ValueError(f"shape must not be negative, got {shape}")
    seed, stream = operator.index(seed), operator.index(stream)  # (a float or a string is a TypeError)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    if not 0 <= stream < 2**32:
        raise ValueError(f"stream must be in [0, 2**32), got {stream}")
    return shape, seed, stream


def random_uniform(shape, seed: int, stream: int = 0) -> np.ndarray:
    """float32 [shape] uniform in [0, 1) from Philox4x32-10's stream ``stream`` under key ``seed``:
    element k (row-major) is word (k % 64) // 16 of block 16 (k // 64) + k % 16 (counter: the block's
    two 32-bit halves, ``stream``, 0), as (word >> 8) * 2**-24; ``ptbfast.reference.random_uniform`` is
    its NumPy twin. The same bits for any thread count and instruction-set level."""
    shape, seed, stream = _philox_arguments(shape, seed, stream)
    out = np.empty(shape, np.float32)
    _core.philox_uniform(out, seed, stream)
    return out


def dropout_mask(shape, seed: int, stream: int, keep_prob: float) -> np.ndarray:
    """An inverted-dropout mask, float32 [shape]: ``1 / keep_prob`` where ``random_uniform(shape,
    seed, stream) < keep_prob`` (as float32), else 0, in one pass."""
    shape, seed, stream = _philox_arguments(shape, seed, stream)
    if isinstance(keep_prob, (bool, np.bool_)) or not isinstance(keep_prob, numbers.Real):
        raise TypeError(f"keep_prob must be a number, got {keep_prob!r}")
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")
    keep, scale = np.float32(keep_prob), 1.0 / keep_prob
    if keep == 0 or scale > float(np.finfo(np.float32).max):  # (float32 would keep nothing, or scale to inf)
        raise ValueError(f"keep_prob {keep_prob} is too small for float32 masks")
    out = np.empty(shape, np.float32)
    _core.dropout_mask(out, seed, stream, keep, np.float32(scale))
    return out


# ---- SGD update (src/cpp/sgd.cpp) --------------------------------------------------------------------

def sum_of_squares(x) -> float:
    """The sum of ``x ** 2`` over a float32 array, accumulated in double: the square of a gradient's
    norm (relative error ~1e-15 in practice, at most (16384 + n / 16384) * 2**-53; no overflow for
    finite floats). The same value for any thread count."""
    return _core.sum_of_squares(as_float32(x, "x"))


def sgd_update(param, grad, step: float) -> None:
    """``param += step * grad`` in place, one pass (step = -learning_rate, clipping folded in)."""
    param = _in_place(param, "param")
    _core.axpy(param, as_float32(grad, "grad"), step)


def sparse_sgd_update(param, grad, step: float) -> None:
    """The SGD update of an embedding by an :class:`ptbfast.grads.IndexedSlices` gradient: only the
    rows in ``grad.indices`` change (TF's ``scatter_sub``), each by ``step`` times the sum of its rows."""
    scatter_add(param, grad.indices, grad.values, step)


# ---- build and threads ----------------------------------------------------------------------------

def build_info() -> dict:
    """Compiler, ISA flags, BLAS libraries and thread counts of this build; the CPU's bf16 matrix
    features, the AMX permission and how bf16 products are computed."""
    return _core.build_info()


def set_bf16_products(name: str) -> None:
    """How bf16 products run, process-wide: "auto" (per product, the first kernel of
    :data:`BF16_KERNELS` this CPU runs that prefers the shape: from 128 rows ptbfast's AMX kernel
    where the CPU has AMX, else MKL's bf16 GEMM where an Intel CPU has AVX512-BF16 and K >= 400, else
    ptbfast's AVX512-BF16 kernel where the CPU has it; float32 SGEMM on the bf16 values elsewhere;
    the LSTM's recurrent products, their weights packed once for all steps, on the kernel of ptbfast's
    that "auto" takes for many rows, else packed SGEMMs) or one kernel by name on every product (the
    recurrent products too where it is one of ptbfast's, else packed SGEMMs):
    "amx", "mkl" (emulated on CPUs without bf16 instructions), "avx512_bf16", "sgemm", or
    "generic" (the dot-product kernels' plain C++ twin; slow). The environment variable
    PTBFAST_BF16_PRODUCTS sets it at import. Each product reads it when it starts: set it between
    kernel calls, as a call running in another thread meanwhile may run some products on each."""
    if name not in BF16_PRODUCTS:
        raise ValueError(f"bf16 products must be one of {', '.join(BF16_PRODUCTS)}, got {name!r}")
    _core.set_bf16_products(name)


def bf16_peak_gflops(kernel: str = "") -> float:
    """GFLOP/s of the instruction of a native bf16 kernel, in independent chains on all threads: the
    ceiling of that kernel. ``kernel``: "amx" (TDPBF16PS), "avx512_bf16" (VDPBF16PS), or "" for the
    fastest one this CPU runs; 0.0 where it does not run here."""
    return _core.bf16_peak_gflops(kernel)


def bf16_product_kernel(M: int, N: int, K: int) -> str:
    """The kernel an [M, K] @ [K, N] bf16 product runs on under the current setting."""
    return _core.bf16_product_kernel(checked_count(M, "M"), checked_count(N, "N"), checked_count(K, "K"))


def bf16_kernel_for_rows(packed_for: str, rows: int) -> str:
    """The kernel the model multiplies ``rows`` rows by weights packed for ``packed_for`` on (every
    kernel of :data:`BF16_PACKED_B_KERNELS` reads the same packs): ``packed_for``, but under "auto"
    AVX512-BF16 for one row where ``packed_for`` is AMX and the CPU has both (one row fills one of
    the 16 rows of AMX's tiles)."""
    if packed_for not in BF16_PACKED_B_KERNELS:
        raise ValueError(f"packed_for must be one of {', '.join(BF16_PACKED_B_KERNELS)}, got {packed_for!r}")
    return _core.bf16_kernel_for_rows(packed_for, checked_count(rows, "rows"))


def bf16_recurrent_kernel(rows: int) -> str:
    """The kernel the LSTM's bf16 recurrent products of ``rows`` rows (the batch) run on under the
    current setting: one of ptbfast's, on the recurrent weight packed once for all steps, or "sgemm"."""
    return _core.bf16_recurrent_kernel(checked_count(rows, "rows"))


def bf16_products() -> str:
    return _core.bf16_products()


# The most threads set_num_threads takes (more than any machine's cores; libgomp ends the process
# at counts far above it).
MAX_THREADS = _core.MAX_THREADS


def set_num_threads(n: int) -> None:
    """Threads for ptbfast's kernels: OpenMP regions started from the calling thread (other Python
    threads keep their own count) and the BLAS libraries (process-wide). ValueError outside
    ``[1, MAX_THREADS]``."""
    _core.set_num_threads(n)


def get_num_threads() -> int:
    return _core.get_num_threads()


def threads_within_limit(n: int) -> int:
    """``n``, or OMP_THREAD_LIMIT where that is lower: the count a default should take (a count
    asked for explicitly is set as asked, and :func:`fewer_threads_reason` says why it may not run)."""
    limit = build_info()["openmp_thread_limit"]  # (0: none)
    return min(n, limit) if limit else n


def fewer_threads_reason(n: int) -> str | None:
    """Why OpenMP may run ptbfast's regions on fewer than ``n`` threads (the environment's
    OMP_THREAD_LIMIT below ``n``, or OMP_DYNAMIC, which lets the runtime shrink any team by load),
    or None where neither does: then the regions a kernel called from Python starts get the ``n``
    they ask for (not a region inside another parallel region, which gets one thread, nor a
    runtime's own variables, such as LLVM's KMP_*). Results do not depend on it (the kernels split
    their work by the team they get); speed does."""
    info = build_info()
    if 0 < info["openmp_thread_limit"] < n:
        return f"OMP_THREAD_LIMIT={info['openmp_thread_limit']} caps OpenMP's teams below {n} threads"
    if info["openmp_dynamic"] and n > 1:
        return f"OMP_DYNAMIC is on: OpenMP may give a region fewer than {n} threads, by load"
    return None


def set_kernels_isa(name: str) -> None:
    """The instruction-set level ptbfast's own kernels run at, process-wide: one of
    :func:`supported_isas` ("baseline", "avx2", "avx512" in a portable build; "native" in a
    ``-march=native`` one). At import: the highest this CPU runs, or the environment variable
    PTBFAST_ISA's (a lower level, for tests and measuring)."""
    _core.set_kernels_isa(name)


def kernels_isa() -> str:
    return _core.kernels_isa()


def supported_isas() -> list:
    """The levels this build compiled the kernels for that this CPU runs, lowest first."""
    return _core.supported_isas()


# The block size below which keep_freed_memory keeps blocks by default: above large's biggest arrays
# (72 MB).
KEPT_BLOCK_BYTES = 1 << 30
# Variables through which a user sets glibc's allocator: then ptbfast leaves it as they set it.
_MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def keep_freed_memory(limit_bytes: int = KEPT_BLOCK_BYTES) -> int:
    """Blocks below ``limit_bytes`` come from glibc's heap and stay there when freed, for the next
    allocation to reuse, instead of going back to the kernel (glibc's mmap threshold, and its trim
    threshold twice that; process-wide, and glibc's own adaptive thresholds stay off afterwards). A
    training step allocates and frees the same large arrays every step; taken fresh from the kernel,
    each 4 KB of them was a page fault (large: a quarter to a third of the step). The price: free
    space inside the heap is not returned to the kernel (large fp32's peak RSS 614 -> 674 MB).

    ``import ptbfast`` calls it, unless PTBFAST_MALLOC=system or glibc's own variables
    (MALLOC_MMAP_THRESHOLD_ and the like, GLIBC_TUNABLES' glibc.malloc.*) are set. Returns the
    threshold in effect (glibc before 2.35 caps it at 32 MiB), or 0 where nothing changed: not glibc's
    malloc (musl, macOS, jemalloc or tcmalloc preloaded). A thread other than the main one allocates
    blocks above 64 MiB afresh whatever this says (its arena's heaps are at most that size)."""
    limit_bytes = operator.index(limit_bytes)
    if limit_bytes < (1 << 20):
        raise ValueError(f"limit_bytes must be at least 1 MiB (1048576), got {limit_bytes}")
    return _core.keep_freed_blocks(min(limit_bytes, 2**31 - 1))


def _set_malloc_policy_from_environment() -> None:
    name = os.environ.get("PTBFAST_MALLOC", "")
    if name == "keep" or (name == "" and not _user_set_malloc()):
        keep_freed_memory()
    elif name not in ("", "system"):
        raise ValueError(f"PTBFAST_MALLOC={name!r}: one of \"keep\" (ptbfast.ops.keep_freed_memory) or "
                         "\"system\" (the C library's own policy)")


def _user_set_malloc() -> bool:
    return any(v in os.environ for v in _MALLOC_VARIABLES) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


def set_large_sgemm_library(name: str) -> None:
    """The BLAS library for float32 products of at least SGEMM_LARGE_SIDE (64) on every side, where
    the build links both (x86_64's default): "auto" (MKL on Intel CPUs, OpenBLAS on others: each
    measured the faster there), "mkl" or "openblas". Process-wide. At import: "auto", or the
    environment variable PTBFAST_SGEMM_LARGE's. A build with one library takes its own name or "auto"."""
    _core.set_large_sgemm_library(name)


def set_one_row_products(name: str) -> None:
    """Where float32 products of one row run (batch 1: TF's test pass, a text scored; generation, a
    step a call): "auto" (ptbfast's own loops on AMD's CPUs at the AVX2 kernel level or above, where
    they measured faster than MKL; the BLAS elsewhere), "ptbfast" or "blas". Those loops take the
    LSTM's recurrent products at batch 1 and SGEMM's products of one row (the logits of a word, the
    LSTM's input product of one step). Process-wide. At import: "auto", or the environment variable
    PTBFAST_ONE_ROW_PRODUCTS's."""
    _core.set_one_row_products(name)


def one_row_products() -> str:
    """The setting of :func:`set_one_row_products` ("auto", "ptbfast" or "blas"); where "auto" runs
    them on this CPU: ``build_info()["one_row_products"]``."""
    return _core.one_row_products()


set_one_row_recurrent_products = set_one_row_products  # (their former names)
one_row_recurrent_products = one_row_products


def configure_from_environment() -> None:
    """The settings the environment asks for: PTBFAST_ISA (:func:`set_kernels_isa`),
    PTBFAST_BF16_PRODUCTS (:func:`set_bf16_products`), PTBFAST_SGEMM_LARGE
    (:func:`set_large_sgemm_library`), PTBFAST_ONE_ROW_PRODUCTS (:func:`set_one_row_products`)
    and PTBFAST_MALLOC ("keep", the default unless glibc's own malloc variables are set:
    :func:`keep_freed_memory`; "system": the C library's own policy). ``import ptbfast`` calls it; a bad value stops the import with a ValueError that names the
    variable."""
    _set_malloc_policy_from_environment()
    for variable, setter in (("PTBFAST_ISA", set_kernels_isa), ("PTBFAST_BF16_PRODUCTS", set_bf16_products),
                             ("PTBFAST_SGEMM_LARGE", set_large_sgemm_library),
                             ("PTBFAST_ONE_ROW_PRODUCTS", set_one_row_products)):
        name = os.environ.get(variable, "")
        if name:
            try:
                setter(name)
            except ValueError as error:
                raise ValueError(f"{variable}={name!r}: {error}") from None


# ---- matrix products (src/cpp/blas.h; the bf16 GEMM table in src/cpp/gemm/bf16/) ----------------------

def pack_bf16(b, kernel: str = "auto"):
    """``b`` (float32 [K, N], or a transposed view) rounded to bf16 and packed once into the layout
    ``kernel``'s instruction reads, for many :func:`matmul` products: what the model does with its
    weights. ``kernel``: one of :data:`BF16_PACKED_B_KERNELS` this CPU runs, or "auto", the one bf16
    products of many rows run on here (ValueError where that kernel takes no packed B, e.g. SGEMM:
    name one, such as "generic"). A copy: changing ``b`` afterwards is not seen through it."""
    return _core.pack_bf16(*_matrix(b, "b"), kernel)


def matmul(a, b, bf16: bool = False, out=None) -> np.ndarray:
    """``a @ b`` (float32 [M, K] and [K, N]) through ptbfast's products: SGEMM, or with ``bf16``
    (operands holding bf16 values) the current :func:`bf16_products` path, the one the model's
    kernels take. Transposed views (``w.T`` of a C-contiguous ``w``) are read in place. With ``out``
    (float32 [M, N], C-contiguous, writable): ``out += a @ b`` in place, and ``out`` is returned.
    ``b`` may be a :func:`pack_bf16` result: then the product is bf16 (``a`` rounded to bf16 for
    it) on the kernel ``b`` was packed for, whatever ``bf16`` says."""
    a, trans_a = _matrix(a, "a")
    out = None if out is None else _in_place(out, "out")
    if isinstance(b, _core.PackedBf16Matrix):
        return _core.matmul_packed(a, b, trans_a, out)
    b, trans_b = _matrix(b, "b")
    return _core.matmul(a, b, bf16, trans_a, trans_b, out)


# ---- the kernels' phase timers (src/cpp/profile.h; ptbfast.profile) ------------------------------------

def profile_enable(on: bool) -> None:
    """Start or stop the kernels' per-phase timers (ptbfast.profile)."""
    _core.profile_enable(on)


def profile_read() -> dict:
    """Seconds per kernel phase since the last read (and reset them and the section counts)."""
    return _core.profile_read()


def profile_sections() -> dict:
    """How many timed sections each kernel phase has added since the last :func:`profile_read`
    (a phase that ran has a count above 0 even where its time rounds to 0)."""
    return _core.profile_sections()


from ptbfast.grads import IndexedSlices  # noqa: E402,F401 (it lived here: old imports keep working)
