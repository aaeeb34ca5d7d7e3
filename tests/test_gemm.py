"""ptbfast's float32 products (src/cpp/blas.{h,cpp}): which library takes which shape, and PackedB.

* With MKL and OpenBLAS both linked (the default x86_64 build), a product at least
  SGEMM_LARGE_SIDE on every side goes to the library for large products (set_large_sgemm_library:
  "auto" is MKL on an Intel CPU, OpenBLAS on others), anything smaller to MKL: shapes either side of
  that line, on every side, are routed as said and computed within float32's summation bound
  (plain, transposed, accumulating), on each library whatever the CPU.
* blas::PackedB (the LSTM's recurrent weight) packs B for PACKED_MIN_USES products or more, and
  runs fewer unpacked: both give the product.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import ptbfast
from ptbfast import _core, ops

from helpers import within_summation_bound

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


@pytest.mark.parametrize("M,K,N", EDGE)
def test_products_either_side_of_the_large_line(M, K, N, large_library):
    library = _core._sgemm_library(M, N, K)
    if BOTH:
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
