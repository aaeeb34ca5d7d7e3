// The float32 product of one row, y = alpha * x @ W + beta * y, on ptbfast's loop (row_product.h),
// the threads splitting W's columns: blas::sgemm sends products of one row here where
// blas::one_row_products_on_ptbfast says (generation's logits and LSTM input products, a step a call).
#include <omp.h>
#if defined(__x86_64__)
#include <immintrin.h>  // (row_product.h)
#endif

#include <algorithm>

#include "kernels.h"

#include "isa_begin.h"  // (compiled once per instruction-set level: isa.h)
#include "row_product.h"

// Below this many multiply-adds a product is a few microseconds: one thread, no fork/join.
static constexpr long kParallelMacs = 1L << 16;

// Thread `part` of `parts`: its columns, in whole cache lines of y (16 floats), so that no two
// threads write one line. (A function of its own, not the region's body: Clang compiles a region's
// body without the level's target attributes, and the intrinsics need them.)
static void columns_of_thread(int part, int parts, float* y, const float* x, const float* w, int K, int N, int ldw,
                              float alpha, float beta) {
  const long lines = (N + 15) / 16;
  const int c0 = static_cast<int>(std::min<long>(N, lines * part / parts * 16));
  const int c1 = static_cast<int>(std::min<long>(N, lines * (part + 1) / parts * 16));
  if (c1 > c0) row_times_matrix(y + c0, x, w + c0, K, c1 - c0, ldw, alpha, beta);
}

void row_product(float* y, const float* x, const float* w, int K, int N, int ldw, float alpha, float beta) {
  const long macs = static_cast<long>(K) * N;
  const int threads = macs < kParallelMacs ? 1 : static_cast<int>(std::min<long>(omp_get_max_threads(), (N + 15) / 16));
  if (threads <= 1) {
    columns_of_thread(0, 1, y, x, w, K, N, ldw, alpha, beta);
    return;
  }
#pragma omp parallel num_threads(threads)
  columns_of_thread(omp_get_thread_num(), omp_get_num_threads(), y, x, w, K, N, ldw, alpha, beta);
}

#include "isa_end.h"
