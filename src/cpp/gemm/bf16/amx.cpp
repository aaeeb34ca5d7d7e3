// The AMX kernel: TDPBF16PS on 16 x 16 fp32 tiles of C. B is the packed B of the dot-product
// kernels (gemm_bf16.h): a tile of B is 16 pair rows x 16 columns of a panel (stride kPanel words:
// the panel's left or right half), the layout TDPBF16PS reads, and panels are padded with zero
// pair rows to a multiple of 16. A is packed here as pack_a writes it, into rows padded to a
// multiple of 16 pair words (zeros) and a stride that is not a multiple of 4 KB (16 rows 4 KB apart
// share one set of the L1 cache: 2048^3 ran at a fifth of the speed), with zero rows up to a
// multiple of 32. So every tile has one shape (16 rows x 64 bytes): the tiles are configured once
// per thread and call, and nothing is read outside the packed operands.
//
// Each 32 x 32 block of C lives in 4 C tiles (tmm0-3) while A tiles (tmm4-5) and B tiles (tmm6-7)
// stream through K in blocks of at most kMaxBlockPairs pairs: a block of a B panel stays in L1 while
// every row group of the task multiplies it. A block of C at the edge of C goes through a 32 x 32
// buffer on the stack. (Tile shapes cut to the edges cost a tile configuration per block, and a K
// tail one more with C stored and reloaded: 400x200 @ 200x10000 ran at 240 GFLOP/s.)
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

#include "../../bf16.h"
#include "../../profile.h"

#if defined(__x86_64__) && ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11) || \
                            (defined(__clang__) && __clang_major__ >= 12))
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>

#define PTBFAST_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f")))

namespace ptbfast::gemm::bf16 {
namespace {

constexpr int kTile = 16;             // rows of a tile; columns of a C tile; pairs of an A tile's row
constexpr int kMaxBlockPairs = 512;    // K pairs per block at most (a multiple of kTile)
constexpr int kRowChunk = 256;         // rows of C per task (a multiple of 32)
constexpr int kPanelChunk = 4;         // panels of C per task
constexpr long kParallelMacs = 1L << 18;  // below, one thread (the fork costs more)
static_assert(kPairRun == kTile, "B panels are padded to whole tiles of pairs");

// The 64-byte operand of LDTILECFG (palette 1): every tile 16 rows x 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

PTBFAST_AMX_TARGET void configure() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = kTile;
    cfg.colsb[t] = 64;
  }
  // Not _tile_loadconfig: GCC 11-12's names only the first 8 bytes of the configuration as its operand,
  // so GCC 12 deleted the stores of rows and colsb before it, every tile stayed unconfigured and the
  // first tile load raised SIGILL (Intel Xeon family 6 model 207). Here the whole struct is the operand.
  asm volatile("ldtilecfg %0" ::"m"(cfg));
}

struct Operands {
  const uint32_t* a;  // tiles of A: tile (g, q) = rows [16g, 16g + 16) x pairs [16q, 16q + 16), 1 KB each
  long chunks;        // tiles per 16 rows (padded pairs / 16)
  const PackedB* b;
  float* c;
  long ldc;
  int M;
  bool accumulate;
};

