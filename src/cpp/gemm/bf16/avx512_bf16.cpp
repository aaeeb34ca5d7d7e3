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

// GFLOP/s of independent VDPBF16PS chains on every OpenMP thread (12 accumulators per thread, enough
// to cover the instruction's latency): the ceiling the GEMM is measured against.
PTBFAST_BF16_TARGET double avx512_bf16_peak_impl() {
  constexpr int kChains = 12;
  constexpr long kIterations = 2'000'000;
  double seconds = 0.0;
  int threads = 1;
#pragma omp parallel reduction(max : seconds)
  {
#pragma omp single
    threads = omp_get_num_threads();
    const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3F803F80), b = (__m512bh)_mm512_set1_epi32(0x3F003F00);
    __m512 acc[kChains];
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
#pragma omp barrier
    const double start = omp_get_wtime();
    for (long i = 0; i < kIterations; ++i)
      for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
    seconds = omp_get_wtime() - start;
    __m512 sum = acc[0];
    for (int j = 1; j < kChains; ++j) sum = _mm512_add_ps(sum, acc[j]);
    volatile float keep = _mm512_reduce_add_ps(sum);  // (the chains' results are used)
    (void)keep;
  }
  return 64.0 * kChains * kIterations * threads / seconds / 1e9;  // 16 lanes x 2 pairs x 2 flops
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
