// OpenBLAS from scipy-openblas32 (every symbol carries the scipy_ prefix).
// Its cblas.h names its enums as MKL's mkl_cblas.h (blas_mkl.cpp) does, and CBLAS_TRANSPOSE with one
// value more: two definitions of one C++ type, which link-time optimization reports (-Wodr). Renamed
// here; the functions are extern "C", so their symbols and calling convention do not change.
#define CBLAS_ORDER scipy_CBLAS_ORDER
#define CBLAS_TRANSPOSE scipy_CBLAS_TRANSPOSE
#define CBLAS_UPLO scipy_CBLAS_UPLO
#define CBLAS_DIAG scipy_CBLAS_DIAG
#define CBLAS_SIDE scipy_CBLAS_SIDE
#define CBLAS_LAYOUT scipy_CBLAS_LAYOUT
#include <cblas.h>

#include "blas_libraries.h"

namespace ptbfast::blas::openblas {

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc) {
  scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N,
                    K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void set_num_threads(int n) { scipy_openblas_set_num_threads(n); }
int num_threads() { return scipy_openblas_get_num_threads(); }

// OpenBLAS (a pthreads build) keeps its own workers spinning after each call; on 2 cores they
// stalled our OpenMP barriers, up to 80x slower per LSTM step. With this callback OpenBLAS hands
// its jobs to our OpenMP threads instead, so there is one thread pool.
static void run_jobs_on_openmp(int /*sync*/, openblas_dojob_callback dojob, int numjobs, size_t jobdata_elsize,
                               void* jobdata, int dojob_data) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < numjobs; ++i) dojob(i, static_cast<char*>(jobdata) + static_cast<size_t>(i) * jobdata_elsize,
                                          dojob_data);
}

void init() { scipy_openblas_set_threads_callback_function(run_jobs_on_openmp); }

}  // namespace ptbfast::blas::openblas
