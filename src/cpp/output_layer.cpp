// Output projection + log-softmax + negative log-likelihood, fused, forward and backward.
//
// Training (forward_backward): logits exist only block_rows rows at a time: each block is one
// GEMM (h_blk @ w + b), one pass per row that turns logits into the loss and, in place, into the
// gradient softmax - onehot, then two GEMMs that fold the block's gradient into dw and dh. So
// memory is block_rows*V floats for any number of rows N, and softmax never takes an extra pass
// over a [N, V] buffer. Whole rows are the case "one chunk of V columns"; vocabularies too large
// for whole rows take two passes over narrower column chunks instead, through the same fold.
//
// Evaluation (forward): no gradient needs a whole row of probabilities, so a block of rows is
// also cut into column chunks, each folded into a running max and sum of exponentials per row
// (an online logsumexp). Then w is read once per block of rows however large V is; with row
// blocks alone, a 100,000-word vocabulary allowed only 41 rows per 16 MiB block, and the 80 MB
// weight was read again for every 41 rows.
//
// Block sizes (choose_forward_blocks, choose_training_blocks) are decided here, next to the code
// whose speed they decide; callers pass 0 for "choose".
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "bf16.h"
#include "blas.h"
#include "free_floats.h"
#include "frozen_weights.h"
#include "gemm/bf16/gemm_bf16.h"
#include "kernels.h"
#include "profile.h"
#include "vecmath.h"

#include "isa_begin.h"  // (compiled once per instruction-set level: isa.h)

// Below this many logits per block, OpenMP's fork/join costs more than the work.
static constexpr long kParallelElements = 16384;

// Loss of one row of logits (h @ w, to which the bias is added here, in the max pass and again in
// the exp pass: one write pass less than storing it), stable for large logits (the row max is
// subtracted before exp). The row is overwritten by d_loss * (softmax - onehot(target)).
static float row_loss_and_gradient(float* row, const float* bias, int V, int64_t target, float d_loss) {
  float max_logit = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : max_logit)
  for (int v = 0; v < V; ++v) max_logit = std::max(max_logit, row[v] + bias[v]);
  const float target_logit = row[target] + bias[target];
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int v = 0; v < V; ++v) {
    const float e = exp_approx((row[v] + bias[v]) - max_logit);
    row[v] = e;
    sum += e;
  }
  const float scale = d_loss / sum;
#pragma omp simd
  for (int v = 0; v < V; ++v) row[v] *= scale;
  row[target] -= d_loss;
  return (max_logit - target_logit) + std::log(sum);
}

// Running logsumexp of one row over its column chunks: exp(max) * sum = sum of exp(logits) so far.
struct RunningLogSumExp {
  float max = -std::numeric_limits<float>::infinity();
  float sum = 0.0f;
  float target_logit = 0.0f;
};

// Folds one chunk of a row's logits (columns [c0, c0 + n), bias added here) into `acc`. A NaN
// anywhere makes the sum NaN for good (the max alone would skip it).
// Reads the chunk twice and writes nothing: the bias is added in both passes.
static void fold_chunk(RunningLogSumExp& acc, const float* chunk, const float* bias, int n, int c0, int64_t target) {
  float chunk_max = -std::numeric_limits<float>::infinity();
  int nans = 0;
#pragma omp simd reduction(max : chunk_max) reduction(+ : nans)
  for (int v = 0; v < n; ++v) {
    const float logit = chunk[v] + bias[v];
    chunk_max = std::max(chunk_max, logit);
    nans += logit != logit;
  }
  if (target >= c0 && target < c0 + n) acc.target_logit = chunk[target - c0] + bias[target - c0];
  const float new_max = std::max(acc.max, chunk_max);
  float sum = 0.0f;
  if (new_max != -std::numeric_limits<float>::infinity()) {  // (all -inf so far: every exp is 0)
#pragma omp simd reduction(+ : sum)
    for (int v = 0; v < n; ++v) sum += exp_approx((chunk[v] + bias[v]) - new_max);
  }
  // The sum so far, rescaled to the new max (from -inf: a zero sum times a tiny factor).
  const float rescale = acc.max == new_max ? 1.0f : exp_approx(acc.max - new_max);
  acc.sum = nans ? std::numeric_limits<float>::quiet_NaN() : acc.sum * rescale + sum;
  acc.max = new_max;
}

// Sum of all N rows' losses, in double and serially so that it does not depend on the thread count.
static double total_of(const float* losses, int N) {
  double total = 0.0;
  for (int r = 0; r < N; ++r) total += losses[r];
  return total;
}

