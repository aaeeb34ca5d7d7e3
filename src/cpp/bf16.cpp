// Bulk rounding to bfloat16 (bf16.h): the layer inputs of a bf16 step (in place, from Python) and
// the weights inside the LSTM and output-layer kernels, which also round what they make themselves
// (h_t, d_gates, d_logits) in the passes that make it. It has no backward: rounding is treated as
// the identity by the gradients, as every mixed-precision trainer does.
#include "bf16.h"
#include "kernels.h"

#include "isa_begin.h"  // (compiled once per instruction-set level: isa.h)

void round_to_bf16(float* out, const float* in, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t k = 0; k < n; ++k) out[k] = round_bf16(in[k]);
}

void round_rows_to_bf16(float* out, int ld_out, const float* in, int ld_in, int rows, int cols) {
#pragma omp parallel for schedule(static) if (static_cast<int64_t>(rows) * cols > (1 << 16))
  for (int r = 0; r < rows; ++r) {
    const float* src = in + static_cast<int64_t>(r) * ld_in;
    float* dst = out + static_cast<int64_t>(r) * ld_out;
#pragma omp simd
    for (int c = 0; c < cols; ++c) dst[c] = round_bf16(src[c]);
  }
}

#include "isa_end.h"
