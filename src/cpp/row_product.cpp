// The float32 product of one row, y = alpha * x @ op(W) + beta * y, on ptbfast's loops (row_product.h),
// the threads splitting y: blas::sgemm sends products of one row here where
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

// Thread `part` of `parts`: its part of y, in runs of 16 floats (a cache line, where y is 64-byte
// aligned), so that threads do not share lines of y. (A function of its own, not the region's body:
// Clang compiles a region's body without the level's target attributes, and the intrinsics need them.)
static void part_of_thread(int part, int parts, float* y, const float* x, const float* w, int K, int N, int ldw,
                           bool w_transposed, float alpha, float beta) {
  const long lines = (static_cast<long>(N) + 15) / 16;
  const int n0 = static_cast<int>(std::min<long>(N, lines * part / parts * 16));
  const int n1 = static_cast<int>(std::min<long>(N, lines * (part + 1) / parts * 16));
  if (n1 <= n0) return;
  if (w_transposed)
    row_times_transposed(y + n0, x, w + static_cast<long>(n0) * ldw, K, n1 - n0, ldw, alpha, beta);
  else
    row_times_matrix(y + n0, x, w + n0, K, n1 - n0, ldw, alpha, beta);
}

void row_product(float* y, const float* x, const float* w, int K, int N, int ldw, bool w_transposed, float alpha,
                 float beta) {
  if (alpha == 0.0f) {  // (as BLAS: W and x are not read, so an Inf or NaN in them does not reach y)
    for (int n = 0; n < N; ++n) y[n] = beta == 0.0f ? 0.0f : beta * y[n];
    return;
  }
  const long macs = static_cast<long>(K) * N;
  // One thread below the size where splitting pays, or inside a parallel region (a caller's
  // threads are already busy; a nested team would oversubscribe the cores).
  const int threads = macs < kParallelMacs || omp_in_parallel()
                          ? 1
                          : static_cast<int>(std::min<long>(omp_get_max_threads(), (static_cast<long>(N) + 15) / 16));
  if (threads <= 1) {
    part_of_thread(0, 1, y, x, w, K, N, ldw, w_transposed, alpha, beta);
    return;
  }
#pragma omp parallel num_threads(threads)
  part_of_thread(omp_get_thread_num(), omp_get_num_threads(), y, x, w, K, N, ldw, w_transposed, alpha, beta);
}

#include "isa_end.h"
