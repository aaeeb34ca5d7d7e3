// Declarations of ptbfast's kernels. Conventions (after llm.c):
//  - every kernel is a forward/backward pair in one .cpp file;
//  - outputs first, then inputs, then sizes; every pointer's shape is in the comment above it;
//  - all arrays are dense row-major float32; callers have validated shapes and ids;
//  - kernels allocate only what their own scratch needs and never touch Python objects, so they run
//    with the GIL released and are safe to call from several threads at once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ptbfast {

// ---- embedding.cpp ---------------------------------------------------------------------------
// out [n, H] = params[ids[k]] for k < n.   params [V, H]
template <typename Id>
void embedding_forward(float* out, const float* params, const Id* ids, int64_t n, int64_t H);

// Deterministic scatter-add, as unique ids + summed rows: rows of d_out that share an id are added
// in position order by one thread, so the bits do not depend on the thread count.
//   unique_ids [U] ascending, summed [U, H] = sum of d_out[k] over k with ids[k] == unique_ids[u].
template <typename Id>
void embedding_backward_sparse(std::vector<int64_t>& unique_ids, std::vector<float>& summed,
                               const float* d_out, const Id* ids, int64_t n, int64_t H);

// Dense form: d_params [V, H] += scale * scatter of d_out [n, H] by ids (rows of one id added in
// position order). With d_params = the embedding and scale = -lr it is the sparse SGD update.
template <typename Id>
void embedding_backward_dense(float* d_params, const float* d_out, const Id* ids, int64_t n, int64_t H,
                              float scale = 1.0f);

// ---- sgd.cpp -----------------------------------------------------------------------------------
// y[n] += alpha * x[n]: the SGD update of a dense parameter, in place, one pass.
void axpy(float* y, const float* x, float alpha, int64_t n);

// ---- bf16.cpp ----------------------------------------------------------------------------------
// out[n] = in[n] rounded to bfloat16 (nearest even), as float32 with the low 16 bits zero.
// out may be in.
void round_to_bf16(float* out, const float* in, int64_t n);
// out[r, c] = in[r, c] rounded, for the [rows, cols] blocks of two row-major matrices with leading
// dimensions ld_out and ld_in (a piece of a weight matrix into a compact scratch).
void round_rows_to_bf16(float* out, int ld_out, const float* in, int ld_in, int rows, int cols);

// ---- lstm.cpp -------------------------------------------------------------------------------
// One LSTM layer over T steps, TF BasicLSTMCell (gate columns i, j, f, o):
//   g = [x_t, h_{t-1}] @ kernel + bias;  c_t = c_{t-1} σ(f + forget_bias) + σ(i) tanh(j);
//   h_t = tanh(c_t) σ(o).
// Outputs: h_all [T,B,H], c_all [T,B,H], gates [T,B,4H] (activated σi, tanh j, σf, σo, kept for
// the backward pass). Inputs: x [T,B,In], c0 [B,H], h0 [B,H], kernel [In+H, 4H], bias [4H].
// bf16 (mixed precision): every h_t is rounded to bf16 as it is made (it is a product operand in
// every use), h0 is rounded for the first recurrent product, and the kernel is rounded here, into
// scratch fp32 needs too (an already rounded kernel stays the same); x is the caller's, already
// rounded. Cell state and gate math stay float32.
void lstm_forward(float* h_all, float* c_all, float* gates, const float* x, const float* c0, const float* h0,
                  const float* kernel, const float* bias, float forget_bias, int T, int B, int In, int H,
                  bool bf16 = false);

// Backward through time. Outputs (overwritten): dx [T,B,In], dc0 [B,H], dh0 [B,H],
// dkernel [In+H,4H], dbias [4H]. Inputs: d_h_all [T,B,H]; d_c_T, d_h_T [B,H] or nullptr for zero;
// the forward's inputs and outputs. bf16: the gate gradients are rounded to bf16 for the products
// (dx, dh, dkernel), h0 for dkernel and the kernel for dx and dh; dbias sums them unrounded.
void lstm_backward(float* dx, float* dc0, float* dh0, float* dkernel, float* dbias, const float* d_h_all,
                   const float* d_c_T, const float* d_h_T, const float* x, const float* c0, const float* h0,
                   const float* kernel, const float* h_all, const float* c_all, const float* gates, int T, int B,
                   int In, int H, bool bf16 = false);

// ---- output_layer.cpp -----------------------------------------------------------------------
// At most this many logits exist at once (16 MiB): the whole small-config batch (400 x 10,000)
// is one block, while a 100,000-word vocabulary still needs only 16 MiB. Python reads it as
// _core.OUTPUT_BLOCK_FLOATS for its memory estimate.
constexpr long kOutputBlockFloats = 4L << 20;

// logits = h @ w + b; losses[r] = logsumexp(logits[r]) - logits[r, targets[r]]. Logits are made
// block_rows rows by block_columns columns at a time (an online logsumexp across the column
// chunks), so memory is block_rows*block_columns floats whatever N and V are; a block size <= 0
// is chosen here (output_layer.cpp says how).
//   losses [N], h [N,H], w [H,V] (or [V,H] with w_transposed: tied weights, w = the embedding),
//   b [V], targets [N] in [0, V). Returns the sum of losses (double).
// bf16: w is rounded to bf16 here (piece by piece, never a whole rounded copy); h is the
// caller's, already rounded.
double output_layer_forward(float* losses, const float* h, const float* w, const float* b,
                            const int64_t* targets, int N, int H, int V, int block_rows, int block_columns,
                            bool w_transposed, bool bf16 = false);

// Same loss, plus the gradients of d_loss * sum(losses): dh [N,H], dw (w's layout), db [V]
// (overwritten). Whole rows of logits (one pass) when block_columns >= V, or when it is <= 0 and
// the vocabulary allows; otherwise block_rows x block_columns at a time in two passes over the
// columns. Block sizes <= 0 are chosen here. bf16: the logits' gradient is rounded to bf16 for the
// dw and dh products (db sums it unrounded), w is rounded as in the forward; h is the caller's,
// already rounded.
double output_layer_forward_backward(float* losses, float* dh, float* dw, float* db, const float* h,
                                     const float* w, const float* b, const int64_t* targets, float d_loss,
                                     int N, int H, int V, int block_rows, int block_columns, bool w_transposed,
                                     bool bf16 = false);

}  // namespace ptbfast
