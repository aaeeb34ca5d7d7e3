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

// At most this many logits exist at once (16 MiB): the whole small-config batch (400 x 10,000)
// is one block, while a 100,000-word vocabulary still needs only 16 MiB. Python reads it as
// _core.OUTPUT_BLOCK_FLOATS for its memory estimate.
constexpr long kOutputBlockFloats = 4L << 20;

// Which of vecmath.h's functions apply_vecmath computes.
enum class VecMath { kExp, kSigmoid, kTanh };

struct FrozenWeights;  // frozen_weights.h: bf16 weights packed once for a frozen model's losses

// Every kernel: embedding.cpp, sgd.cpp, dropout.cpp, bf16.cpp, lstm.cpp, output_layer.cpp. Each of those files is
// compiled once per instruction-set level (isa.h); these entry points run the chosen level's.
#include "kernel_declarations.inc"

}  // namespace ptbfast
