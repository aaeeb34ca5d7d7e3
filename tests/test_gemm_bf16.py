"""The bf16 GEMM (src/cpp/gemm/bf16/): every kernel of its table that this CPU runs, by name.

* every kernel is within the float32 summation bound of the float64 product of the rounded
  operands, element by element: |c - exact| <= gamma(K + 1) * (|c0| + sum_k |a_k b_k|) with
  gamma(n) = n u / (1 - n u), u = 2^-24 (a bound for any order of the sums, so it holds for SGEMM,
  MKL and the dot-product kernels alike);
* the AVX512-BF16 kernel equals the generic twin bit for bit, which runs everywhere, so packing,
  blocking and tails are tested on every machine, and the generic twin equals a plain NumPy loop of
  the same arithmetic (helpers.pair_products_twin);
* AMX's TDPBF16PS rounds in a way no simple model reproduces: measured on an Intel Xeon (family 6
  model 207), it is neither of the two fma orders of a pair, nor a pair or a 16-pair chunk summed
  exactly and rounded once (to nearest, to zero or to odd), though the last is closest (86 % of the
  elements at K = 64), and it flushes a denormal product to +0 whatever its sign. So the AMX kernel
  is held to the summation bound, like SGEMM and MKL;
* the dot-product kernels read denormals as zero and flush denormal results, as VDPBF16PS does;
* results do not depend on the number of threads.

Shapes: size 1, empty on each side, odd K (a padded pair), N not a multiple of 16 or 32 (a last
panel of up to 16 columns, one vector, or of 17 to 31, two), M not a multiple of the 8-row
micro-kernel or of AMX's 32-row blocks, M of 4 rows or fewer (2 or 4 whole panels at a time, then
what is left one at a time), K over one 128-pair block (the dot-product kernels) and over
several 512-pair blocks (AMX).
"""

import numpy as np
import pytest

import ptbfast
from ptbfast import ops

from helpers import pair_products_twin, within_summation_bound

# ptbfast's own kernels, on the packed operands: the generic twin, AVX512-BF16 and AMX.
PACKED_KERNELS_HERE = [k for k in ops.BF16_PACKED_B_KERNELS if k in ops.BF16_KERNELS_HERE]
NOT_HERE = [k for k in ops.BF16_KERNELS if k not in ops.BF16_KERNELS_HERE]

SHAPES = [(1, 1, 1), (0, 5, 3), (3, 0, 4), (4, 7, 0), (1, 2, 1), (5, 3, 7), (17, 33, 65), (8, 31, 32),
          (9, 16, 33), (11, 45, 49), (6, 64, 16), (1, 45, 200), (3, 33, 97), (2, 300, 130), (4, 20, 64),
          (20, 200, 800), (33, 651, 130), (130, 257, 97),
          (300, 2100, 70)]  # (M, K, N); the last: AMX's row chunks and K blocks (256 rows, 512 pairs)


@pytest.fixture
def using():
    """using(name): run bf16 products on that kernel for the rest of the test."""
    before = ops.bf16_products()
    yield ops.set_bf16_products
    ops.set_bf16_products(before)


def bf16(rng, *shape):
    return ops.round_bf16(rng.uniform(-2, 2, shape).astype(np.float32))


@pytest.mark.parametrize("kernel", ops.BF16_KERNELS_HERE)
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_each_kernel_is_within_the_summation_bound(kernel, M, K, N, using):
    using(kernel)
    rng = np.random.default_rng(M * 10_000 + K * 100 + N)
    a, b = bf16(rng, M, K), bf16(rng, K, N)
    got = ops.matmul(a, b, bf16=True)
    assert got.shape == (M, N) and got.dtype == np.float32
    assert within_summation_bound(got, a, b)
    # Transposed operands (read in place) and accumulation into C give the same kind of result.
    c0 = rng.uniform(-1, 1, (M, N)).astype(np.float32)
    c = c0.copy()
    assert ops.matmul(np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T, bf16=True, out=c) is c
    assert within_summation_bound(c, a, b, c0)


