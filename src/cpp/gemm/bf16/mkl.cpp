// MKL's bf16 GEMM (cblas_gemm_bf16bf16f32) as an entry of the bf16 GEMM table, in MKL builds.
//
// MKL runs it on AMX tiles or AVX512-BF16 on Intel CPUs; measured on an Intel Xeon with AMX (family
// 6 model 207, 2 threads, GFLOP/s bf16 / fp32, ../shared/notes): K = 200 (400x200 @ 200x10000)
// 195 / 229; K = 400 (20x400 @ 400x800) 204 / 199 and (200x400 @ 400x10000) 515 / 230; K = 650
// 279 / 231; K = 1300 240 / 131; K = 1500 596 / 235; K = 3000 328 / 114. So "auto" prefers it only
// where K >= 400 on an Intel CPU with those instructions (gemm_bf16.cpp). MKL picks its
// instruction-set code paths on Intel CPUs only, and emulates bf16 elsewhere: on an AMD EPYC Zen 3
// (2 threads, MKL bf16 / SGEMM, conversions included) 400x200 @ 200x10000 60-64 / 107-114 GFLOP/s.
//
// The operands are converted to bf16 bit patterns in scratch per call (up to both operands at 2
// bytes per value).
#include "gemm_bf16.h"

#if defined(PTBFAST_BLAS_MKL)
#include <vector>

#include "../../bf16.h"
#include "../../blas_libraries.h"
#include "../../profile.h"

namespace ptbfast::gemm::bf16 {

// An [rows, cols] block of float32 (leading dimension ld) as bf16 bit patterns (rounded).
static std::vector<uint16_t> to_bf16_bits(const float* a, int rows, int cols, int ld) {
  std::vector<uint16_t> out(static_cast<size_t>(rows) * cols);
#pragma omp parallel for schedule(static) if (static_cast<long>(rows) * cols >= (1L << 16))
  for (int r = 0; r < rows; ++r) {
    const float* src = a + static_cast<long>(r) * ld;
    uint16_t* dst = out.data() + static_cast<long>(r) * cols;
    for (int c = 0; c < cols; ++c) dst[c] = bf16_bits(src[c]);  // (values that are bf16 stay as they are)
  }
  return out;
}

void mkl_multiply(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                  float beta, float* C, int ldc) {
  if (M == 0 || N == 0 || K == 0) {  // (MKL and the libraries disagree on lda for empty operands)
    sgemm_multiply(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
  const int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
  const double start = profile::now_outside();
  const std::vector<uint16_t> a = to_bf16_bits(A, a_rows, a_cols, lda), b = to_bf16_bits(B, b_rows, b_cols, ldb);
  profile::since_outside(profile::kBf16Packing, start);
  blas::mkl::gemm_bf16(trans_a, trans_b, M, N, K, 1.0f, a.data(), a_cols, b.data(), b_cols, beta, C, ldc);
}

}  // namespace ptbfast::gemm::bf16
#endif