// bf16: the products read w's columns rounded, a piece of at most this many columns at a time
// (an [H, piece] scratch), so that no rounded copy of the whole w (8 MB small, 26 MB medium)
// exists; smaller for a wide H, so that the scratch stays an eighth of the logits' budget.
static constexpr int kBf16PieceColumns = 512;

static int bf16_piece_columns(int H, int V) {
  const long fit = kOutputBlockFloats / 8 / std::max(H, 1);
  return static_cast<int>(std::max(1L, std::min<long>({kBf16PieceColumns, fit, std::max(V, 1)})));
}

// Blocks of R rows x C columns: column chunks of equal width (a narrow last chunk would be a slow
// GEMM), whose weights start at column c0 of w. Products over a chunk run in pieces of P columns:
// one piece (P = C) in fp32 and for a w that already holds bf16 values, w rounded piece by piece
// into `scratch` otherwise in bf16.
struct ChunkedBlocks {
  int R, C, P, ldw;
  bool w_transposed, bf16, round_w, kernels_round;
  // bf16: the kernels the full block's products run on, for every block (nullptr: blas::gemm_for).
  const ptbfast::gemm::bf16::Kernel *logits_kernel = nullptr, *dh_kernel = nullptr, *dw_kernel = nullptr;
  ChunkedBlocks(int N, int H, int V, int block_rows, int block_columns, bool transposed, bool bf16_products,
                bool w_is_bf16 = false) {
    R = std::max(1, std::min(N, block_rows));
    V = std::max(1, V);  // (callers guarantee V >= 1; never divide by zero)
    const int max_columns = block_columns <= 0 ? V : std::min(V, block_columns);  // <= 0: whole rows
    const int chunks = (V + max_columns - 1) / max_columns;
    C = (V + chunks - 1) / chunks;
    // The three products' kernels (logits, dh, dw), chosen once for every block, a smaller last one
    // too (blas::bf16_kernel), the setting read once each. Kernels that round operands as they pack
    // them (AMX, AVX512-BF16, MKL's) take w and d_logits as they are: no rounding pass, no pieces.
    kernels_round = false;
    if (bf16_products && R > 0 && C > 0 && H > 0) {
      logits_kernel = blas::bf16_kernel(R, C, H);
      dh_kernel = blas::bf16_kernel(R, H, C);
      dw_kernel = transposed ? blas::bf16_kernel(C, H, R) : blas::bf16_kernel(H, C, R);
      kernels_round = blas::bf16_kernel_rounds_operands(logits_kernel) &&
                      blas::bf16_kernel_rounds_operands(dh_kernel) && blas::bf16_kernel_rounds_operands(dw_kernel);
    }
    const bool round = bf16_products && !w_is_bf16 && !kernels_round;
    P = round ? std::min(C, bf16_piece_columns(H, V)) : C;
    ldw = transposed ? H : V;  // w is [H, V], or [V, H] when transposed (tied: w is the embedding)
    w_transposed = transposed;
    bf16 = bf16_products;
    round_w = round;
  }
  // Whole rows in several blocks of rows, on a kernel that takes a packed B: w packed once per call
  // for the logits (B = w) and for dh (B = w^T), instead of once per product (medium, 700 rows in 2
  // blocks, Intel Xeon family 6 model 167: 59 -> 51 ms per forward and backward).
  std::string packed_kernel;
  std::unique_ptr<ptbfast::gemm::bf16::PackedB> packed_w, packed_wt;
  // A frozen model's w, packed once for all its calls (evaluation): each chunk's columns of it.
  const ptbfast::gemm::bf16::PackedB* frozen_w = nullptr;
  std::string frozen_kernel;
  // Whether use_frozen will multiply frozen->output (whatever the block sizes).
  static bool frozen_applies(bool bf16, const ptbfast::FrozenWeights* frozen, int H, int V) {
    if (!bf16 || frozen == nullptr || !frozen->output || frozen->output->K() != H || frozen->output->N() != V)
      return false;
    const std::string products = blas::bf16_products();
    return products == "auto" || ptbfast::gemm::bf16::takes_packed_b(products);
  }
  void use_frozen(const ptbfast::FrozenWeights* frozen, int H, int V) {
    if (!frozen_applies(bf16, frozen, H, V)) return;
    frozen_kernel = blas::bf16_packed_b_kernel(R, C, H);
    if (frozen_kernel.empty())  // ("auto": below 128 rows SGEMM's; one row AVX512-BF16's where it runs)
      frozen_kernel = blas::bf16_kernel_for_rows(frozen->output_kernel, R);
    frozen_w = frozen->output.get();
    // Chunks of whole panels, so that each is a view of the packed w.
    C = std::min(V, (C + ptbfast::gemm::bf16::kPanel - 1) / ptbfast::gemm::bf16::kPanel * ptbfast::gemm::bf16::kPanel);
    round_w = false;
    P = C;
  }
  void pack_w_once(const float* w, int N, int H, int V) {
    if (!kernels_round || C < V || N <= R) return;  // (one block of rows packs w once anyway)
    packed_kernel = blas::bf16_packed_b_kernel(R, V, H);
    if (packed_kernel.empty() || packed_kernel != blas::bf16_packed_b_kernel(R, H, V)) return;
    using ptbfast::gemm::bf16::PackedB;
    // w [H, V], or [V, H] when transposed: element (h, v) at w[h * V + v] or w[v * H + h].
    packed_w.reset(w_transposed ? new PackedB(w, H, V, 1, H) : new PackedB(w, H, V, V, 1));
    packed_wt.reset(w_transposed ? new PackedB(w, V, H, H, 1) : new PackedB(w, V, H, 1, V));
  }
  // C = op(A) @ op(B) + beta * C on `kernel` where one was chosen for the full block, else as precision says.
  void gemm(const ptbfast::gemm::bf16::Kernel* kernel, bool trans_a, bool trans_b, int M, int N, int K,
            const float* A, int lda, const float* B, int ldb, float beta, float* Cm, int ldc) const {
    if (kernel)
      blas::gemm_bf16_on(kernel, trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, Cm, ldc);
    else
      blas::gemm_for(bf16)(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, Cm, ldc);
  }
  size_t scratch_floats(int H) const { return round_w ? static_cast<size_t>(H) * P : 0; }
  const float* columns(const float* w, int c0, int H) const {
    return w_transposed ? w + static_cast<long>(c0) * H : w + c0;
  }
  // Columns [c0, c0 + n) of w as a product operand, and its leading dimension: w itself in fp32 or
  // when it holds bf16 values; else rounded into scratch, in w's layout.
  const float* piece(float* scratch, const float* w, int c0, int n, int H, int& ld) const {
    if (!round_w) {
      ld = ldw;
      return columns(w, c0, H);
    }
    ld = w_transposed ? H : n;  // n whole rows of the [V, H] embedding, or n columns of all H rows of w
    round_rows_to_bf16(scratch, ld, columns(w, c0, H), ldw, w_transposed ? n : H, w_transposed ? H : n);
    return scratch;
  }
  // logits [rows, cols] = h_blk @ (columns [c0, c0 + cols) of w)
  void logits(float* out, const float* h_blk, int rows, int cols, int H, const float* w, int c0,
              float* scratch) const {
    const double start = profile::now();
    if (frozen_w) {
      const ptbfast::gemm::bf16::PackedB columns(*frozen_w, c0, cols);
      ptbfast::gemm::bf16::multiply_packed(frozen_kernel, h_blk, rows, H, 1, columns, out, cols, false);
      profile::since(profile::kOutputProducts, start);
      return;
    }
    if (packed_w) {  // (whole rows: c0 = 0, cols = V)
      ptbfast::gemm::bf16::multiply_packed(packed_kernel, h_blk, rows, H, 1, *packed_w, out, cols, false);
      profile::since(profile::kOutputProducts, start);
      return;
    }
    for (int p0 = 0; p0 < cols; p0 += P) {
      const int n = std::min(P, cols - p0);
      int ld = 0;
      const float* wp = piece(scratch, w, c0 + p0, n, H, ld);
      gemm(logits_kernel, false, w_transposed, rows, n, H, h_blk, H, wp, ld, 0.0f, out + p0, cols);
    }
    profile::since(profile::kOutputProducts, start);
  }
  // dh_blk (+)= d_logits [rows, cols] @ (columns [c0, c0 + cols) of w)^T; `overwrite`: = for the first.
  void dh_product(float* dh_blk, const float* d_logits, int rows, int cols, int H, const float* w, int c0,
                  bool overwrite, float* scratch) const {
    if (packed_wt) {
      ptbfast::gemm::bf16::multiply_packed(packed_kernel, d_logits, rows, cols, 1, *packed_wt, dh_blk, H, !overwrite);
      return;
    }
    for (int p0 = 0; p0 < cols; p0 += P) {
      const int n = std::min(P, cols - p0);
      int ld = 0;
      const float* wp = piece(scratch, w, c0 + p0, n, H, ld);
      gemm(dh_kernel, false, !w_transposed, rows, H, n, d_logits + p0, cols, wp, ld, overwrite && p0 == 0 ? 0.0f : 1.0f,
           dh_blk, H);
    }
  }
};

