// The AMX kernel: TDPBF16PS on 16 x 16 fp32 tiles of C, reading the same packed operands as the
// dot-product kernels (gemm_bf16.h). A tile of A is 16 rows x 16 pair words as pack_a writes them
// (stride lda words); a tile of B is 16 pair rows x 16 columns of a packed panel (stride kPanel
// words: the panel's left or right half), which is the layout TDPBF16PS reads. Each call of the
// block works on 32 x 32 blocks of C: 4 C tiles (tmm0-3), 2 A tiles (tmm4-5), 2 B tiles (tmm6-7).
//
// K runs in chunks of 16 pairs, in order. Tile shapes are set per block (rows of the last tile of M,
// columns of the last tile of a panel, pairs of the last chunk of K), so nothing is read or written
// outside the operands; because loading a tile configuration clears the tiles, a block with a K tail
// stores C after the whole chunks and loads it back under the tail's configuration.
//
// Arithmetic: each C element takes the 16-pair chunks in order of k, as the dot-product kernels take
// pairs, but TDPBF16PS rounds inside a chunk in a way no simple model reproduces (measured on an Intel
// Xeon family 6 model 207: neither fma order of a pair, nor a pair or a chunk summed exactly and
// rounded once; tests/test_gemm_bf16.py), and it flushes a denormal product to +0 whatever its sign.
// So the kernel is tested against float32 summation's error bound, not bit for bit.
//
// Compiled with a target attribute (the tile intrinsics are inline assembly), so the build works with
// any x86-64 GCC >= 11 / Clang >= 12 on any CPU; nothing here runs unless the CPU has AMX-BF16 and
// Linux granted the process the tile state (cpu_features.cpp asks at import).
#include "gemm_bf16.h"

#if defined(__x86_64__) && ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11) || \
                            (defined(__clang__) && __clang_major__ >= 12))
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#define PTBFAST_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f")))

