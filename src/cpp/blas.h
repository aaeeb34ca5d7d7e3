// The one interface through which ptbfast multiplies matrices: row-major SGEMM from a real BLAS
// (Intel MKL by default on x86_64, OpenBLAS from scipy-openblas32 elsewhere or on request).
#pragma once

namespace ptbfast::blas {

// C[M,N] = alpha * op(A) @ op(B) + beta * C, all row-major; op(A) is M×K, op(B) is K×N.
// Empty products are handled here (BLAS libraries disagree on lda for zero sizes).
// Never call it from inside one of our own OpenMP parallel regions: OpenBLAS hangs there.
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

const char* backend_name();
void set_num_threads(int n);
int num_threads();

// Called once at import: makes OpenBLAS run its work on our OpenMP threads (see blas.cpp).
void init();

}  // namespace ptbfast::blas
