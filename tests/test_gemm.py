"""ptbfast's float32 products (src/cpp/blas.{h,cpp}): which library takes which shape, and PackedB.

* With MKL and OpenBLAS both linked (the default x86_64 build), a product at least
  SGEMM_LARGE_SIDE on every side goes to the library for large products (set_large_sgemm_library:
  "auto" is MKL on an Intel CPU, OpenBLAS on others), anything smaller to MKL: shapes either side of
  that line, on every side, are routed as said and computed within float32's summation bound
  (plain, transposed, accumulating), on each library whatever the CPU.
* blas::PackedB (the LSTM's recurrent weight) packs B for PACKED_MIN_USES products or more, and
  runs fewer unpacked: both give the product.
* Products of one row go to ptbfast's loop (src/cpp/row_product.h) where set_one_row_products says:
  plain, B transposed (tied weights' logits), op(A) a transposed column, accumulating; column
  counts either side of the loop's vectors (8), its blocks (2,048) and the threads' cache lines
  (16), row counts either side of its passes (8); the same bits at any thread count. The kernel
  itself (_core._row_product) at each instruction-set level: a w wider than the product, alpha and
  beta as BLAS's.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import ptbfast
from ptbfast import _core, ops

from helpers import ONE_ROW_SETTING, on_one_row_loops_at_thread_counts, within_summation_bound

LARGE = _core.SGEMM_LARGE_SIDE
SETTING = os.environ.get("PTBFAST_SGEMM_LARGE") or "auto"  # (what import set: restored after each change)


def _links_both() -> bool:
    try:
        ops.set_large_sgemm_library("openblas")  # (refused by a build with one library)
    except ValueError:
        return False
    finally:
        ops.set_large_sgemm_library(SETTING)
    return ptbfast.build_info()["blas"] == "mkl"


BOTH = _links_both()
EDGE = [(LARGE, LARGE, LARGE), (LARGE - 1, LARGE, LARGE), (LARGE, LARGE - 1, LARGE), (LARGE, LARGE, LARGE - 1),
        (LARGE + 1, 3 * LARGE, 2 * LARGE + 5), (1, 1000, 1000)]  # (M, K, N)


@pytest.fixture(params=["mkl", "openblas"] if BOTH else ["auto"])
def large_library(request):
    ops.set_large_sgemm_library(request.param)
    yield request.param
    ops.set_large_sgemm_library(SETTING)


# OpenBLAS hands a threaded product's jobs to ptbfast's OpenMP threads, and the jobs wait for one another:
# with a team smaller than OpenBLAS's (process-wide) thread count, job 0 waited for job 1 for ever.
_OPENBLAS_JOBS = """
import os, sys, threading
import numpy as np
from ptbfast import ops
try:
    ops.set_large_sgemm_library("openblas")
except ValueError:  # a build with one library: OpenBLAS's or none
    if ops.build_info()["blas"] != "openblas":
        sys.exit(77)
if sys.argv[1] == "other thread":  # another thread sets 8 (OpenBLAS's jobs), this one's OpenMP count stays
    t = threading.Thread(target=ops.set_num_threads, args=(8,))
    t.start()
    t.join()
else:
    ops.set_num_threads(4)  # OMP_THREAD_LIMIT=1 / OMP_DYNAMIC=true: OpenMP may give fewer