// C block [32 x 32] at (m, panel) over pairs [k0, k0 + kn): two row tiles unless rows <= 16, two
// column tiles unless cols <= 16; C through `edge` when the block is cut by C's edges.
PTBFAST_AMX_TARGET inline void block_32x32(const Operands& o, int m, int panel, int k0, int kn, bool load_c) {
  const int rows = std::min(2 * kTile, o.M - m), cols = std::min(kPanel, o.b->N() - panel * kPanel);
  const bool two_rows = rows > kTile, two_cols = cols > kTile, whole = rows == 2 * kTile && cols == kPanel;
  alignas(64) float edge[2 * kTile * kPanel];
  float* c = o.c + m * o.ldc + static_cast<long>(panel) * kPanel;
  float* cb = whole ? c : edge;
  const long cstride = whole ? o.ldc * 4 : kPanel * 4;
  if (load_c) {
    if (!whole) {
      for (int r = 0; r < 2 * kTile; ++r)
        for (int j = 0; j < kPanel; ++j) edge[r * kPanel + j] = r < rows && j < cols ? c[r * o.ldc + j] : 0.0f;
    }
    _tile_loadd(0, cb, cstride);
    if (two_cols) _tile_loadd(1, cb + kTile, cstride);
    if (two_rows) _tile_loadd(2, cb + kTile * (cstride / 4), cstride);
    if (two_rows && two_cols) _tile_loadd(3, cb + kTile * (cstride / 4) + kTile, cstride);
  } else {
    _tile_zero(0);
    if (two_cols) _tile_zero(1);
    if (two_rows) _tile_zero(2);
    if (two_rows && two_cols) _tile_zero(3);
  }
  constexpr long kTileWords = kTile * kTile;
  const uint32_t* a = o.a + ((m / kTile) * o.chunks + k0 / kTile) * kTileWords;
  const uint32_t* a_next = a + o.chunks * kTileWords;  // the second row tile's
  const uint32_t* b = o.b->panel(panel) + static_cast<long>(k0) * kPanel;
  const long b_stride = kPanel * 4;
  for (int q = 0; q < kn; q += kTile, a += kTileWords, a_next += kTileWords, b += kTile * kPanel) {
    _tile_loadd(4, a, 64);
    _tile_loadd(6, b, b_stride);
    _tile_dpbf16ps(0, 4, 6);
    if (two_cols) {
      _tile_loadd(7, b + kTile, b_stride);
      _tile_dpbf16ps(1, 4, 7);
    }
    if (two_rows) {
      _tile_loadd(5, a_next, 64);
      _tile_dpbf16ps(2, 5, 6);
      if (two_cols) _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, cb, cstride);
  if (two_cols) _tile_stored(1, cb + kTile, cstride);
  if (two_rows) _tile_stored(2, cb + kTile * (cstride / 4), cstride);
  if (two_rows && two_cols) _tile_stored(3, cb + kTile * (cstride / 4) + kTile, cstride);
  if (!whole)
    for (int r = 0; r < rows; ++r) std::memcpy(c + r * o.ldc, edge + r * kPanel, sizeof(float) * cols);
}

// Rows [m0, m1) and panels [p0, p1) of C, all of K.
PTBFAST_AMX_TARGET void task(const Operands& o, int m0, int m1, int p0, int p1) {
  const int padded = o.b->padded_pairs();
  const int blocks = (padded + kMaxBlockPairs - 1) / kMaxBlockPairs;
  const int per_block = (padded / kTile + blocks - 1) / blocks * kTile;  // equal blocks of whole tiles
  for (int k0 = 0; k0 < padded; k0 += per_block) {
    const int kn = std::min(per_block, padded - k0);
    for (int panel = p0; panel < p1; ++panel)
      for (int m = m0; m < m1; m += 2 * kTile) block_32x32(o, m, panel, k0, kn, k0 > 0 || o.accumulate);
  }
}

PTBFAST_AMX_TARGET void amx_multiply_tiles_impl(const uint32_t* a, int M, const PackedB& b, float* C, long ldc,
                                                bool accumulate);

// op(A) [M, K] (M, K >= 1) as AmxTiles(M, K), in this thread's scratch slot 3.
PTBFAST_AMX_TARGET const uint32_t* pack_tiles(const float* A, int M, int K, long row_stride, long col_stride) {
  // A as tiles (1 KB each, contiguous: rows of a row-major A 4 KB apart shared one L1 set and a
  // tile's rows spanned 16 pages; 2048^3 ran at a fifth of the speed), rows padded to 32.
  const AmxTiles layout(M, K);
  const long chunks = layout.chunks, groups = layout.groups, padded = chunks * kTile;
  uint32_t* a = thread_scratch(3, layout.words());
  // Row m of op(A) goes to row m % 16 of the tiles of row group m / 16, 16 pair words to a tile.
  auto to_tiles = [&](long m, const uint32_t* words) {  // words: the row's padded pairs
    for (long q = 0; q < chunks; ++q)
      std::memcpy(a + ((m / kTile * chunks + q) * kTile + m % kTile) * kTile, words + q * kTile, 64);
  };
  const int whole = K / 2;
  if (col_stride == 1 || K == 1) {  // rows contiguous: each row packed on the stack, then to its tiles
    const double start = profile::now_outside();
    uint32_t* per_thread = thread_scratch(2, static_cast<size_t>(omp_get_max_threads()) * padded);
#pragma omp parallel if (static_cast<long>(M) * padded >= (1L << 16))
    {
      uint32_t* words = per_thread + omp_get_thread_num() * padded;
#pragma omp for schedule(static)
      for (long m = 0; m < groups * kTile; ++m) {
        std::fill_n(words, padded, 0u);
        if (m < M) {
          const float* row = A + m * row_stride;
          pack_adjacent_pairs(words, row, whole);
          if (K % 2 == 1) words[whole] = bf16_bits(row[(K - 1) * col_stride]);
        }
        to_tiles(m, words);
      }
    }
    profile::since_outside(profile::kBf16Packing, start);
  } else {  // A transposed: pack_a's rows, then to the tiles
    uint32_t* rows = thread_scratch(2, static_cast<size_t>(groups) * kTile * padded);
    pack_a(A, M, K, row_stride, col_stride, rows, padded);
    std::fill(rows + static_cast<long>(M) * padded, rows + groups * kTile * padded, 0u);
    const double start = profile::now_outside();
#pragma omp parallel for schedule(static) if (static_cast<long>(M) * padded >= (1L << 16))
    for (long m = 0; m < groups * kTile; ++m) to_tiles(m, rows + m * padded);
    profile::since_outside(profile::kBf16Packing, start);
  }
  return a;
}

PTBFAST_AMX_TARGET void amx_multiply_impl(const float* A, int M, long row_stride, long col_stride, const PackedB& b,
                                          float* C, long ldc, bool accumulate) {
  if (M == 0 || b.N() == 0 || b.pairs() == 0) {  // (nothing to pack: the empty cases are the tiles' run's)
    amx_multiply_tiles_impl(nullptr, M, b, C, ldc, accumulate);
    return;
  }
  amx_multiply_tiles_impl(pack_tiles(A, M, b.K(), row_stride, col_stride), M, b, C, ldc, accumulate);
}

PTBFAST_AMX_TARGET void amx_multiply_unpacked_impl(const float* A, int M, long a_row_stride, long a_col_stride,
                                                   const float* B, int K, int N, long b_row_stride,
                                                   long b_col_stride, float* C, long ldc, bool accumulate) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // C = 0 (or C stays)
    const PackedB none(B, 0, N, b_row_stride, b_col_stride);
    amx_multiply_tiles_impl(nullptr, M, none, C, ldc, accumulate);
    return;
  }
  const uint32_t* tiles = pack_tiles(A, M, K, a_row_stride, a_col_stride);
  for_column_blocks(B, K, N, b_row_stride, b_col_stride, [&](const PackedB& block, int j0) {
    amx_multiply_tiles_impl(tiles, M, block, C + j0, ldc, accumulate);
  });
}

