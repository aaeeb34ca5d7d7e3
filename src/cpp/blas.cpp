#include "blas.h"

#include <omp.h>

#if defined(PTBFAST_BLAS_MKL)
#include <mkl.h>
#define PTBFAST_CBLAS_SGEMM cblas_sgemm
#elif defined(PTBFAST_BLAS_OPENBLAS)
#include <cblas.h>  // scipy-openblas32: every symbol carries the scipy_ prefix
#define PTBFAST_CBLAS_SGEMM scipy_cblas_sgemm
#else
#error "define PTBFAST_BLAS_MKL or PTBFAST_BLAS_OPENBLAS"
#endif

namespace ptbfast::blas {

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // op(A)@op(B) is zero: C = beta*C, and beta == 0 must clear NaNs too
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) C[(long)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
    return;
  }
  PTBFAST_CBLAS_SGEMM(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                      M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

#if defined(PTBFAST_BLAS_MKL)

PackedB::PackedB(bool trans_b, int M, int N, int K, const float* B, int ldb, int uses)
    : trans_b_(trans_b), M_(M), N_(N), K_(K), ldb_(ldb), B_(B) {
  if (M == 0 || N == 0 || K == 0 || uses < 8) return;  // sgemm() handles empty and one-off products
  packed_ = static_cast<float*>(mkl_malloc(cblas_sgemm_pack_get_size(CblasBMatrix, M, N, K), 64));
  if (packed_ == nullptr) return;  // out of memory: fall back to unpacked products
  cblas_sgemm_pack(CblasRowMajor, CblasBMatrix, trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, B, ldb,
                   packed_);
}

PackedB::~PackedB() { mkl_free(packed_); }

void PackedB::gemm(const float* A, int lda, float beta, float* C, int ldc) const {
  if (packed_ == nullptr) {
    sgemm(false, trans_b_, M_, N_, K_, 1.0f, A, lda, B_, ldb_, beta, C, ldc);
    return;
  }
  cblas_sgemm_compute(CblasRowMajor, CblasNoTrans, CblasPacked, M_, N_, K_, A, lda, packed_, N_, beta, C, ldc);
}

const char* backend_name() { return "mkl"; }
void set_num_threads(int n) { mkl_set_num_threads(n); }
int num_threads() { return mkl_get_max_threads(); }
// Results independent of the arrays' memory alignment, so a resumed run repeats the same bits.
void init() { mkl_cbwr_set(MKL_CBWR_AUTO); }

#else

PackedB::PackedB(bool trans_b, int M, int N, int K, const float* B, int ldb, int /*uses*/)
    : trans_b_(trans_b), M_(M), N_(N), K_(K), ldb_(ldb), B_(B) {}
PackedB::~PackedB() = default;
void PackedB::gemm(const float* A, int lda, float beta, float* C, int ldc) const {
  sgemm(false, trans_b_, M_, N_, K_, 1.0f, A, lda, B_, ldb_, beta, C, ldc);
}

const char* backend_name() { return "openblas"; }
void set_num_threads(int n) { scipy_openblas_set_num_threads(n); }
int num_threads() { return scipy_openblas_get_num_threads(); }

// OpenBLAS (a pthreads build) keeps its own workers spinning after each call; on 2 cores they
// stalled our OpenMP barriers, up to 80x slower per LSTM step. With this callback OpenBLAS hands
// its jobs to our OpenMP threads instead, so there is one thread pool.
static void run_openblas_jobs_on_openmp(int /*sync*/, openblas_dojob_callback dojob, int numjobs,
                                        size_t jobdata_elsize, void* jobdata, int dojob_data) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < numjobs; ++i) {
    void* job = static_cast<char*>(jobdata) + static_cast<size_t>(i) * jobdata_elsize;
    dojob(i, job, dojob_data);
  }
}

void init() { scipy_openblas_set_threads_callback_function(run_openblas_jobs_on_openmp); }

#endif

}  // namespace ptbfast::blas
