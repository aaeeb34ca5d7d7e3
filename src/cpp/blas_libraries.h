// The BLAS libraries behind blas.h, one namespace each. They live in separate translation units
// because mkl.h and OpenBLAS's cblas.h declare the same CBLAS enums and cannot be included together.
#pragma once

#include <cstdint>

namespace ptbfast::blas {

#if defined(PTBFAST_BLAS_MKL)
namespace mkl {
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc);
void set_num_threads(int n);
int num_threads();
void init();
// cblas_gemm_bf16bf16f32: A and B as bf16 bit patterns, C float32.
void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t* A, int lda,
               const uint16_t* B, int ldb, float beta, float* C, int ldc);
}  // namespace mkl
#endif

#if defined(PTBFAST_BLAS_OPENBLAS)
namespace openblas {
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc);
void set_num_threads(int n);
int num_threads();
void init();
}  // namespace openblas
#endif

}  // namespace ptbfast::blas