@pytest.mark.parametrize("kernel", PACKED_KERNELS_HERE)
@pytest.mark.parametrize("M", [1, 33])
def test_a_large_b_is_packed_a_block_of_columns_at_a_time(kernel, M, using):
    # K = 20,000 pairs 10,000 words a column: a 4 MB block holds 96 columns (gemm_bf16.h's
    # for_column_blocks), so N = 200 runs in blocks of 96, 96 and 8. Each column's sums are the same
    # in any block: equal to the products of each block's columns alone, bit for bit.
    using(kernel)
    rng = np.random.default_rng(M)
    a, b = bf16(rng, M, 20_000), bf16(rng, 20_000, 200)
    got = ops.matmul(a, b, bf16=True)
    assert within_summation_bound(got, a, b)
    for j0, j1 in ((0, 96), (96, 192), (192, 200)):
        np.testing.assert_array_equal(got[:, j0:j1], ops.matmul(a, np.ascontiguousarray(b[:, j0:j1]), bf16=True))
    c0 = rng.uniform(-1, 1, (M, 200)).astype(np.float32)
    c = ops.matmul(a, np.ascontiguousarray(b.T).T, bf16=True, out=c0.copy())  # (B transposed, accumulated)
    assert within_summation_bound(c, a, b, c0)


def products(kernel, a, b, c=None):
    ops.set_bf16_products(kernel)
    if c is None:
        return ops.matmul(a, b, bf16=True)
    return ops.matmul(a, b, bf16=True, out=c.copy())


def test_the_generic_twin_equals_the_numpy_twin_bit_for_bit(using):
    # The C++ twin (blocked, packed, threaded) against the plain loop of helpers.pair_products_twin.
    for M, K, N in SHAPES:
        rng = np.random.default_rng(M + K + N)
        a, b, c = bf16(rng, M, K), bf16(rng, K, N), rng.uniform(-1, 1, (M, N)).astype(np.float32)
        for accumulate in (None, c):
            want = pair_products_twin(a, b, accumulate)
            np.testing.assert_array_equal(products("generic", a, b, accumulate).view(np.uint32), want.view(np.uint32))