a = np.random.default_rng(0).uniform(-1, 1, (512, 384)).astype(np.float32)
b = np.random.default_rng(1).uniform(-1, 1, (384, 500)).astype(np.float32)
c = ops.matmul(a, b)  # (this shape stuck on a 2-core Zen 3 in all three cases; 256 x 300 @ 300 x 200 did not)
print(float(np.abs(c - a.astype(np.float64) @ b).max() / np.abs(a.astype(np.float64) @ b).max()))
"""


@pytest.mark.parametrize("case, env", [("other thread", {}), ("limit", {"OMP_THREAD_LIMIT": "1"}),
                                       ("limit", {"OMP_DYNAMIC": "true"})])
def test_openblas_jobs_finish_whatever_team_openmp_gives(case, env):
    done = subprocess.run([sys.executable, "-c", _OPENBLAS_JOBS, case], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    if done.returncode == 77:
        pytest.skip("this build does not link OpenBLAS")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 1e-5  # (float32 products of 384 terms against float64)


@pytest.mark.parametrize("M,K,N", EDGE)
def test_products_either_side_of_the_large_line(M, K, N, large_library):
    library = _core._sgemm_library(M, N, K)
    if M == 1 and ptbfast.build_info()["one_row_products"] == "ptbfast":
        assert library == "ptbfast"  # (products of one row: see below)
    elif BOTH:
        assert library == (large_library if min(M, N, K) >= LARGE else "mkl")
        assert ptbfast.build_info()["blas_large_products"] == large_library
    else:
        assert library == ptbfast.build_info()["blas"]
    rng = np.random.default_rng(M + K + N)
    a, b = rng.uniform(-1, 1, (M, K)).astype(np.float32), rng.uniform(-1, 1, (K, N)).astype(np.float32)
    assert within_summation_bound(ops.matmul(a, b), a, b)
    c0 = rng.uniform(-1, 1, (M, N)).astype(np.float32)
    c = c0.copy()
    ops.matmul(np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T, out=c)
    assert within_summation_bound(c, a, b, c0)


@pytest.mark.parametrize("uses", [1, _core.PACKED_MIN_USES - 1, _core.PACKED_MIN_USES, 100])
@pytest.mark.parametrize("M,K,N", [(20, 200, 800), (3, 17, 33), (0, 5, 4), (4, 0, 6)])
def test_packed_b_packs_from_enough_uses_and_gives_the_product_either_way(uses, M, K, N):
    rng = np.random.default_rng(uses + M + K + N)
    a, b = rng.uniform(-1, 1, (M, K)).astype(np.float32), rng.uniform(-1, 1, (K, N)).astype(np.float32)
    got, packed = _core._packed_matmul(a, b, uses)
    assert packed == (ptbfast.build_info()["blas"] == "mkl" and uses >= _core.PACKED_MIN_USES and M * K * N > 0)
    assert got.shape == (M, N) and within_summation_bound(got, a, b)


@pytest.mark.skipif(not BOTH, reason="a build with one BLAS library sends every product to it")
def test_auto_sends_large_products_to_mkl_on_intel_and_to_openblas_elsewhere():
    ops.set_large_sgemm_library("auto")
    try:
        intel = ptbfast.build_info()["cpu_vendor"] == "GenuineIntel"
        assert ptbfast.build_info()["blas_large_products"] == ("mkl" if intel else "openblas")
        assert _core._sgemm_library(LARGE, LARGE, LARGE) == ("mkl" if intel else "openblas")
    finally:
        ops.set_large_sgemm_library(SETTING)


def test_a_bad_library_name_is_refused():
    with pytest.raises(ValueError, match="auto"):
        ops.set_large_sgemm_library("atlas")


def test_the_environment_variable_chooses_the_library_at_import():
    code = "import ptbfast; print(ptbfast.build_info()['blas_large_products'])"
    env = {**os.environ, "PTBFAST_SGEMM_LARGE": "atlas"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0 and "PTBFAST_SGEMM_LARGE='atlas'" in done.stderr
    chosen = "openblas" if BOTH else ptbfast.build_info()["blas"]
    env["PTBFAST_SGEMM_LARGE"] = chosen
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == chosen, done.stderr


# ---- products of one row on ptbfast's loop (src/cpp/row_product.{h,cpp}) -----------------------

@pytest.mark.parametrize("K,N", [(1, 1), (1, 9), (7, 5), (8, 8), (9, 17), (16, 15), (17, 2047), (8, 2048),
                                 (33, 2049), (5, 4100), (33, 4100), (200, 801), (650, 2600)])
def test_one_row_products_on_either_route(K, N, one_row_route):
    rng = np.random.default_rng(K * 10_000 + N)
    a, b = rng.uniform(-1, 1, (1, K)).astype(np.float32), rng.uniform(-1, 1, (K, N)).astype(np.float32)
    runs = _core._one_row_sgemm_runs()
    assert within_summation_bound(ops.matmul(a, b), a, b)
    # accumulating (beta 1), op(A) a column [K, 1] read as its transpose
    c0 = rng.uniform(-1, 1, (1, N)).astype(np.float32)
    c = c0.copy()
    _core.matmul(np.ascontiguousarray(a.T), b, False, True, False, c)
    assert within_summation_bound(c, a, b, c0)
    on_loop = one_row_route == "ptbfast"
    assert _core._one_row_sgemm_runs() - runs == 2 * on_loop
    assert (_core._sgemm_library(1, N, K) == "ptbfast") == on_loop
    if min(K, N) > 1:  # B transposed (tied weights' logits; a [1, 1] or [K, 1] view is also plain)
        assert within_summation_bound(ops.matmul(a, np.ascontiguousarray(b.T).T), a, b)
        assert _core._one_row_sgemm_runs() - runs == 3 * on_loop


@pytest.mark.parametrize("transposed", [False, True])
def test_one_row_products_on_ptbfast_do_not_depend_on_the_thread_count(transposed):
    """Each element's sum is one thread's, the same arithmetic however y is split."""
    rng = np.random.default_rng(11)
    a, b = rng.uniform(-1, 1, (1, 301)).astype(np.float32), rng.uniform(-1, 1, (301, 5003)).astype(np.float32)
    b_read = np.ascontiguousarray(b.T).T if transposed else b
    results = on_one_row_loops_at_thread_counts(lambda: ops.matmul(a, b_read))
    assert within_summation_bound(results[0], a, b)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


def test_empty_products_of_one_row_are_zeros_or_empty():
    ops.set_one_row_products("ptbfast")
    try:
        np.testing.assert_array_equal(ops.matmul(np.zeros((1, 0), np.float32), np.zeros((0, 5), np.float32)),
                                      np.zeros((1, 5), np.float32))
        assert ops.matmul(np.ones((1, 4), np.float32), np.ones((4, 0), np.float32)).shape == (1, 0)
    finally:
        ops.set_one_row_products(ONE_ROW_SETTING)


@pytest.fixture(params=ops.supported_isas())
def kernel_level(request):
    """Each instruction-set level this CPU runs: the loops' AVX2 form and their plain C++ one."""
    level = ops.kernels_isa()
    ops.set_kernels_isa(request.param)
    yield request.param
    ops.set_kernels_isa(level)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("K,N", [(1, 1), (7, 3), (9, 17), (16, 33), (40, 2049), (300, 700), (5, 0), (0, 6)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)])