// losses of rows [r0, r0 + rows), chunk by chunk (the online logsumexp); returns nothing else.
static void block_losses(float* losses, float* logits, RunningLogSumExp* acc, float* scratch,
                         const ChunkedBlocks& blk, const float* h_blk, const float* w, const float* b,
                         const int64_t* targets, int rows, int H, int V) {
  std::fill(acc, acc + rows, RunningLogSumExp{});
  for (int c0 = 0; c0 < V; c0 += blk.C) {
    const int cols = std::min(blk.C, V - c0);
    blk.logits(logits, h_blk, rows, cols, H, w, c0, scratch);
    const double start = profile::now();
#pragma omp parallel for schedule(static) if (static_cast<long>(rows) * cols >= kParallelElements)
    for (int r = 0; r < rows; ++r)
      fold_chunk(acc[r], logits + static_cast<long>(r) * cols, b + c0, cols, c0, targets[r]);
    profile::since(profile::kSoftmaxPass, start);
  }
  for (int r = 0; r < rows; ++r) losses[r] = (acc[r].max - acc[r].target_logit) + std::log(acc[r].sum);
}

// ---- block sizes: how much of the [N, V] logits exists at once ---------------------------------
// `budget`: the floats the logits may take, kOutputBlockFloats less the rounding scratch of bf16's
// SGEMM path (so that it never holds more than fp32 does). Kernels that pack their operands hold w
// packed (2 bytes a weight) and a block's d_logits packed (2 bytes a logit) besides: not taken from
// the budget, which would cut medium's 700 rows into blocks too small for whole rows.
static long logits_budget(int H, int V, bool w_rounded_here) {
  return kOutputBlockFloats - (w_rounded_here ? static_cast<long>(H) * bf16_piece_columns(H, V) : 0L);
}

