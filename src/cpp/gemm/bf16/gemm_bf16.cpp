// The bf16 GEMM's packing, threading and table of kernels (gemm_bf16.h).
#include "gemm_bf16.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "../../bf16.h"
#include "../../cpu_features.h"
#include "../../profile.h"

namespace ptbfast::gemm::bf16 {

// Below this many multiply-adds a product runs on one thread (the fork costs more).
static constexpr long kParallelMacs = 1L << 18;
// Threads split C into blocks of this many rows (a multiple of blocked.h's 8) and panels.
static constexpr int kRowChunk = 64;
static constexpr int kPanelChunk = 4;

// The packers' inner loops run along whichever of the operand's two directions is contiguous, so
// that they vectorise (target_clones: an AVX-512 and an AVX2 copy chosen at load time on x86-64).
// Walking each column of a row-major B pair by pair read it with a stride of N floats: packing a
// 650 x 10000 weight took longer than multiplying it on AMX (Intel Xeon, family 6 model 167).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__)  // (ifunc: glibc's)
#define PTBFAST_PACK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PTBFAST_PACK_CLONES
#endif

// out[j] = pair word of (even[j], odd[j]) for j < n; odd may be null (a zero row).
PTBFAST_PACK_CLONES void pack_two_rows(uint32_t* __restrict out, const float* __restrict even,
                                       const float* __restrict odd, int n) {
  if (odd == nullptr) {
#pragma omp simd
    for (int j = 0; j < n; ++j) out[j] = bf16_bits(even[j]);
    return;
  }
#pragma omp simd
  for (int j = 0; j < n; ++j) out[j] = bf16_bits(even[j]) | (static_cast<uint32_t>(bf16_bits(odd[j])) << 16);
}

// out[j] = pair word of (row[2j], row[2j + 1]) for j < pairs: both floats of a pair read as one
// 64-bit word, so that the loop vectorises without gathers.
PTBFAST_PACK_CLONES void pack_adjacent_pairs(uint32_t* __restrict out, const float* __restrict row, int pairs) {
#pragma omp simd
  for (int j = 0; j < pairs; ++j) {
    uint64_t two;
    std::memcpy(&two, row + 2 * j, sizeof two);
    float even, odd;
    const uint32_t lo = static_cast<uint32_t>(two), hi = static_cast<uint32_t>(two >> 32);
    std::memcpy(&even, &lo, sizeof even);
    std::memcpy(&odd, &hi, sizeof odd);
    out[j] = bf16_bits(even) | (static_cast<uint32_t>(bf16_bits(odd)) << 16);
  }
}

// Any strides: out[j * out_stride] = pair word of (even[j * stride], odd[j * stride]); odd may be null.
static void pack_pairs_strided(uint32_t* out, long out_stride, const float* even, const float* odd, long stride,
                               int n) {
  for (int j = 0; j < n; ++j)
    out[j * out_stride] =
        bf16_bits(even[j * stride]) | (odd ? static_cast<uint32_t>(bf16_bits(odd[j * stride])) << 16 : 0u);
}

// The pair words of pairs [k0, k0 + n) of `cols` columns, column j's K values contiguous at
// column(j) (a transposed operand), written as rows: out[(k - k0) * out_ld + j]. Through a 32 x 16
// block on the stack, so that reads and writes both run along memory.
static void pack_columns_as_rows(uint32_t* out, long out_ld, const float* first_column, long column_stride, int K,
                                 int k0, int n, int cols) {
  constexpr int kBlock = 16;
  uint32_t block[kPanel][kBlock];
  for (int c0 = 0; c0 < cols; c0 += kPanel) {
    const int cn = std::min(kPanel, cols - c0);
    for (int kb = 0; kb < n; kb += kBlock) {
      const int kn = std::min(kBlock, n - kb), first_pair = k0 + kb;
      const int whole = std::max(0, std::min(kn, K / 2 - first_pair));  // pairs with both values
      for (int j = 0; j < cn; ++j) {
        const float* col = first_column + (c0 + j) * column_stride + 2L * first_pair;
        pack_adjacent_pairs(block[j], col, whole);
        if (whole < kn) block[j][whole] = bf16_bits(col[2L * whole]);  // an odd K's last value
      }
      for (int k = 0; k < kn; ++k)
        for (int j = 0; j < cn; ++j) out[(kb + k) * out_ld + c0 + j] = block[j][k];
    }
  }
}

// 64-byte aligned: AMX reads a tile row of 64 bytes, one cache line when aligned and two otherwise
// (new[] gives 16 bytes: a 32 x 650 @ 650 x 128 product ran at 1,000 GFLOP/s on one core instead of
// 1,450; Intel Xeon family 6 model 167).
uint32_t* aligned_words(std::unique_ptr<uint32_t[]>& owner, size_t words) {
  owner.reset(new uint32_t[words + 16]);
  const uintptr_t address = reinterpret_cast<uintptr_t>(owner.get());
  return owner.get() + (16 - address / 4 % 16) % 16;
}

namespace {
struct ScratchSlot {
  std::unique_ptr<uint32_t[]> storage;
  size_t capacity = 0;  // in words, after alignment
  uint32_t* aligned = nullptr;
};
thread_local ScratchSlot scratch_slots[kScratchSlots];
}  // namespace

void release_thread_scratch(int slot) { scratch_slots[slot] = ScratchSlot{}; }

uint32_t* thread_scratch(int slot, size_t words) {
  ScratchSlot& s = scratch_slots[slot];
  if (s.capacity < words) {
    s.storage.reset();  // (free first: the old and new buffers need not coexist)
    s.aligned = aligned_words(s.storage, words);
    s.capacity = words;
  }
  return s.aligned;
}

PackedB::PackedB(const float* B, int K, int N, long row_stride, long col_stride)
    : K_(K), N_(N), words_(aligned_words(owned_, words_for(K, N))) {
  pack(B, row_stride, col_stride);
}

PackedB::PackedB(int K, int N, WrittenByCaller) : K_(K), N_(N), words_(aligned_words(owned_, words_for(K, N))) {}

PackedB::PackedB(const float* B, int K, int N, long row_stride, long col_stride, uint32_t* storage)
    : K_(K), N_(N), words_(storage) {
  pack(B, row_stride, col_stride);
}

void PackedB::pack(const float* B, long row_stride, long col_stride) {
  const int K = K_, N = N_;
  const double start = profile::now_outside();
  const int P = pairs(), padded = padded_pairs();
  const bool parallel = static_cast<long>(K) * N >= (1L << 16);
  if (col_stride == 1 || N == 1) {
    // Row-major B (columns contiguous): each pair row of a panel is two runs of up to 32 floats.
    // kPairRun pair rows at a time across every panel, so that B's rows are read along their length
    // (a panel at a time walked down all K rows, a page each: 650 x 10,000 packed at ~1 ns a value,
    // Intel Xeon family 6 model 167), each panel written 2 KB at a time.
#pragma omp parallel for schedule(static) if (parallel)
    for (int k0 = 0; k0 < padded; k0 += kPairRun) {
      for (int p = 0; p < panels(); ++p) {
        uint32_t* out = words_ + static_cast<long>(p) * padded * kPanel;
        const int n0 = p * kPanel, cols = std::min(kPanel, N - n0);
        for (int k = k0; k < k0 + kPairRun; ++k) {
          if (k >= P) {  // the padding's zero pair rows
            std::fill(out + static_cast<long>(k) * kPanel, out + (k + 1L) * kPanel, 0u);
            continue;
          }
          const float* even = B + (2L * k) * row_stride + n0 * col_stride;
          pack_two_rows(out + static_cast<long>(k) * kPanel, even, 2 * k + 1 < K ? even + row_stride : nullptr, cols);
          std::fill(out + static_cast<long>(k) * kPanel + cols, out + (k + 1L) * kPanel, 0u);
        }
      }
    }
    profile::since_outside(profile::kBf16Packing, start);
    return;
  }
  // Transposed B (rows contiguous): each column of a panel is a run of K floats.
#pragma omp parallel for schedule(static) if (parallel)
  for (int p = 0; p < panels(); ++p) {
    uint32_t* out = words_ + static_cast<long>(p) * padded * kPanel;
    const int n0 = p * kPanel, cols = std::min(kPanel, N - n0);
    if (row_stride == 1) {
      pack_columns_as_rows(out, kPanel, B + n0 * col_stride, col_stride, K, 0, P, cols);
      for (int k = 0; k < P; ++k) std::fill(out + static_cast<long>(k) * kPanel + cols, out + (k + 1L) * kPanel, 0u);
    } else {
      for (int j = 0; j < cols; ++j) {
        const float* col = B + (n0 + j) * col_stride;
        pack_pairs_strided(out + j, kPanel, col, col + row_stride, 2 * row_stride, K / 2);
        if (K % 2 == 1) out[static_cast<long>(K / 2) * kPanel + j] = bf16_bits(col[(K - 1) * row_stride]);
      }
      for (int k = 0; k < P; ++k) std::fill(out + static_cast<long>(k) * kPanel + cols, out + (k + 1L) * kPanel, 0u);
    }
    std::fill(out + static_cast<long>(P) * kPanel, out + static_cast<long>(padded) * kPanel, 0u);
  }
  profile::since_outside(profile::kBf16Packing, start);
}

void pack_a(const float* A, int M, int K, long row_stride, long col_stride, uint32_t* out, long out_ld) {
  const double start = profile::now_outside();
  const int P = pairs_of(K), whole = K / 2;
  if (col_stride == 1 || K == 1) {  // rows contiguous: each row's pairs at once
#pragma omp parallel for schedule(static) if (static_cast<long>(M) * K >= (1L << 16))
    for (int m = 0; m < M; ++m) {
      const float* row = A + m * row_stride;
      uint32_t* dst = out + m * out_ld;
      pack_adjacent_pairs(dst, row, whole);  // (K = 1: no whole pair)
      if (whole < P) dst[whole] = bf16_bits(row[(K - 1) * col_stride]);
      std::fill(dst + P, dst + out_ld, 0u);
    }
  } else if (row_stride == 1) {  // A transposed (op(A)[m, k] = A[k * col_stride + m]): 32 rows at a time
#pragma omp parallel for schedule(static) if (static_cast<long>(M) * K >= (1L << 16))
    for (int m0 = 0; m0 < M; m0 += kPanel) {
      const int mn = std::min(kPanel, M - m0);
      for (int k = 0; k < P; ++k) {
        const float* even = A + (2L * k) * col_stride + m0;
        uint32_t words[kPanel];
        pack_two_rows(words, even, 2 * k + 1 < K ? even + col_stride : nullptr, mn);
        for (int i = 0; i < mn; ++i) out[(m0 + i) * out_ld + k] = words[i];
      }
      for (int i = 0; i < mn; ++i) std::fill(out + (m0 + i) * out_ld + P, out + (m0 + i + 1) * out_ld, 0u);
    }
  } else {
    for (int m = 0; m < M; ++m) {
      uint32_t* dst = out + m * out_ld;
      pack_pairs_strided(dst, 1, A + m * row_stride, A + m * row_stride + col_stride, 2 * col_stride, whole);
      if (whole < P) dst[whole] = bf16_bits(A[m * row_stride + (K - 1) * col_stride]);
      std::fill(dst + P, dst + out_ld, 0u);
    }
  }
  profile::since_outside(profile::kBf16Packing, start);
}

void run_blocks(BlockFn block, const Problem& problem) {
  const int M = problem.M, panels = problem.b->panels();
  if (M == 0 || panels == 0) return;
  if (problem.b->pairs() == 0) {  // K = 0: C = 0 (or C stays)
    if (!problem.accumulate)
      for (int m = 0; m < M; ++m) std::fill_n(problem.c + m * problem.ldc, problem.b->N(), 0.0f);
    return;
  }
  const int row_chunks = (M + kRowChunk - 1) / kRowChunk, panel_chunks = (panels + kPanelChunk - 1) / kPanelChunk;
  const long macs = static_cast<long>(M) * problem.b->N() * problem.b->K();
#pragma omp parallel for schedule(dynamic) if (macs >= kParallelMacs && row_chunks * panel_chunks > 1)
  for (int task = 0; task < row_chunks * panel_chunks; ++task) {
    const int r = task % row_chunks, p = task / row_chunks;
    block(problem, r * kRowChunk, std::min(M, (r + 1) * kRowChunk), p * kPanelChunk,
          std::min(panels, (p + 1) * kPanelChunk));
  }
}

// The block function of a dot-product kernel named ("avx512_bf16", else the generic twin).
static BlockFn dot_product_block(const std::string& kernel) {
  return kernel == "avx512_bf16" ? avx512_bf16_block : &generic_block;
}

// C = op(A) @ op(B) + beta * C on one of the kernels that read a packed B: both operands packed per
// call, A once and B a block of columns at a time (for_column_blocks: a few MB however large B is).
static void multiply_on(const char* kernel, bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda,
                        const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (beta != 0.0f && beta != 1.0f)
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) C[static_cast<long>(m) * ldc + n] *= beta;
  if (std::string(kernel) == "amx") {  // (amx.cpp: A packed as tiles)
    amx_multiply_unpacked(A, M, trans_a ? 1 : lda, trans_a ? lda : 1, B, K, N, trans_b ? 1 : ldb, trans_b ? ldb : 1, C,
                          ldc, beta != 0.0f);
    return;
  }
  const int pairs = pairs_of(K);
  uint32_t* a = thread_scratch(1, static_cast<size_t>(M) * pairs);
  pack_a(A, M, K, trans_a ? 1 : lda, trans_a ? lda : 1, a, pairs);
  const BlockFn block = dot_product_block(kernel);
  for_column_blocks(B, K, N, trans_b ? 1 : ldb, trans_b ? ldb : 1, [&](const PackedB& b, int j0) {
    run_blocks(block, Problem{a, pairs, &b, C + j0, ldc, M, beta != 0.0f});
  });
}

