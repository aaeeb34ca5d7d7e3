// Embedding lookup (tf.nn.embedding_lookup) and its gradient, a scatter-add into the used rows.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "kernels.h"

#include "isa_begin.h"  // (compiled once per instruction-set level: isa.h)

// out [n, H] = params[ids]: one row copy per id.
void embedding_forward(float* out, const float* params, const int64_t* ids, int64_t n, int64_t H) {
#pragma omp parallel for schedule(static) if (n * H > 32768)
  for (int64_t k = 0; k < n; ++k)
    std::memcpy(out + k * H, params + ids[k] * H, sizeof(float) * H);
}

// Positions 0..n-1 ordered by id, ties by position (stable), plus where each id's run starts.
static void group_positions_by_id(std::vector<int64_t>& order, std::vector<int64_t>& run_start,
                                  const int64_t* ids, int64_t n) {
  order.resize(n);
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [ids](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  run_start.clear();
  for (int64_t k = 0; k < n; ++k)
    if (k == 0 || ids[order[k]] != ids[order[k - 1]]) run_start.push_back(k);
  run_start.push_back(n);
}

// Each id's rows are summed by one thread in position order: the result has the same bits for
// any thread count (an atomic or per-thread scatter-add would not).
void embedding_backward_sparse(std::vector<int64_t>& unique_ids, std::vector<float>& summed,
                               const float* d_out, const int64_t* ids, int64_t n, int64_t H) {
  std::vector<int64_t> order, run_start;
  group_positions_by_id(order, run_start, ids, n);
  const int64_t U = static_cast<int64_t>(run_start.size()) - 1;
  unique_ids.resize(U);
  summed.assign(U * H, 0.0f);
#pragma omp parallel for schedule(dynamic, 16) if (n * H > 32768)
  for (int64_t u = 0; u < U; ++u) {
    unique_ids[u] = ids[order[run_start[u]]];
    float* row = summed.data() + u * H;
    for (int64_t k = run_start[u]; k < run_start[u + 1]; ++k) {
      const float* src = d_out + order[k] * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) row[j] += src[j];
    }
  }
}

void embedding_backward_dense(float* d_params, const float* d_out, const int64_t* ids, int64_t n, int64_t H,
                              float scale) {
  std::vector<int64_t> order, run_start;
  group_positions_by_id(order, run_start, ids, n);
  const int64_t U = static_cast<int64_t>(run_start.size()) - 1;
#pragma omp parallel for schedule(dynamic, 16) if (n * H > 32768)
  for (int64_t u = 0; u < U; ++u) {
    float* row = d_params + ids[order[run_start[u]]] * H;
    for (int64_t k = run_start[u]; k < run_start[u + 1]; ++k) {
      const float* src = d_out + order[k] * H;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) row[j] += scale * src[j];
    }
  }
}


#include "isa_end.h"