// A frozen model's evaluation holds w packed (2 bytes a weight) beside the logits, which take the rest
// of the budget (fp32 holds nothing beside them), but at least this many floats (4 MiB); in chunks
// down to kFrozenMinColumns wide (16 AMX panels) rather than blocks of fewer rows, which would each
// read all of the packed w (medium: 700 rows in 7 chunks of 1,440 columns, 4 MiB of logits instead
// of 14; bf16 peak RSS of bench's training and evaluation 263 -> 233 MB with the fused path's blocks
// and its packs freed, fp32's 239; Intel Xeon family 6 model 167).
static constexpr long kMinFrozenLogits = 1L << 20;
static constexpr int kFrozenMinColumns = 512;

// Evaluation: rows for column chunks of about 4,096 (efficient GEMMs) when V allows, as many as
// fit (the weight is read once per block of rows), then the columns that still fit (ChunkedBlocks
// evens out the chunk widths: 10,000 words in 1,024-row blocks gives 3 chunks of 3,334).
static void choose_forward_blocks(int N, int V, long budget, int& rows, int& columns) {
  if (rows <= 0) {
    const long min_columns = std::min<long>(V, columns > 0 ? columns : 4096);
    rows = static_cast<int>(std::max(1L, std::min<long>(N, budget / std::max(1L, min_columns))));
  }
  if (columns <= 0) columns = static_cast<int>(std::max(1L, budget / rows));
}

// Training: whole rows (one chunk of V columns, one pass) while at least kMinWholeRows of them
// (or all N) fit a block, that is up to 65,536 words; with a larger vocabulary, column chunks as
// evaluation's, in two passes. Measured on 400 rows, H = 200 (ms per forward+backward, 2 threads,
// AMD EPYC Zen 4): 100,000 words (41 whole rows per block) 550-660 whole rows vs 410-490 column
// chunks; 50,000 words (83 whole rows) 201 vs 213.
static constexpr int kMinWholeRows = 64;

static void choose_training_blocks(int N, int V, long budget, int& rows, int& columns) {
  const long whole_rows_per_block = std::max(1L, budget / std::max(V, 1));
  const bool column_chunks = columns > 0 ? columns < V : whole_rows_per_block < std::min(N, kMinWholeRows);
  if (column_chunks) {
    choose_forward_blocks(N, V, budget, rows, columns);
    return;
  }
  if (rows <= 0) rows = static_cast<int>(whole_rows_per_block);
  columns = V;
}

// ---- forward ----------------------------------------------------------------------------------

