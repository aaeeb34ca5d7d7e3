// OpenBLAS from scipy-openblas32 (every symbol carries the scipy_ prefix).
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