// This thread's share of the tasks (an orphaned omp for, inside amx_multiply_tiles_impl's parallel
// region). A function of its own because Clang does not give the body of an OpenMP region its
// enclosing function's target attribute, and cannot compile the tile intrinsics without it.
PTBFAST_AMX_TARGET void run_tasks(const Operands& o, int row_chunks, int panels) {
  const int panel_chunks = (panels + kPanelChunk - 1) / kPanelChunk, tasks = row_chunks * panel_chunks;
  configure();
#pragma omp for schedule(dynamic)
  for (int t = 0; t < tasks; ++t) {
    const int r = t % row_chunks, p = t / row_chunks;
    task(o, r * kRowChunk, std::min(o.M, (r + 1) * kRowChunk), p * kPanelChunk,
         std::min(panels, (p + 1) * kPanelChunk));
  }
  _tile_release();  // (so a context switch does not save 8 KB of tile state for this thread)
}

PTBFAST_AMX_TARGET void amx_multiply_tiles_impl(const uint32_t* a, int M, const PackedB& b, float* C, long ldc,
                                                bool accumulate) {
  const int N = b.N(), panels = b.panels();
  if (M == 0 || N == 0) return;
  if (b.pairs() == 0) {  // K = 0: C = 0 (or C stays)
    if (!accumulate)
      for (int m = 0; m < M; ++m) std::fill_n(C + m * ldc, N, 0.0f);
    return;
  }
  const Operands o{a, AmxTiles(M, b.K()).chunks, &b, C, ldc, M, accumulate};
  const int row_chunks = (M + kRowChunk - 1) / kRowChunk, panel_chunks = (panels + kPanelChunk - 1) / kPanelChunk;
  const long macs = static_cast<long>(M) * N * b.K();
  const int tasks = row_chunks * panel_chunks;
#pragma omp parallel if (macs >= kParallelMacs && tasks > 1)
  run_tasks(o, row_chunks, panels);
}