double output_layer_forward(float* losses, const float* h, const float* w, const float* b,
                            const int64_t* targets, int N, int H, int V, int block_rows, int block_columns,
                            bool w_transposed, bool bf16, bool w_is_bf16, const FrozenWeights* frozen) {
  const bool w_rounded_here = bf16 && !w_is_bf16 && !blas::gemm_bf16_rounds_operands(N, V, H);
  long budget = logits_budget(H, V, w_rounded_here);
  if (ChunkedBlocks::frozen_applies(bf16, frozen, H, V)) {  // (its packed w held beside the logits)
    budget = std::max(kMinFrozenLogits, budget - static_cast<long>(frozen->bytes() / sizeof(float)));
    if (block_rows <= 0)  // all rows while chunks of kFrozenMinColumns fit: the packed w read once
      block_rows = static_cast<int>(std::max(1L, std::min<long>(N, budget / std::min(V, kFrozenMinColumns))));
  }
  choose_forward_blocks(N, V, budget, block_rows, block_columns);
  ChunkedBlocks blk(N, H, V, block_rows, block_columns, w_transposed, bf16, w_is_bf16);
  blk.use_frozen(frozen, H, V);
  // (new[], not vector: every element is written, by a beta = 0 GEMM or a rounding pass, before it is
  // read; a vector zero-filled the 16 MiB logits on every call, 1.3 ms of a 21 ms small eval step on Zen 3.)
  const std::unique_ptr<float[]> logits(new float[static_cast<size_t>(blk.R) * blk.C]);
  const std::unique_ptr<float[]> scratch(new float[blk.scratch_floats(H)]);
  std::vector<RunningLogSumExp> acc(blk.R);
  for (int r0 = 0; r0 < N; r0 += blk.R)
    block_losses(losses + r0, logits.get(), acc.data(), scratch.get(), blk, h + static_cast<long>(r0) * H, w, b,
                 targets + r0, std::min(blk.R, N - r0), H, V);
  return total_of(losses, N);
}

// ---- backward ---------------------------------------------------------------------------------

// db_chunk [cols] += the column sums of d_logits [rows, cols], each thread owning whole stripes of
// columns and adding rows in order (deterministic); `round`: then d_logits rounded to bf16 in place.
static void add_column_sums(float* db_chunk, float* d_logits, int rows, int cols, bool round, bool parallel) {
  constexpr int kStripe = 256;
#pragma omp parallel for schedule(static) if (parallel)
  for (int v0 = 0; v0 < cols; v0 += kStripe) {
    const int v1 = std::min(cols, v0 + kStripe);
    for (int r = 0; r < rows; ++r) {
      float* src = d_logits + static_cast<long>(r) * cols;
#pragma omp simd
      for (int v = v0; v < v1; ++v) db_chunk[v] += src[v];
      if (round) {
#pragma omp simd
        for (int v = v0; v < v1; ++v) src[v] = round_bf16(src[v]);
      }
    }
  }
}

// Folds one chunk's d_logits [rows, cols] (columns [c0, c0 + cols) of rows [r0, r0 + rows)) into
// dw (w's layout), dh_blk and db: db += column sums (each thread owns whole 256-column stripes and
// adds rows in order: deterministic), dw's columns (+)= h_blk^T @ d_logits (overwritten by the
// first block of rows), dh_blk (+)= d_logits @ those columns^T (overwritten by the first chunk).
// bf16: d_logits is rounded in place after db has summed it, before the products (and w's columns
// piece by piece, ChunkedBlocks::piece).
static void fold_gradient_chunk(float* dw, float* dh_blk, float* db, float* d_logits, float* scratch,
                                const float* h_blk, const float* w, const ChunkedBlocks& blk, int rows, int cols,
                                int c0, bool first_rows, int H, bool parallel) {
  const double pass_start = profile::now();
  add_column_sums(db + c0, d_logits, rows, cols, blk.bf16 && !blk.kernels_round, parallel);
  profile::since(profile::kSoftmaxPass, pass_start);
  const double products_start = profile::now();
  const float beta_dw = first_rows ? 0.0f : 1.0f;
  if (blk.w_transposed)  // dw [V, H]: rows [c0, c0 + cols) = d_logits^T @ h_blk
    blk.gemm(blk.dw_kernel, true, false, cols, H, rows, d_logits, cols, h_blk, H, beta_dw,
             dw + static_cast<long>(c0) * H, H);
  else
    blk.gemm(blk.dw_kernel, true, false, H, cols, rows, h_blk, H, d_logits, cols, beta_dw, dw + c0, blk.ldw);
  blk.dh_product(dh_blk, d_logits, rows, cols, H, w, c0, c0 == 0, scratch);
  profile::since(profile::kOutputProducts, products_start);
}

