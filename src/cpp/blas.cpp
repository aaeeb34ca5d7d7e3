// Dispatch of blas.h to the libraries this build links (blas_mkl.cpp, blas_openblas.cpp).
//
// The default x86_64 build links both. Measured on an AMD EPYC Zen 4 (family 25 model 17, 2 threads,
// GFLOP/s): OpenBLAS beats MKL on every large product (400x200@200x10000: 186 vs 130;
// 700x650@650x10000: 197 vs 133; 2048^3: 196 vs 143), while MKL's packed GEMM wins the small
// recurrent products at batch 20 (see PackedB). On the Intel machine of ../shared/notes the two
// were equal on large shapes, so sending large products to OpenBLAS costs nothing there.
#include "blas.h"

#include "blas_libraries.h"

namespace ptbfast::blas {

#if defined(PTBFAST_BLAS_MKL) && defined(PTBFAST_BLAS_OPENBLAS)
static bool is_large(int M, int N, int K) { return M >= kLargeSide && N >= kLargeSide && K >= kLargeSide; }
#endif

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // op(A)@op(B) is zero: C = beta*C, and beta == 0 must clear NaNs too
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) C[(long)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
    return;
  }
#if defined(PTBFAST_BLAS_MKL) && defined(PTBFAST_BLAS_OPENBLAS)
  if (is_large(M, N, K))
    openblas::sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    mkl::sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#elif defined(PTBFAST_BLAS_MKL)
  mkl::sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
  openblas::sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

const char* sgemm_library(int M, int N, int K) {
#if defined(PTBFAST_BLAS_MKL) && defined(PTBFAST_BLAS_OPENBLAS)
  return is_large(M, N, K) ? "openblas" : "mkl";
#elif defined(PTBFAST_BLAS_MKL)
  (void)M, (void)N, (void)K;
  return "mkl";
#else
  (void)M, (void)N, (void)K;
  return "openblas";
#endif
}

#if defined(PTBFAST_BLAS_MKL)
const char* backend_name() { return "mkl"; }
#else
const char* backend_name() { return "openblas"; }
#endif

const char* large_products_backend_name() {
#if defined(PTBFAST_BLAS_OPENBLAS)
  return "openblas";
#else
  return "mkl";
#endif
}

void set_num_threads(int n) {
#if defined(PTBFAST_BLAS_MKL)
  mkl::set_num_threads(n);
#endif
#if defined(PTBFAST_BLAS_OPENBLAS)
  openblas::set_num_threads(n);
#endif
}

int num_threads() {
#if defined(PTBFAST_BLAS_MKL)
  return mkl::num_threads();
#else
  return openblas::num_threads();
#endif
}

void init() {
#if defined(PTBFAST_BLAS_MKL)
  mkl::init();
#endif
#if defined(PTBFAST_BLAS_OPENBLAS)
  openblas::init();
#endif
}

#if !defined(PTBFAST_BLAS_MKL)  // without MKL nothing is packed: PackedB is a plain product
bool callable_in_parallel_region() { return false; }
ThisThreadOnly::ThisThreadOnly() = default;
ThisThreadOnly::~ThisThreadOnly() = default;

PackedB::PackedB(bool trans_b, int M, int N, int K, const float* B, int ldb, int /*uses*/)
    : trans_b_(trans_b), M_(M), N_(N), K_(K), ldb_(ldb), B_(B) {}
PackedB::~PackedB() = default;
void PackedB::gemm(const float* A, int lda, float beta, float* C, int ldc) const {
  sgemm(false, trans_b_, M_, N_, K_, 1.0f, A, lda, B_, ldb_, beta, C, ldc);
}
#endif

}  // namespace ptbfast::blas
