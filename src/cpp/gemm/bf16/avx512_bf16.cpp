// The AVX512-BF16 kernel: VDPBF16PS (_mm512_dpbf16_ps) on 16 fp32 lanes, each taking one pair word
// of A (broadcast) and of B (a packed panel row) per instruction. Compiled with a target attribute,
// not a flag for the file, so the build works with any x86-64 compiler on any CPU, and no code of
// this file runs unless the CPU has AVX512-BF16 (cpu_features.cpp decides, gemm_bf16.cpp asks).
// Its results equal generic.cpp's bit for bit (tests/test_gemm_bf16.py, where the CPU has it).
#include "gemm_bf16.h"

#if defined(__x86_64__) && ((defined(__GNUC__) && __GNUC__ >= 10) || (defined(__clang__) && __clang_major__ >= 9))
#include <immintrin.h>
#include <omp.h>

#define PTBFAST_BF16_TARGET __attribute__((target("avx512f,avx512bf16")))
#include "blocked.h"

#include <algorithm>

namespace ptbfast::gemm::bf16 {
namespace {

struct Avx512Bf16Lanes {
  using Vec = __m512;
  PTBFAST_BF16_TARGET static Vec zero() { return _mm512_setzero_ps(); }
  PTBFAST_BF16_TARGET static __mmask16 first(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  PTBFAST_BF16_TARGET static Vec load(const float* p, int n) {
    return n == 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(first(n), p);
  }
  PTBFAST_BF16_TARGET static void store(float* p, Vec x, int n) {
    if (n == 16)
      _mm512_storeu_ps(p, x);
    else
      _mm512_mask_storeu_ps(p, first(n), x);
  }
  PTBFAST_BF16_TARGET static void dot(Vec& acc, uint32_t a, const uint32_t* b) {
    acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_set1_epi32(static_cast<int>(a)), (__m512bh)_mm512_loadu_si512(b));
  }
};

PTBFAST_BF16_TARGET void avx512_bf16_block_impl(const Problem& problem, int m0, int m1, int p0, int p1) {
  block<Avx512Bf16Lanes>(problem, m0, m1, p0, p1);
}

// Seconds one thread takes for independent VDPBF16PS chains (12 accumulators: enough to cover a
// latency of 6 cycles at 2 instructions per cycle), started together with the team's other threads.
// A function of its own, called inside the parallel region: Clang does not give the body of an
// OpenMP region its enclosing function's target attribute, and refused the AVX-512 types there.
constexpr int kPeakChains = 12;  // (c0 to c11 below)
constexpr long kPeakIterations = 500'000;
PTBFAST_BF16_TARGET double time_dpbf16_chains() {
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3F803F80), b = (__m512bh)_mm512_set1_epi32(0x3F003F00);
  __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0,
         c9 = c0, c10 = c0, c11 = c0;
#pragma omp barrier
  const double start = omp_get_wtime();
  for (long i = 0; i < kPeakIterations; ++i) {
    c0 = _mm512_dpbf16_ps(c0, a, b), c1 = _mm512_dpbf16_ps(c1, a, b), c2 = _mm512_dpbf16_ps(c2, a, b);
    c3 = _mm512_dpbf16_ps(c3, a, b), c4 = _mm512_dpbf16_ps(c4, a, b), c5 = _mm512_dpbf16_ps(c5, a, b);
    c6 = _mm512_dpbf16_ps(c6, a, b), c7 = _mm512_dpbf16_ps(c7, a, b), c8 = _mm512_dpbf16_ps(c8, a, b);
    c9 = _mm512_dpbf16_ps(c9, a, b), c10 = _mm512_dpbf16_ps(c10, a, b), c11 = _mm512_dpbf16_ps(c11, a, b);
    // Opaque to the compiler, so the chains stay in registers and are computed here: without it
    // GCC 12 deleted them and timed an empty loop (2,198 "GFLOP/s" on 2 cores of an Intel Xeon).
    asm volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6), "+v"(c7), "+v"(c8),
                 "+v"(c9), "+v"(c10), "+v"(c11));
  }
  return omp_get_wtime() - start;
}

// GFLOP/s of the chains on every OpenMP thread: the ceiling the GEMM is measured against.
double avx512_bf16_peak_once() {
  double seconds = 0.0;
  int threads = 1;
#pragma omp parallel reduction(max : seconds)
  {
#pragma omp single
    threads = omp_get_num_threads();
    seconds = time_dpbf16_chains();
  }
  return 64.0 * kPeakChains * kPeakIterations * threads / seconds / 1e9;  // 16 lanes x 2 pairs x 2 flops
}

// The best of several runs: a peak is a ceiling, and one run on a shared VM swung 98-198 GFLOP/s from
// call to call (Intel Xeon family 6 model 167, 2 threads; a standalone loop ran 149-160).
double avx512_bf16_peak_impl() {
  double best = 0.0;
  for (int run = 0; run < kPeakRuns; ++run) best = std::max(best, avx512_bf16_peak_once());
  return best;
}

}  // namespace

const BlockFn avx512_bf16_block = &avx512_bf16_block_impl;
double (*const avx512_bf16_peak)() = &avx512_bf16_peak_impl;

}  // namespace ptbfast::gemm::bf16

#else  // a compiler or CPU family without AVX512-BF16: the kernel is absent

namespace ptbfast::gemm::bf16 {
const BlockFn avx512_bf16_block = nullptr;
double (*const avx512_bf16_peak)() = nullptr;
}

#endif