// ---- backward, bf16 on ptbfast's kernels: the gradient packed as the softmax pass makes it ------
// bf16 on one of ptbfast's kernels (AMX, AVX512-BF16, the generic twin), whole rows of an untied
// softmax_w. Each block of rows: logits = h_blk @ w (w packed once per call), then one pass per group
// of 16 rows makes their losses and gradient and writes the gradient, as it makes it, in the two bf16
// layouts the products read (packing the float32 gradient after the pass read it twice more): the
// kernel's A (pairs along V; gemm::bf16::PackedA) for dh = d_logits @ w^T and B panels (pairs of rows)
// for dw = h^T @ d_logits, both of all N rows. After the last block, dh and dw are one product each.
// The layer is bound by memory traffic: with both products per block, medium's 4 blocks read and
// wrote dw (26 MB) and read w^T packed (13 MB) 4 times each, and dw took 3.5-4.3 ms a block against
// 1.6-1.9 for the logits' product of the same work (Intel Xeon family 6 model 167, 2 threads).
// Memory: w^T is packed where w's pack was, and dw, written last, holds a block's logits, the A pack
// and w's packs until then where they fit (medium: logits 7 + A 14 MB of its 26; large: also w's 30 MB
// of its 60), so the call holds less beside its outputs than with products per block (w and w^T
// packed, 26 MB in medium, and a block's logits and two packs, 14 MB): all rows' B panels (14 MB) and
// in medium w's packs (13 MB).
struct GradientPacks {
  ptbfast::gemm::bf16::PackedA* a;  // of all N rows
  uint32_t* panels;                 // PackedB of K = N, N = V
  long padded_pairs;                // the panels' pair rows: N's pairs padded to whole runs
  int V;
};

// The kernel of the fused path for blocks of R rows (the same for the logits, dh and dw), or "".
static std::string fused_gradient_kernel(const ChunkedBlocks& blk, int R, int N, int H, int V) {
  if (!(blk.bf16 && blk.kernels_round && blk.C >= V && !blk.w_transposed && N > 0)) return "";
  const std::string kernel = blas::bf16_packed_b_kernel(R, V, H);  // (M, N, K): logits, dh, dw
  if (kernel != blas::bf16_packed_b_kernel(N, H, V) || kernel != blas::bf16_packed_b_kernel(H, V, N)) return "";
  return kernel;
}

// Rows per block for the fused path: the budget's rows of logits, at least the 128 rows from which AMX
// is chosen, evened out over N (the caller makes them even: the panels pair rows, and a pair never
// spans two blocks). Blocks of fewer rows hold less logits, more read all of w packed (13 MB in medium).
static constexpr int kMinFusedRows = 128;

static int fused_block_rows(int N, int V, long budget) {
  const long most = std::max<long>(kMinFusedRows, budget / (2L * std::max(V, 1)));
  const long blocks = (N + most - 1) / most;
  return static_cast<int>(std::max(1L, (N + blocks - 1) / std::max(blocks, 1L)));
}

// Rows [16g, 16g + 16) of a block of `rows` gradient rows (fewer in the last group) that starts at
// row r0 (even) of the call into the packs: a whole row group at a time, so that both layouts are
// written in runs of 1 KB (8 pair rows of a panel; one A tile) instead of 128 or 64 bytes a page apart.
static void pack_gradient_group(const GradientPacks& g, int r0, int rows, int group, const float* first_row,
                                long ld) {
  namespace gb = ptbfast::gemm::bf16;
  constexpr int kRows = gb::kPairRun;  // 16: one tile's rows, 8 pair rows of a panel
  const int V = g.V, whole = V / 2, m0 = r0 + group * kRows, n_rows = std::min(kRows, r0 + rows - m0);
  for (int v0 = 0; v0 < V; v0 += gb::kPanel) {  // B panels: pair rows [m0 / 2, m0 / 2 + 8) of every panel
    const int n = std::min(gb::kPanel, V - v0);
    uint32_t* panel = g.panels + static_cast<long>(v0 / gb::kPanel) * g.padded_pairs * gb::kPanel;
    for (int r = 0; r < n_rows; r += 2) {
      uint32_t* out = panel + static_cast<long>(m0 + r) / 2 * gb::kPanel;
      const float* even = first_row + r * ld + v0;
      gb::pack_two_rows(out, even, r + 1 < n_rows ? even + ld : nullptr, n);
      std::fill(out + n, out + gb::kPanel, 0u);
    }
  }
  for (long q = 0; q < g.a->padded_pairs() / gb::kPairRun; ++q) {  // A: pairs [16q, 16q + 16) of each row
    const int first = static_cast<int>(q) * gb::kPairRun, n = std::max(0, std::min(gb::kPairRun, whole - first));
    const bool tail = V % 2 == 1 && whole >= first && whole < first + gb::kPairRun;  // an odd V's last value
    for (int r = 0; r < n_rows; ++r) {
      const float* row = first_row + r * ld;
      uint32_t* out = g.a->row_chunk(m0 + r, q);
      gb::pack_adjacent_pairs(out, row + 2L * first, n);
      int filled = n;
      if (tail) out[filled++] = bf16_bits(row[V - 1]);
      std::fill(out + filled, out + gb::kPairRun, 0u);
    }
  }
}

