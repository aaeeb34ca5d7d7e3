// kernels.h's entry points: each calls the kernel of the active instruction-set level (isa.h).

#include "isa.h"

namespace ptbfast {

void embedding_forward(float* out, const float* params, const int64_t* ids, int64_t n, int64_t H) {
  kernels().embedding_forward(out, params, ids, n, H);
}

void embedding_backward_sparse(std::vector<int64_t>& unique_ids, std::vector<float>& summed, const float* d_out,
                               const int64_t* ids, int64_t n, int64_t H) {
  kernels().embedding_backward_sparse(unique_ids, summed, d_out, ids, n, H);
}

void embedding_backward_dense(float* d_params, const float* d_out, const int64_t* ids, int64_t n, int64_t H,
                              float scale) {
  kernels().embedding_backward_dense(d_params, d_out, ids, n, H, scale);
}

double sum_of_squares(const float* x, int64_t n) { return kernels().sum_of_squares(x, n); }

void axpy(float* y, const float* x, float alpha, int64_t n) { kernels().axpy(y, x, alpha, n); }

void philox_uniform(float* out, int64_t n, uint64_t seed, uint32_t stream) {
  kernels().philox_uniform(out, n, seed, stream);
}

void dropout_mask(float* out, int64_t n, uint64_t seed, uint32_t stream, float keep_prob, float scale) {
  kernels().dropout_mask(out, n, seed, stream, keep_prob, scale);
}

void round_to_bf16(float* out, const float* in, int64_t n) { kernels().round_to_bf16(out, in, n); }

void round_rows_to_bf16(float* out, int ld_out, const float* in, int ld_in, int rows, int cols) {
  kernels().round_rows_to_bf16(out, ld_out, in, ld_in, rows, cols);
}

void lstm_forward(float* h_all, float* c_all, float* gates, const float* x, const float* c0, const float* h0,
                  const float* kernel, const float* bias, float forget_bias, int T, int B, int In, int H, bool bf16,
                  const FrozenWeights* frozen) {
  kernels().lstm_forward(h_all, c_all, gates, x, c0, h0, kernel, bias, forget_bias, T, B, In, H, bf16, frozen);
}

void lstm_freeze_bf16(FrozenWeights& frozen, const float* kernel, int In, int H, bool rounded_copies) {
  kernels().lstm_freeze_bf16(frozen, kernel, In, H, rounded_copies);
}

void lstm_backward(float* dx, float* dc0, float* dh0, float* dkernel, float* dbias, const float* d_h_all,
                   const float* d_c_T, const float* d_h_T, const float* x, const float* c0, const float* h0,
                   const float* kernel, const float* h_all, const float* c_all, const float* gates, int T, int B,
                   int In, int H, bool bf16) {
  kernels().lstm_backward(dx, dc0, dh0, dkernel, dbias, d_h_all, d_c_T, d_h_T, x, c0, h0, kernel, h_all, c_all, gates,
                          T, B, In, H, bf16);
}

double output_layer_forward(float* losses, const float* h, const float* w, const float* b, const int64_t* targets,
                            int N, int H, int V, int block_rows, int block_columns, bool w_transposed, bool bf16,
                            bool w_is_bf16, const FrozenWeights* frozen) {
  return kernels().output_layer_forward(losses, h, w, b, targets, N, H, V, block_rows, block_columns, w_transposed,
                                        bf16, w_is_bf16, frozen);
}

double output_layer_forward_backward(float* losses, float* dh, float* dw, float* db, const float* h, const float* w,
                                     const float* b, const int64_t* targets, float d_loss, int N, int H, int V,
                                     int block_rows, int block_columns, bool w_transposed, bool bf16) {
  return kernels().output_layer_forward_backward(losses, dh, dw, db, h, w, b, targets, d_loss, N, H, V, block_rows,
                                                 block_columns, w_transposed, bf16);
}

void row_product(float* y, const float* x, const float* w, int K, int N, int ldw, bool w_transposed, float alpha,
                 float beta) {
  kernels().row_product(y, x, w, K, N, ldw, w_transposed, alpha, beta);
}

void apply_vecmath(VecMath function, float* out, const float* in, int64_t n) {
  kernels().apply_vecmath(function, out, in, n);
}

}  // namespace ptbfast