static void generic_multiply(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda,
                             const float* B, int ldb, float beta, float* C, int ldc) {
  multiply_on("generic", trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

static void avx512_bf16_multiply(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda,
                                 const float* B, int ldb, float beta, float* C, int ldc) {
  multiply_on("avx512_bf16", trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

static void amx_gemm(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda, const float* B,
                     int ldb, float beta, float* C, int ldc) {
  multiply_on("amx", trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

bool takes_packed_b(const std::string& kernel) {
  return kernel == "amx" || kernel == "avx512_bf16" || kernel == "generic";
}

void multiply_packed(const std::string& kernel, const float* A, int M, long row_stride, long col_stride,
                     const PackedB& b, float* C, long ldc, bool accumulate) {
  if (M == 0 || b.N() == 0) return;
  if (kernel == "amx") {
    amx_multiply(A, M, row_stride, col_stride, b, C, ldc, accumulate);
    return;
  }
  const BlockFn block = dot_product_block(kernel);
  uint32_t* a = thread_scratch(1, static_cast<size_t>(M) * b.pairs());
  pack_a(A, M, b.K(), row_stride, col_stride, a, b.pairs());
  run_blocks(block, Problem{a, b.pairs(), &b, C, ldc, M, accumulate});
}

// A pair word's bf16 halves, written and read as 16-bit values (may_alias: the words are uint32_t).
#if defined(__GNUC__)
typedef uint16_t __attribute__((__may_alias__)) Half;
#else
typedef uint16_t Half;
#endif

PackedA::PackedA(const std::string& kernel, int M, int K, uint32_t* storage)
    : kernel_(kernel), M_(M), K_(K), tiles_(kernel == "amx"), words_(storage) {
  // Zero words: every word of the tiles' padding rows, and each row's words from K / 2 on (an odd
  // K's last pair is half padding: zeroed, then its value stored).
  const long padded = padded_pairs(), rows = tiles_ ? AmxTiles(M, K).groups * kPairRun : M, first_pad = K / 2;
  for (long m = 0; m < rows; ++m) {
    for (long c = m < M ? first_pad / kPairRun : 0; c < padded / kPairRun; ++c) {
      uint32_t* words = chunk_words(m, c);
      for (long j = m < M ? std::max(0L, first_pad - c * kPairRun) : 0; j < kPairRun; ++j) words[j] = 0u;
    }
  }
}

size_t PackedA::words_for(const std::string& kernel, int M, int K) {
  if (kernel == "amx") return AmxTiles(M, K).words();
  return static_cast<size_t>(M) * ((pairs_of(K) + kPairRun - 1) / kPairRun * kPairRun);
}

void PackedA::store(long m, int k0, const float* values, int n) {
  // (a run crosses a chunk every 32 columns; within one, the columns' halves are contiguous)
  for (int k = k0; k < k0 + n;) {
    const int c = k / (2 * kPairRun), end = std::min(k0 + n, (c + 1) * 2 * kPairRun);
    Half* halves = reinterpret_cast<Half*>(chunk_words(m, c)) - c * 2 * kPairRun;
#pragma omp simd
    for (int j = k; j < end; ++j) {
      uint32_t u;
      std::memcpy(&u, values + (j - k0), sizeof u);
      halves[j] = static_cast<uint16_t>(u >> 16);
    }
    k = end;
  }
}

void pack_transposed(const PackedA& a, PackedB& b) {
  const double start = profile::now_outside();
  const int padded = b.padded_pairs(), panels = b.panels();
#pragma omp parallel for schedule(static) if (static_cast<long>(a.M()) * a.K() >= (1L << 16))
  for (int k0 = 0; k0 < padded; k0 += kPairRun) {  // (16 pair rows: 2 KB of each panel at a time)
    for (int p = 0; p < panels; ++p) {
      for (int k = k0; k < k0 + kPairRun; ++k) {
        Half* out = reinterpret_cast<Half*>(b.words() + b.word(k, p * kPanel));
        const Half* even = reinterpret_cast<const Half*>(a.chunk(2L * k, p));
        const Half* odd = reinterpret_cast<const Half*>(a.chunk(2L * k + 1, p));
#pragma omp simd
        for (int n = 0; n < kPanel; ++n) {
          out[2 * n] = even ? even[n] : 0;
          out[2 * n + 1] = odd ? odd[n] : 0;
        }
      }
    }
  }
  profile::since_outside(profile::kBf16Packing, start);
}

void multiply_packed(const PackedA& a, const PackedB& b, float* C, long ldc, bool accumulate) {
  if (a.M() == 0 || b.N() == 0) return;
  if (a.kernel() == "amx") {
    amx_multiply_tiles(a.words(), a.M(), b, C, ldc, accumulate);
    return;
  }
  const BlockFn block = dot_product_block(a.kernel());
  run_blocks(block, Problem{a.words(), a.padded_pairs(), &b, C, ldc, a.M(), accumulate});
}

void multiply_packed_a(const PackedA& a, const float* B, int N, long b_row_stride, long b_col_stride, float* C,
                       long ldc, bool accumulate) {
  if (a.M() == 0 || N == 0) return;
  for_column_blocks(B, a.K(), N, b_row_stride, b_col_stride,
                    [&](const PackedB& block, int j0) { multiply_packed(a, block, C + j0, ldc, accumulate); });
}

static bool always(int, int, int) { return true; }
static bool never(int, int, int) { return false; }
static bool anywhere() { return true; }

#if defined(PTBFAST_BLAS_MKL)
static bool mkl_built() { return true; }
// MKL runs bf16 on the CPU's bf16 instructions on Intel CPUs only (mkl.cpp); AMX once Linux granted it.
static bool mkl_on_bf16_instructions() {
  static const bool yes = cpu_vendor() == "GenuineIntel" &&
                          (cpu_has_avx512_bf16() || (cpu_has_amx_bf16() && amx_permission() == "granted"));
  return yes;
}
#endif

// The kernels below convert (and the dot-product kernels pack) both operands on every call, which
// costs O(M K + K N) before the product. With few rows of A that costs more than bf16 gains: on an
// Intel Xeon (family 6 model 207, 2 threads) at M = 20 SGEMM ran the model's products at 133-185
// GFLOP/s, MKL's bf16 GEMM at 53-61 and ptbfast's AMX kernel at 29-36 (docs/performance.md).
static constexpr int kMinRowsToConvert = 128;

#if defined(PTBFAST_BLAS_MKL)
// From M = 128 and K = 400 MKL's bf16 GEMM ran 1.1-4x SGEMM on that Xeon (K = 200: no faster).
static bool mkl_prefers(int M, int, int K) {
  return mkl_on_bf16_instructions() && M >= kMinRowsToConvert && K >= 400;
}
#endif

// On that Xeon ptbfast's AVX512-BF16 kernel ran at 23-154 GFLOP/s where SGEMM ran at 151-325 (its
// VDPBF16PS peaks at 45 GFLOP/s per core, SGEMM's FMAs at ~100): never chosen on Intel CPUs. On AMD
// Zen 4 VDPBF16PS issues at twice the FMA rate (../shared/notes); the kernel is not yet measured there.
static bool avx512_bf16_prefers(int M, int, int) {
  static const bool intel = cpu_vendor() == "GenuineIntel";
  return !intel && M >= kMinRowsToConvert;
}

// With both operands packed per call, the AMX kernel beat MKL's bf16 GEMM on every model shape from
// M = 128 (Intel Xeon, family 6 model 167, 2 threads: 601-1,545 GFLOP/s against 438-1,164, SGEMM
// 273-333; docs/performance.md); below 128 rows packing B costs more than the product saves (M = 20:
// 130-199 against SGEMM's 186-294). The LSTM's recurrent products pack their B once for all steps
// (lstm.cpp), and so does the output layer for several blocks of rows (output_layer.cpp).
static bool amx_prefers(int M, int, int) { return M >= kMinRowsToConvert; }

static bool amx_usable() {
  static const bool yes = amx_multiply != nullptr && cpu_has_amx_bf16() && amx_permission() == "granted";
  return yes;
}

static bool avx512_bf16_usable() {
  static const bool yes = avx512_bf16_block != nullptr && cpu_has_avx512_bf16();
  return yes;
}

const std::vector<Kernel>& kernels() {
  static const std::vector<Kernel> table = {
      {"amx", &amx_usable, &amx_prefers, &amx_gemm, "ptbfast's AMX kernel (TDPBF16PS tiles)"},
#if defined(PTBFAST_BLAS_MKL)
      {"mkl", &mkl_built, &mkl_prefers, &mkl_multiply,
       "MKL's cblas_gemm_bf16bf16f32 (AMX or AVX512-BF16 on Intel CPUs; emulated, slower, elsewhere)"},
#endif
      {"avx512_bf16", &avx512_bf16_usable, &avx512_bf16_prefers, &avx512_bf16_multiply,
       "ptbfast's AVX512-BF16 kernel (VDPBF16PS)"},
      {"sgemm", &anywhere, &always, &sgemm_multiply,
       "float32 SGEMM on the bf16 values (exact bf16 products, fp32 speed)"},
      {"generic", &anywhere, &never, &generic_multiply,
       "ptbfast's generic twin of the dot-product kernels (plain C++, bit for bit what VDPBF16PS computes; "
       "slow: for tests)"},
  };
  return table;
}

double native_peak_gflops(const std::string& kernel) {
  if (kernel == "amx" || (kernel.empty() && amx_usable())) return amx_usable() ? amx_peak() : 0.0;
  if (kernel == "avx512_bf16" || kernel.empty()) return avx512_bf16_usable() ? avx512_bf16_peak() : 0.0;
  return 0.0;
}

const Kernel* find(const std::string& name) {
  for (const Kernel& k : kernels())
    if (name == k.name) return &k;
  return nullptr;
}

}  // namespace ptbfast::gemm::bf16
