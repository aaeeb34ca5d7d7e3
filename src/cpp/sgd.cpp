// The SGD step's kernels: the global norm's sum of squares and the dense update, one pass each.
// Their "backward" is nothing: the update is the last step of training.
#include "kernels.h"

#include <algorithm>
#include <vector>

#include "isa_begin.h"  // (compiled once per instruction-set level: isa.h)

namespace {
constexpr int64_t kSquaresChunk = 1 << 14;  // elements summed by one thread, in one order

double chunk_sum_of_squares(const float* x, int64_t n) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t k = 0; k < n; ++k) sum += static_cast<double>(x[k]) * x[k];
  return sum;
}
}  // namespace

// Chunks of a fixed size summed in parallel, then their sums in order: the same bits whatever the
// thread count. (NumPy's float32 dot, used before, ran on its own OpenBLAS threads, which then spun
// beside ptbfast's OpenMP threads on the same cores.)
double sum_of_squares(const float* x, int64_t n) {
  const int64_t chunks = (n + kSquaresChunk - 1) / kSquaresChunk;
  if (chunks <= 1) return chunk_sum_of_squares(x, n);
  std::vector<double> sums(chunks);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t c = 0; c < chunks; ++c)
    sums[c] = chunk_sum_of_squares(x + c * kSquaresChunk, std::min(kSquaresChunk, n - c * kSquaresChunk));
  double total = 0.0;
  for (double s : sums) total += s;
  return total;
}

void axpy(float* y, const float* x, float alpha, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t k = 0; k < n; ++k) y[k] += alpha * x[k];
}

#include "isa_end.h"