namespace ptbfast::gemm::bf16 {
namespace {

constexpr int kTile = 16;  // rows of a tile; columns of a C tile; pairs of an A tile's row
constexpr int kBlockPairs = 8 * kTile;  // K pairs per block (a multiple of kTile: a K tail is the last block's)

// The 64-byte operand of LDTILECFG (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of each tile
  uint8_t rows[16] = {};
};

// The tile shapes of one 32 x 32 block of C at one chunk of K: rows of its two row tiles (the
// second may be 0), columns of its two column tiles (the second may be 0), pairs of the chunk.
struct Shape {
  int rows0, rows1, cols0, cols1, pairs;
  bool operator==(const Shape& o) const {
    return rows0 == o.rows0 && rows1 == o.rows1 && cols0 == o.cols0 && cols1 == o.cols1 && pairs == o.pairs;
  }
};

PTBFAST_AMX_TARGET void configure(const Shape& s) {
  TileConfig cfg;
  auto set = [&cfg](int tile, int rows, int colsb) {
    cfg.rows[tile] = static_cast<uint8_t>(rows);
    cfg.colsb[tile] = static_cast<uint16_t>(colsb);
  };
  set(0, s.rows0, s.cols0 * 4);  // C tiles: [row tile][column tile]
  if (s.cols1 > 0) set(1, s.rows0, s.cols1 * 4);
  if (s.rows1 > 0) set(2, s.rows1, s.cols0 * 4);
  if (s.rows1 > 0 && s.cols1 > 0) set(3, s.rows1, s.cols1 * 4);
  set(4, s.rows0, s.pairs * 4);  // A tiles
  if (s.rows1 > 0) set(5, s.rows1, s.pairs * 4);
  set(6, s.pairs, s.cols0 * 4);  // B tiles
  if (s.cols1 > 0) set(7, s.pairs, s.cols1 * 4);
  // Not _tile_loadconfig: GCC 11-12's names only the first 8 bytes of the configuration as its operand,
  // so GCC 12 deleted the stores of rows and colsb before it, every tile stayed unconfigured and the
  // first tile load raised SIGILL (Intel Xeon family 6 model 207). Here the whole struct is the operand.
  asm volatile("ldtilecfg %0" ::"m"(cfg));
}

// C tiles from memory (accumulate) or zero.
PTBFAST_AMX_TARGET inline void load_c(const Shape& s, const float* c, long ldc, bool accumulate) {
  const long stride = ldc * 4;
  if (accumulate) {
    _tile_loadd(0, c, stride);
    if (s.cols1 > 0) _tile_loadd(1, c + kTile, stride);
    if (s.rows1 > 0) _tile_loadd(2, c + kTile * ldc, stride);
    if (s.rows1 > 0 && s.cols1 > 0) _tile_loadd(3, c + kTile * ldc + kTile, stride);
  } else {
    _tile_zero(0);
    if (s.cols1 > 0) _tile_zero(1);
    if (s.rows1 > 0) _tile_zero(2);
    if (s.rows1 > 0 && s.cols1 > 0) _tile_zero(3);
  }
}

PTBFAST_AMX_TARGET inline void store_c(const Shape& s, float* c, long ldc) {
  const long stride = ldc * 4;
  _tile_stored(0, c, stride);
  if (s.cols1 > 0) _tile_stored(1, c + kTile, stride);
  if (s.rows1 > 0) _tile_stored(2, c + kTile * ldc, stride);
  if (s.rows1 > 0 && s.cols1 > 0) _tile_stored(3, c + kTile * ldc + kTile, stride);
}

// C tiles += A rows [a, a + 32 rows) x B panel rows, over `chunks` chunks of s.pairs pairs from `a`/`b`.
PTBFAST_AMX_TARGET inline void multiply_chunks(const Shape& s, const uint32_t* a, long lda, const uint32_t* b,
                                               int chunks) {
  const long a_stride = lda * 4, b_stride = kPanel * 4;
  for (int q = 0; q < chunks; ++q, a += kTile, b += static_cast<long>(kTile) * kPanel) {
    _tile_loadd(4, a, a_stride);
    _tile_loadd(6, b, b_stride);
    _tile_dpbf16ps(0, 4, 6);
    if (s.cols1 > 0) {
      _tile_loadd(7, b + kTile, b_stride);
      _tile_dpbf16ps(1, 4, 7);
    }
    if (s.rows1 > 0) {
      _tile_loadd(5, a + kTile * lda, a_stride);
      _tile_dpbf16ps(2, 5, 6);
      if (s.cols1 > 0) _tile_dpbf16ps(3, 5, 7);
    }
  }
}

// Rows [m0, m1) and panels [p0, p1) of C, all of K, in blocks of kBlockPairs pairs: a block of a B
// panel (16 KB) stays in L1 while every row group of the task multiplies it, and C goes through the
// tiles once per block. Without the K blocks (all of K per 32 x 32 block of C) the rows of A were
// read again from L2 or L3 for every panel: 578 GFLOP/s on 2048^3 at 2 threads against MKL's 1,214
// (Intel Xeon family 6 model 207).
PTBFAST_AMX_TARGET void amx_block_impl(const Problem& p, int m0, int m1, int p0, int p1) {
  const PackedB& b = *p.b;
  const int pairs = b.pairs();
  Shape configured{-1, -1, -1, -1, -1};
  auto use = [&configured](const Shape& s) {
    if (!(s == configured)) configure(s);
    configured = s;
  };
  for (int k0 = 0; k0 < pairs; k0 += kBlockPairs) {
    const int kn = std::min(kBlockPairs, pairs - k0), whole = kn / kTile, tail = kn % kTile;
    const bool accumulate = k0 > 0 || p.accumulate;
    for (int panel = p0; panel < p1; ++panel) {
      const int n = panel * kPanel, cols = std::min(kPanel, b.N() - n);
      const uint32_t* packed = b.panel(panel) + static_cast<long>(k0) * kPanel;
      for (int m = m0; m < m1; m += 2 * kTile) {
        const int rows = std::min(2 * kTile, m1 - m);
        Shape s{std::min(rows, kTile), rows - std::min(rows, kTile), std::min(cols, kTile),
                cols - std::min(cols, kTile), kTile};
        const uint32_t* a = p.a + m * p.lda + k0;
        float* c = p.c + m * p.ldc + n;
        if (whole > 0) {
          use(s);
          load_c(s, c, p.ldc, accumulate);
          multiply_chunks(s, a, p.lda, packed, whole);
        }
        if (tail > 0) {  // (only in the last K block)
          if (whole > 0) store_c(s, c, p.ldc);  // (the tail's configuration clears the tiles)
          s.pairs = tail;
          use(s);
          load_c(s, c, p.ldc, whole > 0 || accumulate);
          multiply_chunks(s, a + whole * kTile, p.lda, packed + static_cast<long>(whole) * kTile * kPanel, 1);
        }
        store_c(s, c, p.ldc);
      }
    }
  }
  _tile_release();  // (so a context switch does not save 8 KB of tile state for this thread)
}

// GFLOP/s of TDPBF16PS on every OpenMP thread: 4 independent C tiles, A and B tiles loaded once.
PTBFAST_AMX_TARGET double amx_peak_impl() {
  constexpr long kIterations = 200'000;
  double seconds = 0.0;
  int threads = 1;
#pragma omp parallel reduction(max : seconds)
  {
#pragma omp single
    threads = omp_get_num_threads();
    alignas(64) static const uint32_t ones[kTile * kTile] = {};  // (zeros: the values do not matter)
    configure(Shape{kTile, kTile, kTile, kTile, kTile});
    _tile_loadd(4, ones, 64);
    _tile_loadd(5, ones, 64);
    _tile_loadd(6, ones, 64);
    _tile_loadd(7, ones, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
#pragma omp barrier
    const double start = omp_get_wtime();
    for (long i = 0; i < kIterations; ++i) {  // (the tile instructions are volatile assembly: kept)
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    alignas(64) float sink[kTile * kTile];
    _tile_stored(0, sink, 64);  // (waits for the chain on tile 0)
    seconds = omp_get_wtime() - start;
    _tile_release();
  }
  return 4.0 * 2 * kTile * kTile * 2 * kTile * kIterations * threads / seconds / 1e9;
}

}  // namespace

const BlockFn amx_block = &amx_block_impl;
double (*const amx_peak)() = &amx_peak_impl;

}  // namespace ptbfast::gemm::bf16

#else  // a compiler without AMX intrinsics, or not x86-64: the kernel is absent

namespace ptbfast::gemm::bf16 {
const BlockFn amx_block = nullptr;
double (*const amx_peak)() = nullptr;
}

#endif
