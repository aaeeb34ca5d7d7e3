// One LSTM layer over T time steps (TF BasicLSTMCell), forward and backward through time.
//
// Both directions do their big products as single GEMMs over all T*B rows (the input projection
// forward; the weight gradients and dx backward) and keep only the recurrent product h_{t-1} @ Wh
// (B x H x 4H) inside the time loop. The element-wise gate math of a step is one fused SIMD pass.
#include <algorithm>
#include <cstring>
#include <vector>

#include "blas.h"
#include "kernels.h"
#include "vecmath.h"

namespace ptbfast {

// Rows at or above this many elements per step are split across OpenMP threads; below it the
// fork/join costs more than the work.
static constexpr long kParallelElements = 4096;

void lstm_forward(float* h_all, float* c_all, float* gates, const float* x, const float* c0, const float* h0,
                  const float* kernel, const float* bias, float forget_bias, int T, int B, int In, int H) {
  const int G = 4 * H;
  const long rows = static_cast<long>(T) * B;
  const float* w_input = kernel;                         // [In, 4H]
  const float* w_hidden = kernel + static_cast<long>(In) * G;  // [H, 4H]

  // Input projection of every step at once: gates = x @ Wx + bias.
  for (long r = 0; r < rows; ++r) std::memcpy(gates + r * G, bias, sizeof(float) * G);
  blas::sgemm(false, false, static_cast<int>(rows), G, In, 1.0f, x, In, w_input, G, 1.0f, gates, G);

  // The recurrent weight is the same for all T products: prepared (packed) once.
  const blas::PackedB recurrent(false, B, G, H, w_hidden, G, T);
  for (int t = 0; t < T; ++t) {
    const float* h_prev = t == 0 ? h0 : h_all + static_cast<long>(t - 1) * B * H;
    const float* c_prev = t == 0 ? c0 : c_all + static_cast<long>(t - 1) * B * H;
    float* g = gates + static_cast<long>(t) * B * G;
    float* c_out = c_all + static_cast<long>(t) * B * H;
    float* h_out = h_all + static_cast<long>(t) * B * H;
    recurrent.gemm(h_prev, H, 1.0f, g, G);

#pragma omp parallel for schedule(static) if (static_cast<long>(B) * H >= kParallelElements)
    for (int b = 0; b < B; ++b) {
      float* gi = g + static_cast<long>(b) * G;
      float* gj = gi + H;
      float* gf = gj + H;
      float* go = gf + H;
      const float* cp = c_prev + static_cast<long>(b) * H;
      float* cn = c_out + static_cast<long>(b) * H;
      float* hn = h_out + static_cast<long>(b) * H;
#pragma omp simd
      for (int k = 0; k < H; ++k) {
        const float i = sigmoid_approx(gi[k]);
        const float j = tanh_approx(gj[k]);
        const float f = sigmoid_approx(gf[k] + forget_bias);
        const float o = sigmoid_approx(go[k]);
        const float c = cp[k] * f + i * j;
        cn[k] = c;
        hn[k] = tanh_approx(c) * o;
        gi[k] = i;
        gj[k] = j;
        gf[k] = f;
        go[k] = o;
      }
    }
  }
}

void lstm_backward(float* dx, float* dc0, float* dh0, float* dkernel, float* dbias, const float* d_h_all,
                   const float* d_c_T, const float* d_h_T, const float* x, const float* c0, const float* h0,
                   const float* kernel, const float* h_all, const float* c_all, const float* gates, int T, int B,
                   int In, int H) {
  const int G = 4 * H;
  const long rows = static_cast<long>(T) * B;
  const long state = static_cast<long>(B) * H;
  const float* w_input = kernel;
  const float* w_hidden = kernel + static_cast<long>(In) * G;

  // d_gates holds the gradient w.r.t. the gate pre-activations of every step.
  std::vector<float> d_gates(static_cast<size_t>(rows) * G);
  // dc, dh: gradient flowing into c_t and h_t from step t+1 (then from the final state).
  std::vector<float> dc(state, 0.0f), dh(state, 0.0f);
  // copy_n, not memcpy: with B == 0 the vectors' data() is null, which memcpy may not be passed.
  if (d_c_T) std::copy_n(d_c_T, state, dc.data());
  if (d_h_T) std::copy_n(d_h_T, state, dh.data());

  const blas::PackedB recurrent_transposed(true, B, H, G, w_hidden, G, T);  // Wh^T, packed once
  for (int t = T - 1; t >= 0; --t) {
    const float* c_prev = t == 0 ? c0 : c_all + static_cast<long>(t - 1) * state;
    const float* c_t = c_all + static_cast<long>(t) * state;
    const float* g = gates + static_cast<long>(t) * B * G;
    const float* dh_out = d_h_all + static_cast<long>(t) * state;
    float* dg = d_gates.data() + static_cast<long>(t) * B * G;

#pragma omp parallel for schedule(static) if (state >= kParallelElements)
    for (int b = 0; b < B; ++b) {
      const float* gi = g + static_cast<long>(b) * G;
      const float* gj = gi + H;
      const float* gf = gj + H;
      const float* go = gf + H;
      float* dgi = dg + static_cast<long>(b) * G;
      float* dgj = dgi + H;
      float* dgf = dgj + H;
      float* dgo = dgf + H;
      const long off = static_cast<long>(b) * H;
#pragma omp simd
      for (int k = 0; k < H; ++k) {
        const float i = gi[k], j = gj[k], f = gf[k], o = go[k];
        const float tanh_c = tanh_approx(c_t[off + k]);
        const float d_h = dh_out[off + k] + dh[off + k];
        const float d_c = dc[off + k] + d_h * o * (1.0f - tanh_c * tanh_c);
        dgi[k] = d_c * j * i * (1.0f - i);
        dgj[k] = d_c * i * (1.0f - j * j);
        dgf[k] = d_c * c_prev[off + k] * f * (1.0f - f);
        dgo[k] = d_h * tanh_c * o * (1.0f - o);
        dc[off + k] = d_c * f;
      }
    }
    // Gradient into h_{t-1}: d_gates_t @ Wh^T.
    recurrent_transposed.gemm(dg, G, 0.0f, dh.data(), H);
  }
  std::copy_n(dc.data(), state, dc0);
  std::copy_n(dh.data(), state, dh0);
  if (T == 0) {  // no step: no gradient for the weights
    std::memset(dkernel, 0, sizeof(float) * (In + H) * G);
    std::memset(dbias, 0, sizeof(float) * G);
    return;
  }

  // Weight gradients over all steps at once: rows [0, In) see x, rows [In, In+H) see h_{t-1}.
  float* dw_input = dkernel;
  float* dw_hidden = dkernel + static_cast<long>(In) * G;
  blas::sgemm(true, false, In, G, static_cast<int>(rows), 1.0f, x, In, d_gates.data(), G, 0.0f, dw_input, G);
  blas::sgemm(true, false, H, G, B, 1.0f, h0, H, d_gates.data(), G, 0.0f, dw_hidden, G);
  blas::sgemm(true, false, H, G, static_cast<int>(rows - B), 1.0f, h_all, H,
              d_gates.data() + static_cast<long>(B) * G, G, 1.0f, dw_hidden, G);
  blas::sgemm(false, true, static_cast<int>(rows), In, G, 1.0f, d_gates.data(), G, w_input, G, 0.0f, dx, In);

  std::memset(dbias, 0, sizeof(float) * G);
  for (long r = 0; r < rows; ++r) {
    const float* src = d_gates.data() + r * G;
#pragma omp simd
    for (int k = 0; k < G; ++k) dbias[k] += src[k];
  }
}

}  // namespace ptbfast