// The panels' padding: pair rows past the call's N rows (PackedA's constructor zeroes A's).
static void zero_gradient_padding(const GradientPacks& g, int N) {
  namespace gb = ptbfast::gemm::bf16;
  const long used = gb::pairs_of(N), panels = (static_cast<long>(g.V) + gb::kPanel - 1) / gb::kPanel;
  for (long p = 0; p < panels; ++p)
    std::fill(g.panels + (p * g.padded_pairs + used) * gb::kPanel,
              g.panels + (p + 1) * g.padded_pairs * gb::kPanel, 0u);
}

// The fused path (N >= 1, blocks of R rows, R even unless R >= N) on `kernel`.
static void fused_forward_backward(float* losses, float* dh, float* dw, float* db, const float* h, const float* w,
                                   const float* b, const int64_t* targets, float d_loss, int N, int H, int V, int R,
                                   const std::string& kernel) {
  namespace gb = ptbfast::gemm::bf16;
  // Until the last product writes dw, its storage holds, in turn and where they fit, a block's logits,
  // the A pack and w's packs; the rest is allocated. w^T is packed where w's pack was (two buffers,
  // allocated and freed in turn, left glibc's heap 30 MB larger for the rest of large's step: peak RSS
  // 603 -> 635 MB).
  FreeFloats in_dw(dw, static_cast<long>(H) * V);
  float* logits = reinterpret_cast<float*>(in_dw.take(static_cast<size_t>(R) * V));
  gb::PackedA a(kernel, N, V, in_dw.take(gb::PackedA::words_for(kernel, N, V)));
  uint32_t* w_packs = in_dw.take(std::max(gb::PackedB::words_for(H, V), gb::PackedB::words_for(V, H)));
  // The B panels (read by the last product) in a scratch slot, freed when the call ends (kept, they
  // would add to the peak of the rest of the step).
  struct ReleasePanels {
    ~ReleasePanels() { gb::release_thread_scratch(5); }
  } release_panels;
  const long padded_pairs = (gb::pairs_of(N) + gb::kPairRun - 1L) / gb::kPairRun * gb::kPairRun;
  const GradientPacks packs{&a, gb::thread_scratch(5, gb::PackedB::words_for(N, V)), padded_pairs, V};
  std::memset(db, 0, sizeof(float) * V);
  {
    double start = profile::now();
    const gb::PackedB packed_w(w, H, V, V, 1, w_packs);
    profile::since(profile::kOutputProducts, start);  // (packing is part of the products)
    for (int r0 = 0; r0 < N; r0 += R) {
      const int rows = std::min(R, N - r0), groups = (rows + 15) / 16;
      start = profile::now();
      gb::multiply_packed(kernel, h + static_cast<long>(r0) * H, rows, H, 1, packed_w, logits, V, false);
      profile::since(profile::kOutputProducts, start);
      start = profile::now();
      const bool parallel = static_cast<long>(rows) * V >= kParallelElements;
#pragma omp parallel for schedule(static) if (parallel)
      for (int group = 0; group < groups; ++group) {  // the loss and gradient of 16 rows, then their packs
        float* first_row = logits + 16L * group * V;
        for (int r = 16 * group; r < std::min(rows, 16 * group + 16); ++r)
          losses[r0 + r] = row_loss_and_gradient(logits + static_cast<long>(r) * V, b, V, targets[r0 + r], d_loss);
        pack_gradient_group(packs, r0, rows, group, first_row, V);
      }
      add_column_sums(db, logits, rows, V, false, parallel);
      profile::since(profile::kSoftmaxPass, start);
    }
  }
  zero_gradient_padding(packs, N);
  double start = profile::now();
  {
    const gb::PackedB packed_wt(w, V, H, 1, V, w_packs);
    gb::multiply_packed(a, packed_wt, dh, H, false);  // dh = d_logits @ w^T
  }
  const gb::PackedB d_logits_packed(N, V, packs.panels, gb::PackedB::WrittenByCaller{});
  gb::multiply_packed(kernel, h, H, 1, H, d_logits_packed, dw, V, false);  // dw = h^T @ d_logits (over A, logits)
  profile::since(profile::kOutputProducts, start);
}

