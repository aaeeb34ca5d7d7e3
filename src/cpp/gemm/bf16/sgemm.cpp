// The SGEMM fallback of the bf16 GEMM table: float32 SGEMM on operands that hold bf16 values. A
// product of two bf16 values is exact in float32 and the sums are float32, so this is bf16
// arithmetic at fp32 speed (only the order of the sums and the flushing of denormals differ from
// the dot-product kernels). The choice wherever the CPU has no bf16 instructions: on an AMD EPYC
// Zen 1 (family 23 model 1, AVX2), the generic twin runs far below it (benchmarks/).
#include "../../blas.h"
#include "gemm_bf16.h"

namespace ptbfast::gemm::bf16 {

void sgemm_multiply(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                    float beta, float* C, int ldc) {
  blas::sgemm(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace ptbfast::gemm::bf16