@pytest.mark.skipif("avx512_bf16" not in ops.BF16_KERNELS_HERE,
                    reason="this CPU has no AVX512-BF16: the kernel is compared with the generic twin where it does")
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_the_avx512_bf16_kernel_equals_the_generic_twin_bit_for_bit(M, K, N, using):
    rng = np.random.default_rng(M + K + N)
    a, b, c = bf16(rng, M, K), bf16(rng, K, N), rng.uniform(-1, 1, (M, N)).astype(np.float32)
    for accumulate in (None, c):
        want = products("generic", a, b, accumulate)
        np.testing.assert_array_equal(products("avx512_bf16", a, b, accumulate).view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("kernel", PACKED_KERNELS_HERE)
def test_dot_product_kernels_flush_denormals(kernel, using):
    # As VDPBF16PS: denormal inputs (bf16 operands and the fp32 accumulator) read as zero, and a
    # result in the denormal range becomes a zero of its sign. SGEMM keeps them all.
    using(kernel)
    tiny_bf16 = np.array([0x00010000], np.uint32).view(np.float32)[0]  # the least bf16 denormal, 2^-133
    cases = [  # (a, b, c0 or None, what the dot-product kernels give)
        ([[tiny_bf16]], [[2.0**100]], None, 0.0),              # a denormal input: 2^-33 if it were read
        ([[2.0**-70]], [[2.0**-70]], None, 0.0),               # a denormal product, 2^-140: flushed
        ([[-(2.0**-70)]], [[2.0**-70]], None, -0.0),           # ... to a zero of its sign
        ([[0.0]], [[1.0]], [[2.0**-130]], 0.0),                # a denormal accumulator reads as zero
        ([[2.0**-63, 1.0]], [[2.0**-63], [1.0]], None, 1.0),   # (normal values are untouched)
    ]
    if kernel == "amx":  # TDPBF16PS flushes a negative denormal product to +0 (measured: see the top)
        cases[2] = cases[2][:3] + (0.0,)
    for a, b, c0, want in cases:
        a, b = np.array(a, np.float32), np.array(b, np.float32)
        got = ops.matmul(a, b, bf16=True, out=None if c0 is None else np.array(c0, np.float32))
        assert got[0, 0] == want and np.signbit(got[0, 0]) == np.signbit(want), (a, b, c0, got)
    ops.set_bf16_products("sgemm")
    assert ops.matmul(np.array([[2.0**-70]], np.float32), np.array([[2.0**-70]], np.float32), bf16=True)[0, 0] > 0


@pytest.mark.parametrize("kernel", PACKED_KERNELS_HERE)
def test_dot_product_kernels_round_float32_operands_to_bf16(kernel, using):
    # Operands that are not bf16 values are rounded (to nearest even) as they are packed.
    using(kernel)
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((13, 37)).astype(np.float32), rng.standard_normal((37, 45)).astype(np.float32)
    np.testing.assert_array_equal(ops.matmul(a, b, bf16=True), ops.matmul(ops.round_bf16(a), ops.round_bf16(b), bf16=True))


@pytest.mark.parametrize("kernel", PACKED_KERNELS_HERE)
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_an_a_written_in_runs_gives_the_products_of_packing_it(kernel, M, K, N, using):
    # The LSTM backward writes its gate gradients straight into the kernel's A layout, a thread's
    # columns at a time, and packs them from there as the B of the weight gradients
    # (PackedA, pack_transposed). Both products equal those of the float32 operand packed per call,
    # bit for bit, for runs that cross the 32-column chunks anywhere.
    using(kernel)
    rng = np.random.default_rng(M * 7 + K * 3 + N)
    a, b, y = bf16(rng, M, K), bf16(rng, K, N), bf16(rng, N, M)
    for run in (1, 7, 32, 45):
        ab, ya = ops._core._products_of_written_a(kernel, a, b, y, run)
        np.testing.assert_array_equal(ab, ops.matmul(a, b, bf16=True))
        np.testing.assert_array_equal(ya, ops.matmul(y, a, bf16=True))


@pytest.mark.parametrize("kernel", PACKED_KERNELS_HERE)
@pytest.mark.parametrize("M,K,N", SHAPES)
def test_a_b_packed_once_gives_the_products_of_packing_it_per_call(kernel, M, K, N, using):
    # ops.pack_bf16 packs B as each call does, so a product by it is the same bits, operands
    # transposed or not, into a new C or accumulated.
    using(kernel)
    rng = np.random.default_rng(M * 7 + K * 3 + N)
    a, b, c0 = bf16(rng, M, K), bf16(rng, K, N), rng.uniform(-1, 1, (M, N)).astype(np.float32)
    packed = ops.pack_bf16(b, kernel)
    assert packed.shape == (K, N) and packed.kernel == kernel and packed.nbytes >= 2 * K * N
    np.testing.assert_array_equal(ops.matmul(a, packed), ops.matmul(a, b, bf16=True))
    a_t, b_t = np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T
    c = c0.copy()
    assert ops.matmul(a_t, ops.pack_bf16(b_t, kernel), out=c) is c
    np.testing.assert_array_equal(c, ops.matmul(a, b, bf16=True, out=c0.copy()))


def test_a_packed_b_is_a_copy_made_for_one_kernel(using):
    rng = np.random.default_rng(5)
    a, b = bf16(rng, 9, 40), bf16(rng, 40, 50)
    packed = ops.pack_bf16(b, "generic")
    want = ops.matmul(a, packed)
    # It multiplies on its kernel whatever the setting: the generic twin's bits.
    np.testing.assert_array_equal(want.view(np.uint32), pair_products_twin(a, b).view(np.uint32))
    b[:] = 0.0  # (not seen through the pack)
    np.testing.assert_array_equal(ops.matmul(a, packed), want)
    for setting in ("sgemm", *PACKED_KERNELS_HERE):
        using(setting)
        np.testing.assert_array_equal(ops.matmul(a, packed), want)
    # The largest K and N an int holds, with nothing to multiply: the pack's sizes are computed
    # without overflow (K + 1 pairs at INT_MAX was undefined behaviour, which scripts/sanitize.sh aborts on).
    for shape in ((2**31 - 1, 0), (0, 2**31 - 1)):
        huge = ops.pack_bf16(np.zeros(shape, np.float32), "generic")
        assert huge.shape == shape and huge.nbytes == 0
    empty = np.zeros((0, 4), np.float32)
    for kernel in ("generic", "auto"):  # (an empty B packs for the kernel auto names, as any other)
        if kernel == "auto":
            using("generic")
        assert ops.matmul(np.zeros((3, 0), np.float32), ops.pack_bf16(empty, kernel)).tolist() == [[0.0] * 4] * 3
    # "auto": the kernel that bf16 products of many rows run on, where it takes a packed B.
    using("generic")
    assert ops.pack_bf16(b).kernel == "generic"
    using("sgemm")
    with pytest.raises(ValueError, match="no kernel that takes a packed B"):
        ops.pack_bf16(b)
    for name in ("sgemm", "mkl", "fast", *NOT_HERE):
        with pytest.raises(ValueError, match="kernel must be"):
            ops.pack_bf16(b, name)
    with pytest.raises(ValueError, match="a must have shape"):
        ops.matmul(bf16(rng, 9, 41), packed)
    with pytest.raises(TypeError, match="float32"):
        ops.matmul(a.astype(np.float64), packed)
    with pytest.raises(TypeError, match="float32"):
        ops.pack_bf16(b.astype(np.float64))
    with pytest.raises(ValueError, match="c must have shape"):
        ops.matmul(a, packed, out=np.zeros((9, 49), np.float32))
    for out in (np.zeros((50, 9), np.float32).T, np.zeros((9, 100), np.float32)[:, ::2]):  # (a copy would be updated)
        with pytest.raises(TypeError, match="out is updated in place"):
            ops.matmul(a, packed, out=out)
        with pytest.raises(TypeError, match="out is updated in place"):
            ops.matmul(a, b, bf16=True, out=out)


@pytest.mark.parametrize("kernel", PACKED_KERNELS_HERE)
def test_one_packed_b_serves_threads_at_once(kernel):
    # Kernels release the GIL and keep their scratch per thread: four Python threads multiplying by
    # one pack get what one thread gets.
    from concurrent.futures import ThreadPoolExecutor
    rng = np.random.default_rng(6)
    b = bf16(rng, 300, 170)
    packed = ops.pack_bf16(b, kernel)
    inputs = [bf16(rng, 40 + 9 * i, 300) for i in range(8)]
    want = [ops.matmul(a, packed) for a in inputs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda a: ops.matmul(a, packed), inputs))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_a_written_a_refuses_kernels_that_take_no_packed_b():
    a = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="packed B"):
        ops._core._products_of_written_a("sgemm", a, a, a, 1)