// Training. Whole rows (one chunk of V columns): one GEMM per block of rows, then one pass per
// row that turns logits into the loss and, in place, into d_loss * (softmax - onehot), then the
// fold into dw, dh, db. Column chunks (vocabularies too large for whole rows): two passes over
// the chunks of each block of rows. The first makes the losses (as evaluation does); the second
// makes each chunk's logits again and turns them into d_loss * (exp(logit - logsumexp) - onehot),
// which is folded in the same way. A third more GEMM work than whole rows, but every product is
// large and each part of dw is written once per block of rows instead of once per few rows.
double output_layer_forward_backward(float* losses, float* dh, float* dw, float* db, const float* h,
                                     const float* w, const float* b, const int64_t* targets, float d_loss,
                                     int N, int H, int V, int block_rows, int block_columns, bool w_transposed,
                                     bool bf16) {
  const bool w_rounded_here = bf16 && !blas::gemm_bf16_rounds_operands(N, V, H);
  const bool rows_chosen_here = block_rows <= 0;
  const long budget = logits_budget(H, V, w_rounded_here);
  choose_training_blocks(N, V, budget, block_rows, block_columns);
  ChunkedBlocks blk(N, H, V, block_rows, block_columns, w_transposed, bf16);
  const std::string fused_kernel = fused_gradient_kernel(blk, blk.R, N, H, V);
  if (!fused_kernel.empty()) {
    int rows = rows_chosen_here ? fused_block_rows(N, V, budget) : blk.R;
    rows = rows < N ? rows + rows % 2 : rows;  // (even: the panels pair rows)
    if (fused_gradient_kernel(blk, rows, N, H, V) == fused_kernel) {
      fused_forward_backward(losses, dh, dw, db, h, w, b, targets, d_loss, N, H, V, rows, fused_kernel);
      return total_of(losses, N);
    }
  }
  if (N > 0) {
    const double pack_start = profile::now();
    blk.pack_w_once(w, N, H, V);
    profile::since(profile::kOutputProducts, pack_start);  // (packing is part of the products)
  }
  const bool whole_rows = blk.C >= V;
  // (new[], not vector: every element is written, by a beta = 0 GEMM or a rounding pass, before it is
  // read; a vector zero-filled the 16 MiB logits on every call, 1.3 ms of a 21 ms small eval step on Zen 3.)
  const std::unique_ptr<float[]> logits(new float[static_cast<size_t>(blk.R) * blk.C]),
      scratch(new float[blk.scratch_floats(H)]);
  std::vector<RunningLogSumExp> acc(whole_rows ? 0 : blk.R);
  std::memset(db, 0, sizeof(float) * V);
  if (N == 0) std::memset(dw, 0, sizeof(float) * H * V);

  for (int r0 = 0; r0 < N; r0 += blk.R) {
    const int rows = std::min(blk.R, N - r0);
    const float* h_blk = h + static_cast<long>(r0) * H;
    if (!whole_rows)  // first pass: the losses and each row's logsumexp
      block_losses(losses + r0, logits.get(), acc.data(), scratch.get(), blk, h_blk, w, b, targets + r0, rows, H,
                   V);
    for (int c0 = 0; c0 < V; c0 += blk.C) {
      const int cols = std::min(blk.C, V - c0);
      blk.logits(logits.get(), h_blk, rows, cols, H, w, c0, scratch.get());
      const bool parallel = static_cast<long>(rows) * cols >= kParallelElements;
      const double pass_start = profile::now();
#pragma omp parallel for schedule(static) if (parallel)
      for (int r = 0; r < rows; ++r) {
        float* row = logits.get() + static_cast<long>(r) * cols;
        const int64_t target = targets[r0 + r];
        if (whole_rows) {
          losses[r0 + r] = row_loss_and_gradient(row, b, V, target, d_loss);
          continue;
        }
        // softmax = exp(logit - max - log(sum)), the max subtracted first as in the whole-row pass.
        const float max = acc[r].max, log_sum = std::log(acc[r].sum);
        const float* bias = b + c0;
#pragma omp simd
        for (int v = 0; v < cols; ++v) row[v] = d_loss * exp_approx((row[v] + bias[v] - max) - log_sum);
        if (target >= c0 && target < c0 + cols) row[target - c0] -= d_loss;
      }
      profile::since(profile::kSoftmaxPass, pass_start);
      fold_gradient_chunk(dw, dh + static_cast<long>(r0) * H, db, logits.get(), scratch.get(), h_blk, w, blk,
                          rows, cols, c0, r0 == 0, H, parallel);
    }
  }
  return total_of(losses, N);
}

#include "isa_end.h"
