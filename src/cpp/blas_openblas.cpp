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

#include <omp.h>

#include <thread>
#include <vector>

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
//
// The jobs of a threaded GEMM wait for one another, so all numjobs must run at once. A parallel for
// over the calling thread's team ran job 0 and waited for job 1 for ever where that team was
// smaller (its OpenMP count below OpenBLAS's process-wide one, set from another thread). A team of
// num_threads(numjobs) runs them now; where OpenMP gives fewer (OMP_THREAD_LIMIT, OMP_DYNAMIC, a
// call inside a parallel region without nesting) they run on threads of their own: slower, never
// stuck (a thread that cannot be made ends the process, as OpenBLAS's own pool would).
static void run_jobs_on_openmp(int /*sync*/, openblas_dojob_callback dojob, int numjobs, size_t jobdata_elsize,
                               void* jobdata, int dojob_data) {
  auto job = [&](int i) {
    dojob(i, static_cast<char*>(jobdata) + static_cast<size_t>(i) * jobdata_elsize, dojob_data);
  };
  if (numjobs <= 1) {
    if (numjobs == 1) job(0);
    return;
  }
  bool all_ran = false;
#pragma omp parallel num_threads(numjobs)
  {
    if (omp_get_num_threads() == numjobs) {  // (the same in every thread of the team: no barrier needed)
      job(omp_get_thread_num());
      if (omp_get_thread_num() == 0) all_ran = true;  // (read after the region's closing barrier)
    }
  }
  if (all_ran) return;
  std::vector<std::thread> others;
  others.reserve(static_cast<size_t>(numjobs - 1));
  for (int i = 1; i < numjobs; ++i) others.emplace_back(job, i);
  job(0);
  for (auto& t : others) t.join();
}

void init() { scipy_openblas_set_threads_callback_function(run_jobs_on_openmp); }

}  // namespace ptbfast::blas::openblas
