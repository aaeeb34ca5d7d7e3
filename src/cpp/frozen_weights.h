// bf16 weights packed once for every loss of a frozen model (evaluation, generation: ptbfast's
// LSTMLanguageModel.frozen()), instead of in each call: the B operands of the products whose kernel
// takes a B packed once (gemm/bf16: AMX, AVX512-BF16, the generic twin), packed exactly as each call
// would pack them. A kernel uses them where a call would have packed the same operand for the same
// kernel (the same bits with or without them), and with "auto" products also where a call of few
// rows would have run SGEMM on float32 weights (with B packed, few rows no longer cost more than the
// product saves: a word at a time, the output layer of 650 x 10,000 ran 1.5x, 20 rows 2.5x, 127 rows
// 4x its SGEMM on a rounded copy; Intel Xeon family 6 model 167, 2 threads).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "gemm/bf16/gemm_bf16.h"

namespace ptbfast {

struct FrozenWeights {
  // The output layer: B of the logits' product, [H, V] (softmax_w, or the embedding transposed), and
  // the kernel it was packed for (the one "auto" takes for many rows).
  std::unique_ptr<gemm::bf16::PackedB> output;
  std::string output_kernel;
  // An LSTM layer: Wx [In, 4H] of the input projection (and its kernel, used as output_kernel is), and
  // for a time loop of lstm_parts threads, each thread's columns of Wh (gates i, j, f, o side by side)
  // as lstm_forward packs them.
  std::unique_ptr<gemm::bf16::PackedB> lstm_input;
  std::string lstm_input_kernel;
  std::vector<std::unique_ptr<gemm::bf16::PackedB>> lstm_recurrent;
  int lstm_parts = 0;
  // Where a layer's products are SGEMMs (no kernel here takes packed weights) and the model asked for
  // them (generation: one step a call), its weights rounded to bf16 once, as each call would round
  // them: Wx [In, 4H], and the time loop's threads' columns of Wh gathered as lstm_forward gathers
  // them (for lstm_parts threads), instead of rounded copies of (In + H) x 4H floats written in every
  // call (large's generation: 30 ms a word against fp32's 4.9). As much memory as the kernel.
  std::unique_ptr<float[]> lstm_rounded_input, lstm_rounded_recurrent;
  int lstm_inputs = -1, lstm_units = -1;  // the layer's In and H (-1: not an LSTM layer's packs)

  // Bytes of packed weights held.
  size_t bytes() const {
    auto size = [](const std::unique_ptr<gemm::bf16::PackedB>& b) {
      return b ? gemm::bf16::PackedB::words_for(b->K(), b->N()) * sizeof(uint32_t) : 0;
    };
    size_t total = size(output) + size(lstm_input);
    for (const auto& part : lstm_recurrent) total += size(part);
    if (lstm_rounded_input) total += static_cast<size_t>(lstm_inputs) * 4 * lstm_units * sizeof(float);
    if (lstm_rounded_recurrent) total += static_cast<size_t>(lstm_units) * 4 * lstm_units * sizeof(float);
    return total;
  }
};

}  // namespace ptbfast