def test_the_loop_of_one_row_reads_a_wider_w_and_scales(K, N, alpha, beta, transposed, kernel_level):
    """_core._row_product: the kernel itself, w wider than the product (its rows ldw floats apart, as a
    gate's columns of Wh and an output-layer chunk's columns of w are), alpha and beta as BLAS's;
    beta 0 never reads y (NaN there must not show)."""
    rng = np.random.default_rng(K * 100 + N)
    x = rng.uniform(-1, 1, K).astype(np.float32)
    w = rng.uniform(-1, 1, (N + 2, K + 3) if transposed else (K, N + 5)).astype(np.float32)
    product = w[:N, :K].T if transposed else w[:, :N]  # [K, N]
    y0 = np.full(N, np.nan, np.float32) if beta == 0 else rng.uniform(-1, 1, N).astype(np.float32)
    y = y0.copy()
    _core._row_product(y, x, w, transposed, alpha, beta)
    exact = alpha * (x.astype(np.float64) @ product) + (0 if beta == 0 else beta * y0.astype(np.float64))
    size = abs(alpha) * (np.abs(x.astype(np.float64)) @ np.abs(product)) + (0 if beta == 0 else np.abs(beta * y0))
    n = K + 3  # (the sums, then scaling and adding beta * y: a few more roundings)
    assert np.all(np.abs(y - exact) <= n * 2.0**-24 / (1 - n * 2.0**-24) * size + 1e-30), kernel_level


def test_the_loop_of_one_row_with_alpha_zero_reads_neither_operand():
    x = np.ones(20, np.float32)
    w = np.full((20, 30), np.inf, np.float32)
    y = np.arange(30, dtype=np.float32)
    _core._row_product(y, x, w, False, 0.0, 0.5)
    np.testing.assert_array_equal(y, np.arange(30, dtype=np.float32) * 0.5)
    _core._row_product(y, x, w, False, 0.0, 0.0)
    np.testing.assert_array_equal(y, np.zeros(30, np.float32))


def test_the_loop_of_one_row_refuses_a_w_too_small():
    with pytest.raises(ValueError, match="first rows and columns"):
        _core._row_product(np.zeros(5, np.float32), np.zeros(3, np.float32), np.zeros((3, 4), np.float32), False,
                           1.0, 0.0)
    with pytest.raises(ValueError, match="first rows and columns"):
        _core._row_product(np.zeros(5, np.float32), np.zeros(3, np.float32), np.zeros((5, 2), np.float32), True,
                           1.0, 0.0)