@pytest.mark.parametrize("kernel", PACKED_KERNELS_HERE)
def test_results_do_not_depend_on_threads(kernel, using):
    using(kernel)
    rng = np.random.default_rng(4)
    a, b = bf16(rng, 150, 300), bf16(rng, 300, 700)  # several row blocks and panel blocks
    before = ptbfast.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            ptbfast.set_num_threads(threads)
            results.append(ops.matmul(a, b, bf16=True))
    finally:
        ptbfast.set_num_threads(before)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_the_table_names_and_auto():
    info = ptbfast.build_info()
    assert list(info["bf16_kernels"]) == list(ops.BF16_KERNELS)
    assert [k for k, usable in info["bf16_kernels"].items() if usable] == list(ops.BF16_KERNELS_HERE)
    assert {"generic", "sgemm"} <= set(ops.BF16_KERNELS_HERE)  # they run everywhere
    assert ops.BF16_PRODUCTS == ("auto", *ops.BF16_KERNELS)
    # auto (gemm_bf16.cpp says why): SGEMM for fewer than 128 rows; from 128 rows the AMX kernel where
    # it runs, else MKL's bf16 GEMM on Intel CPUs with bf16 instructions where K >= 400, else the
    # AVX512-BF16 kernel on other CPUs that have it.
    before = ops.bf16_products()
    ops.set_bf16_products("auto")
    try:
        assert ops.bf16_product_kernel(20, 2600, 650) == "sgemm"
        intel = info["cpu_vendor"] == "GenuineIntel"
        small_k = ops.bf16_product_kernel(400, 10000, 200)
        if "amx" in ops.BF16_KERNELS_HERE:
            assert small_k == "amx"
            assert ops.bf16_product_kernel(4096, 4096, 4096) == "amx"
        else:
            assert small_k == ("avx512_bf16" if "avx512_bf16" in ops.BF16_KERNELS_HERE and not intel else "sgemm")
        for name in ops.BF16_KERNELS_HERE:
            ops.set_bf16_products(name)
            assert ops.bf16_product_kernel(400, 10000, 200) == name
    finally:
        ops.set_bf16_products(before)


@pytest.mark.skipif(not NOT_HERE, reason="every kernel of the table runs on this CPU")
def test_a_kernel_this_cpu_cannot_run_is_refused(using):
    for name in NOT_HERE:
        with pytest.raises(ValueError, match="cannot run here"):
            using(name)
    with pytest.raises(ValueError, match="must be one of auto, "):
        using("fast")


def test_the_instruction_peaks_are_measured_where_their_kernels_run():
    # bench prints them beside SGEMM's peak; a kernel this CPU cannot run has none (0).
    for kernel in ("amx", "avx512_bf16"):
        peak = ops.bf16_peak_gflops(kernel)
        if kernel in ops.BF16_KERNELS_HERE:
            assert 0.0 < peak < float("inf")
        else:
            assert peak == 0.0
    with pytest.raises(ValueError, match="amx or avx512_bf16"):
        ops.bf16_peak_gflops("sgemm")
