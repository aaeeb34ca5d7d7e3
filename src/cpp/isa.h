// Instruction-set levels of the kernels, chosen once at run time.
//
// Every kernel file (embedding, sgd, dropout, bf16 rounding, lstm, output_layer) is compiled once per level
// into a namespace of its own (isa_begin.h), and kernel_table.cpp, compiled with them, lists that
// level's kernels in a KernelTable. The entry points of kernels.h (dispatch.cpp) call the table of
// the active level: at import the highest level that was compiled and that this CPU and OS run
// (cpu_features.cpp: CPUID + XGETBV); PTBFAST_ISA (ptbfast.ops) may choose a lower one.
//
// Levels: "baseline" (x86-64 as the compiler targets it by default, or the only level off x86-64),
// "avx2" (AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE: x86-64-v3), "avx512" (x86-64-v4: AVX-512
// F/BW/DQ/VL/CD). A -march=native build (PTBFAST_NATIVE=ON) compiles one level, "native".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels.h"

namespace ptbfast {

struct KernelTable {
  decltype(&ptbfast::embedding_forward) embedding_forward;
  decltype(&ptbfast::embedding_backward_sparse) embedding_backward_sparse;
  decltype(&ptbfast::embedding_backward_dense) embedding_backward_dense;
  decltype(&ptbfast::sum_of_squares) sum_of_squares;
  decltype(&ptbfast::axpy) axpy;
  decltype(&ptbfast::philox_uniform) philox_uniform;
  decltype(&ptbfast::dropout_mask) dropout_mask;
  decltype(&ptbfast::round_to_bf16) round_to_bf16;
  decltype(&ptbfast::round_rows_to_bf16) round_rows_to_bf16;
  decltype(&ptbfast::lstm_forward) lstm_forward;
  decltype(&ptbfast::lstm_freeze_bf16) lstm_freeze_bf16;
  decltype(&ptbfast::lstm_backward) lstm_backward;
  decltype(&ptbfast::output_layer_forward) output_layer_forward;
  decltype(&ptbfast::output_layer_forward_backward) output_layer_forward_backward;
  decltype(&ptbfast::row_product) row_product;
  decltype(&ptbfast::apply_vecmath) apply_vecmath;
};

// The active level's kernels.
const KernelTable& kernels();
// The active level's name, the levels this build compiled (lowest first) and those of them this CPU runs.
std::string kernels_isa();
std::vector<std::string> compiled_isas();
std::vector<std::string> supported_isas();
// Makes `name` the active level; std::invalid_argument if it was not compiled or the CPU cannot
// run it (the message names the levels it can).
void set_kernels_isa(const std::string& name);

}  // namespace ptbfast
