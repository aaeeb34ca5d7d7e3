// The blocked loops of the dot-product kernels, written once over a `Lanes` type that gives 16 fp32
// lanes and the pair dot product (generic.cpp: plain C++ that computes what the instruction does;
// avx512_bf16.cpp: VDPBF16PS). Each including file defines PTBFAST_BF16_TARGET (its target
// attribute, or nothing) first; everything here has internal linkage, so the copies compiled for
// different instruction sets never meet in the linker.
//
// Blocking: for each block of kPairBlock K pairs, each panel of 32 columns of B (kPairBlock x 128
// bytes = 16 KB, kept in L1 while it is used) is multiplied by every group of kRows rows of A in the
// block. C is loaded (or zero) at the first K block, accumulated in registers over one K block and
// stored; the order of the sums is k = 0, 1, ... for every element, whatever the blocking.
#pragma once

#include <algorithm>
#include <cstdint>

#include "gemm_bf16.h"

#ifndef PTBFAST_BF16_TARGET
#error "define PTBFAST_BF16_TARGET before including blocked.h"
#endif

namespace ptbfast::gemm::bf16 {
namespace {

constexpr int kRows = 8;          // rows of A per micro-kernel: 8 x 2 accumulators
constexpr int kPairBlock = 128;  // K pairs per block

// C[rows, cols] (+)= A[rows, pairs] @ panel[pairs, 32] at one K block: rows <= kRows, cols <= 16 *
// vectors (a panel of 16 columns or fewer, the last of an N that is not a multiple of 32, takes one
// vector: the second would multiply the panel's zero padding).
template <class Lanes, int rows, int vectors>
PTBFAST_BF16_TARGET inline void micro_kernel(const uint32_t* a, long lda, const uint32_t* panel, int pairs,
                                             float* c, long ldc, int cols, bool load_c) {
  using Vec = typename Lanes::Vec;
  const int n0 = std::min(cols, 16), n1 = std::max(0, cols - 16);  // valid lanes of the two vectors
  Vec acc[rows][vectors];
  for (int r = 0; r < rows; ++r) {
    acc[r][0] = load_c ? Lanes::load(c + r * ldc, n0) : Lanes::zero();
    if (vectors == 2) acc[r][vectors - 1] = load_c && n1 > 0 ? Lanes::load(c + r * ldc + 16, n1) : Lanes::zero();
  }
  for (int k = 0; k < pairs; ++k) {
    const uint32_t* b = panel + static_cast<long>(k) * kPanel;
    for (int r = 0; r < rows; ++r) {
      const uint32_t pair = a[r * lda + k];
      Lanes::dot(acc[r][0], pair, b);
      if (vectors == 2) Lanes::dot(acc[r][vectors - 1], pair, b + 16);
    }
  }
  for (int r = 0; r < rows; ++r) {
    Lanes::store(c + r * ldc, acc[r][0], n0);
    if (vectors == 2 && n1 > 0) Lanes::store(c + r * ldc + 16, acc[r][vectors - 1], n1);
  }
}

template <class Lanes, int vectors>
PTBFAST_BF16_TARGET void micro_kernel_rows(int rows, const uint32_t* a, long lda, const uint32_t* panel, int pairs,
                                           float* c, long ldc, int cols, bool load_c) {
  switch (rows) {  // one unrolled kernel per row count of the last group
    case 8: micro_kernel<Lanes, 8, vectors>(a, lda, panel, pairs, c, ldc, cols, load_c); break;
    case 7: micro_kernel<Lanes, 7, vectors>(a, lda, panel, pairs, c, ldc, cols, load_c); break;
    case 6: micro_kernel<Lanes, 6, vectors>(a, lda, panel, pairs, c, ldc, cols, load_c); break;
    case 5: micro_kernel<Lanes, 5, vectors>(a, lda, panel, pairs, c, ldc, cols, load_c); break;
    case 4: micro_kernel<Lanes, 4, vectors>(a, lda, panel, pairs, c, ldc, cols, load_c); break;
    case 3: micro_kernel<Lanes, 3, vectors>(a, lda, panel, pairs, c, ldc, cols, load_c); break;
    case 2: micro_kernel<Lanes, 2, vectors>(a, lda, panel, pairs, c, ldc, cols, load_c); break;
    default: micro_kernel<Lanes, 1, vectors>(a, lda, panel, pairs, c, ldc, cols, load_c); break;
  }
}
static_assert(kRows == 8, "micro_kernel_rows has a case per row count up to kRows");

// Rows [m0, m1) and panels [p0, p1) of C, all of K.
template <class Lanes>
PTBFAST_BF16_TARGET void block(const Problem& p, int m0, int m1, int p0, int p1) {
  const PackedB& b = *p.b;
  const int pairs = b.pairs();
  for (int k0 = 0; k0 < pairs; k0 += kPairBlock) {
    const int kn = std::min(kPairBlock, pairs - k0);
    const bool load_c = k0 > 0 || p.accumulate;
    for (int panel = p0; panel < p1; ++panel) {
      const uint32_t* packed = b.panel(panel) + static_cast<long>(k0) * kPanel;
      const int n = panel * kPanel, cols = std::min(kPanel, b.N() - n);
      const auto micro_kernels = cols > 16 ? &micro_kernel_rows<Lanes, 2> : &micro_kernel_rows<Lanes, 1>;
      for (int m = m0; m < m1; m += kRows)
        micro_kernels(std::min(kRows, m1 - m), p.a + m * p.lda + k0, p.lda, packed, kn, p.c + m * p.ldc + n, p.ldc,
                      cols, load_c);
    }
  }
}

}  // namespace
}  // namespace ptbfast::gemm::bf16
