// Output projection + log-softmax + negative log-likelihood, fused, forward and backward.
//
// Logits exist only block_rows rows at a time: each block is one GEMM (h_blk @ w + b), one pass
// per row that turns logits into the loss (and, for training, in place into the gradient
// softmax - onehot), then two GEMMs that fold the block's gradient into dw and dh. So memory is
// block_rows*V floats for any number of rows N, and softmax never takes an extra pass over a
// [N, V] buffer.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "blas.h"
#include "kernels.h"
#include "vecmath.h"

namespace ptbfast {

// Below this many logits per block, OpenMP's fork/join costs more than the work.
static constexpr long kParallelElements = 16384;

// Loss of one row of logits (h @ w, to which the bias is added here, in the same pass as the
// max), stable for large logits (the row max is subtracted before exp).
// With to_gradient, the row is overwritten by d_loss * (softmax - onehot(target)).
static float row_loss(float* row, const float* bias, int V, int64_t target, bool to_gradient, float d_loss) {
  float max_logit = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : max_logit)
  for (int v = 0; v < V; ++v) {
    row[v] += bias[v];
    max_logit = std::max(max_logit, row[v]);
  }
  const float target_logit = row[target];
  float sum = 0.0f;
  if (to_gradient) {
#pragma omp simd reduction(+ : sum)
    for (int v = 0; v < V; ++v) {
      const float e = exp_approx(row[v] - max_logit);
      row[v] = e;
      sum += e;
    }
    const float scale = d_loss / sum;
#pragma omp simd
    for (int v = 0; v < V; ++v) row[v] *= scale;
    row[target] -= d_loss;
  } else {
#pragma omp simd reduction(+ : sum)
    for (int v = 0; v < V; ++v) sum += exp_approx(row[v] - max_logit);
  }
  return (max_logit - target_logit) + std::log(sum);
}

static double output_layer(float* losses, float* dh, float* dw, float* db, const float* h, const float* w,
                           const float* b, const int64_t* targets, float d_loss, int N, int H, int V,
                           int block_rows, bool w_transposed) {
  // w is [H, V], or [V, H] when transposed (tied weights: w is the embedding); dw has w's layout.
  const int ldw = w_transposed ? H : V;
  const bool grads = dh != nullptr;
  const int R = std::max(1, std::min(N, block_rows));
  std::vector<float> logits(static_cast<size_t>(R) * V);
  if (grads) {
    std::memset(db, 0, sizeof(float) * V);
    if (N == 0) std::memset(dw, 0, sizeof(float) * H * V);
  }

  for (int r0 = 0; r0 < N; r0 += R) {
    const int rows = std::min(R, N - r0);
    const float* h_blk = h + static_cast<long>(r0) * H;
    blas::sgemm(false, w_transposed, rows, V, H, 1.0f, h_blk, H, w, ldw, 0.0f, logits.data(), V);

    const bool parallel = static_cast<long>(rows) * V >= kParallelElements;
#pragma omp parallel for schedule(static) if (parallel)
    for (int r = 0; r < rows; ++r)
      losses[r0 + r] = row_loss(logits.data() + static_cast<long>(r) * V, b, V, targets[r0 + r], grads, d_loss);

    if (grads) {
      // dw (+)= h_blk^T @ d_logits ; dh_blk = d_logits @ w^T ; db += column sums of d_logits.
      const float beta = r0 == 0 ? 0.0f : 1.0f;
      if (w_transposed)  // dw [V, H] = d_logits^T @ h_blk
        blas::sgemm(true, false, V, H, rows, 1.0f, logits.data(), V, h_blk, H, beta, dw, H);
      else
        blas::sgemm(true, false, H, V, rows, 1.0f, h_blk, H, logits.data(), V, beta, dw, V);
      blas::sgemm(false, !w_transposed, rows, H, V, 1.0f, logits.data(), V, w, ldw, 0.0f,
                  dh + static_cast<long>(r0) * H, H);
      constexpr int kColumns = 256;  // each thread owns whole column chunks: deterministic sums
#pragma omp parallel for schedule(static) if (parallel)
      for (int v0 = 0; v0 < V; v0 += kColumns) {
        const int v1 = std::min(V, v0 + kColumns);
        for (int r = 0; r < rows; ++r) {
          const float* src = logits.data() + static_cast<long>(r) * V;
#pragma omp simd
          for (int v = v0; v < v1; ++v) db[v] += src[v];
        }
      }
    }
  }
  // Summed serially in double so the total does not depend on the thread count.
  double total = 0.0;
  for (int r = 0; r < N; ++r) total += losses[r];
  return total;
}

double output_layer_forward(float* losses, const float* h, const float* w, const float* b,
                            const int64_t* targets, int N, int H, int V, int block_rows, bool w_transposed) {
  return output_layer(losses, nullptr, nullptr, nullptr, h, w, b, targets, 0.0f, N, H, V, block_rows,
                      w_transposed);
}

double output_layer_forward_backward(float* losses, float* dh, float* dw, float* db, const float* h,
                                     const float* w, const float* b, const int64_t* targets, float d_loss,
                                     int N, int H, int V, int block_rows, bool w_transposed) {
  return output_layer(losses, dh, dw, db, h, w, b, targets, d_loss, N, H, V, block_rows, w_transposed);
}

}  // namespace ptbfast
