// The blocked loops of the dot-product kernels, written once over a `Lanes` type that gives 16 fp32
// lanes and the pair dot product (generic.cpp: plain C++ that computes what the instruction does;
// avx512_bf16.cpp: VDPBF16PS). Each including file defines PTBFAST_BF16_TARGET (its target
// attribute, or nothing) first; everything here has internal linkage, so the copies compiled for
// different instruction sets never meet in the linker.
//
// Blocking: for each block of kPairBlock K pairs, each panel of 32 columns of B (kPairBlock x 128
// bytes = 16 KB, kept in L1 while it is used) is multiplied by every group of kRows rows of A in the
// block; a block of 4 rows or fewer, which reads B once, takes 2 or 4 panels at a time instead. C is
// loaded (or zero) at the start of each K block, accumulated in registers over it and stored; the
// order of the sums is k = 0, 1, ... for every element, whatever the blocking.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstdint>

#include "gemm_bf16.h"

#ifndef PTBFAST_BF16_TARGET
#error "define PTBFAST_BF16_TARGET before including blocked.h"
#endif

namespace ptbfast::gemm::bf16 {
namespace {

constexpr int kRows = 8;          // rows of A per micro-kernel: 8 x 2 accumulators (fewer rows: more)
constexpr int kPairBlock = 128;  // K pairs per block

// C[rows, cols] (+)= A[rows, pairs] @ B at one K block, 16 columns a vector: vector v of each pair
// row at b + v / 2 * panel_words + v % 2 * 16 (panel v / 2's half v % 2), for C's columns 16 v on.
// One panel (1 vector where it has 16 columns or fewer, the last of an N that is not a multiple of
// 32: a second would multiply the panel's zero padding; else 2), or for few rows several whole
// panels side by side (cols = 32 each): one row's 2 sums a pair of A would leave the instruction
// waiting on its own latency (1 x 650 @ 650 x 2600 ran at 40 % of VDPBF16PS's peak with 2).
template <class Lanes, int rows, int vectors>
PTBFAST_BF16_TARGET inline void micro_kernel(const uint32_t* a, long lda, const uint32_t* b, long panel_words,
                                             int pairs, float* c, long ldc, int cols, bool load_c) {
  using Vec = typename Lanes::Vec;
  int lanes[vectors];  // valid columns of each vector
  for (int v = 0; v < vectors; ++v) lanes[v] = std::max(0, std::min(16, cols - 16 * v));
  const uint32_t* column[vectors];
  for (int v = 0; v < vectors; ++v) column[v] = b + v / 2 * panel_words + v % 2 * 16;
  Vec acc[rows][vectors];
  for (int r = 0; r < rows; ++r)
    for (int v = 0; v < vectors; ++v)
      acc[r][v] = load_c && lanes[v] > 0 ? Lanes::load(c + r * ldc + 16 * v, lanes[v]) : Lanes::zero();
  for (int k = 0; k < pairs; ++k) {
    for (int r = 0; r < rows; ++r) {
      const uint32_t pair = a[r * lda + k];
      for (int v = 0; v < vectors; ++v) Lanes::dot(acc[r][v], pair, column[v] + static_cast<long>(k) * kPanel);
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int v = 0; v < vectors; ++v)
      if (lanes[v] > 0) Lanes::store(c + r * ldc + 16 * v, acc[r][v], lanes[v]);
}

// The micro-kernel unrolled for `n` rows (1 to max_rows): one instance per row count of a last group.
template <class Lanes, int max_rows, int vectors>
PTBFAST_BF16_TARGET void micro_kernel_rows(int n, const uint32_t* a, long lda, const uint32_t* b, long panel_words,
                                           int pairs, float* c, long ldc, int cols, bool load_c) {
  assert(n >= 1 && n <= max_rows);
  if constexpr (max_rows > 1) {
    if (n < max_rows)
      return micro_kernel_rows<Lanes, max_rows - 1, vectors>(n, a, lda, b, panel_words, pairs, c, ldc, cols, load_c);
  }
  micro_kernel<Lanes, max_rows, vectors>(a, lda, b, panel_words, pairs, c, ldc, cols, load_c);
}

// Rows [m0, m1) and panels [p0, p1) of C, all of K. Groups of kRows rows take a panel at a time (16
// sums); rows of a block of at most 4 take 2 whole panels at a time, of at most 2, 4 (16 sums too).
template <class Lanes>
PTBFAST_BF16_TARGET void block(const Problem& p, int m0, int m1, int p0, int p1) {
  const PackedB& b = *p.b;
  const int pairs = b.pairs(), rows = m1 - m0;
  const long panel_words = static_cast<long>(b.padded_pairs()) * kPanel;
  const int whole_panels_end = std::min(p1, b.N() / kPanel);  // panels [p0, this) have 32 columns
  const int wide = rows <= 2 ? 4 : rows <= 4 ? 2 : 1;           // whole panels at a time
  for (int k0 = 0; k0 < pairs; k0 += kPairBlock) {
    const int kn = std::min(kPairBlock, pairs - k0);
    const bool load_c = k0 > 0 || p.accumulate;
    for (int panel = p0; panel < p1;) {
      const int n = panel * kPanel;
      int take = 1, cols = std::min(kPanel, b.N() - n);
      auto kernel = cols > 16 ? &micro_kernel_rows<Lanes, kRows, 2> : &micro_kernel_rows<Lanes, kRows, 1>;
      if (wide == 4 && panel + 4 <= whole_panels_end) {
        take = 4, kernel = &micro_kernel_rows<Lanes, 2, 8>;
      } else if (wide >= 2 && panel + 2 <= whole_panels_end) {
        take = 2, kernel = &micro_kernel_rows<Lanes, 4, 4>;
      }
      const uint32_t* packed = b.panel(panel) + static_cast<long>(k0) * kPanel;
      for (int m = m0; m < m1; m += kRows)
        kernel(std::min(kRows, m1 - m), p.a + m * p.lda + k0, p.lda, packed, panel_words, kn, p.c + m * p.ldc + n,
               p.ldc, take > 1 ? take * kPanel : cols, load_c);
      panel += take;
    }
  }
}

}  // namespace
}  // namespace ptbfast::gemm::bf16