// Seconds one thread takes for TDPBF16PS on 4 independent C tiles, A and B tiles loaded once, started
// together with the team's other threads (a function of its own: see run_tasks).
constexpr long kPeakIterations = 50'000;
PTBFAST_AMX_TARGET double time_tile_chains() {
  alignas(64) static const uint32_t ones[kTile * kTile] = {};  // (zeros: the values do not matter)
  configure();
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
  for (long i = 0; i < kPeakIterations; ++i) {  // (the tile instructions are volatile assembly: kept)
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  alignas(64) float sink[kTile * kTile];
  _tile_stored(0, sink, 64);  // (waits for the chain on tile 0)
  const double seconds = omp_get_wtime() - start;
  _tile_release();
  return seconds;
}

// GFLOP/s of the chains on every OpenMP thread.
double amx_peak_once() {
  double seconds = 0.0;
  int threads = 1;
#pragma omp parallel reduction(max : seconds)
  {
#pragma omp single
    threads = omp_get_num_threads();
    seconds = time_tile_chains();
  }
  return 4.0 * 2 * kTile * kTile * 2 * kTile * kPeakIterations * threads / seconds / 1e9;
}

// The best of several runs (a ceiling; see avx512_bf16.cpp).
double amx_peak_impl() {
  double best = 0.0;
  for (int run = 0; run < kPeakRuns; ++run) best = std::max(best, amx_peak_once());
  return best;
}

}  // namespace

void (*const amx_multiply)(const float*, int, long, long, const PackedB&, float*, long, bool) = &amx_multiply_impl;
void (*const amx_multiply_tiles)(const uint32_t*, int, const PackedB&, float*, long, bool) = &amx_multiply_tiles_impl;
void (*const amx_multiply_unpacked)(const float*, int, long, long, const float*, int, int, long, long, float*, long,
                                    bool) = &amx_multiply_unpacked_impl;
double (*const amx_peak)() = &amx_peak_impl;

}  // namespace ptbfast::gemm::bf16

#else  // a compiler without AMX intrinsics, or not x86-64: the kernel is absent

namespace ptbfast::gemm::bf16 {
void (*const amx_multiply)(const float*, int, long, long, const PackedB&, float*, long, bool) = nullptr;
void (*const amx_multiply_tiles)(const uint32_t*, int, const PackedB&, float*, long, bool) = nullptr;
void (*const amx_multiply_unpacked)(const float*, int, long, long, const float*, int, int, long, long, float*, long,
                                    bool) = nullptr;
double (*const amx_peak)() = nullptr;
}

#endif
