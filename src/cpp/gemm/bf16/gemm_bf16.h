// The bf16 GEMM: float32 C (= or +=) bf16 A times bf16 B, on kernels chosen at run time.
//
// The dot-product kernels (generic.cpp, avx512_bf16.cpp) read B packed once into the layout the
// AVX512-BF16 instruction reads: panels of kPanel columns, in each, for every pair of K rows, the
// pair (B[2k][n], B[2k+1][n]) of column n as one 32-bit word (the even row in the low half). An
// odd K is padded with a zero row, a last panel with zero columns. A is read as rows of such pairs
// (pack_a). Each C element is one fp32 accumulator that takes the pairs in order of k:
//
//   acc = fma(a[2k], b[2k], fma(a[2k+1], b[2k+1], acc))    (k = 0, 1, ...; starting from 0 or C)
//
// with denormal inputs read as zero and denormal results flushed to zero: what VDPBF16PS computes
// (Intel's pseudo-code; measured bit for bit on an AMD Zen 4, ../shared/notes). The generic twin
// computes exactly that on any CPU, so the native kernel must equal it bit for bit, and blocking,
// packing and tails are tested on every machine. Results do not depend on blocking or threads.
//
// The AMX kernel (amx.cpp) multiplies the same packed B (panels padded with zero pair rows to whole
// 16-pair tiles) by A packed as tiles, with rounding of its own. Callers that use one B for many
// products pack it once and call multiply_packed (the LSTM's recurrent products, the output layer).
//
// kernels() is the table "auto" chooses from: the first entry usable on this CPU that prefers the
// shape. ptbfast info, the tests and the benchmarks read the names from it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ptbfast::gemm::bf16 {

constexpr int kPanel = 32;  // columns per packed panel of B: two 16-lane vectors
constexpr int kPairRun = 16;  // a panel's pair rows are padded with zero rows to a multiple of this (AMX tiles)
// The pair words of K values (an odd K padded with a zero), without K + 1's overflow at INT_MAX.
constexpr int pairs_of(int K) { return K / 2 + K % 2; }

// op(B) [K, N], element (k, n) at B[k * row_stride + n * col_stride], rounded to bf16 (nearest
// even; values that already are bf16 stay as they are) and packed.
class PackedB {
 public:
  PackedB(const float* B, int K, int N, long row_stride, long col_stride);
  // The same, packed into `storage` (words_for(K, N) words, owned by the caller, kept while this lives).
  PackedB(const float* B, int K, int N, long row_stride, long col_stride, uint32_t* storage);
  // For a caller that writes the panels itself (word(pair, n), the zero padding included): storage
  // of words_for(K, N) words, owned by the caller.
  struct WrittenByCaller {};
  PackedB(int K, int N, uint32_t* storage, WrittenByCaller) : K_(K), N_(N), words_(storage) {}
  // The same with storage of its own (64-byte aligned).
  PackedB(int K, int N, WrittenByCaller);
  // Columns [first_column, first_column + columns) of `whole`, read in whole's storage (which must
  // outlive this); first_column a multiple of kPanel.
  PackedB(const PackedB& whole, int first_column, int columns)
      : K_(whole.K_), N_(columns),
        words_(whole.words_ + static_cast<long>(first_column / kPanel) * whole.padded_pairs() * kPanel) {}
  long word(int pair, int n) const {
    return static_cast<long>(n / kPanel) * padded_pairs() * kPanel + static_cast<long>(pair) * kPanel + n % kPanel;
  }
  uint32_t* words() { return words_; }
  static size_t words_for(int K, int N) {
    return static_cast<size_t>(pairs_of(K) + kPairRun - 1) / kPairRun * kPairRun * ((static_cast<long>(N) + kPanel - 1) / kPanel) * kPanel;
  }
  int K() const { return K_; }
  int N() const { return N_; }
  int pairs() const { return pairs_of(K_); }
  // pairs() rounded up to kPairRun: the rows each panel holds, the last ones zero.
  int padded_pairs() const { return (pairs() + kPairRun - 1) / kPairRun * kPairRun; }
  int panels() const { return static_cast<int>((static_cast<long>(N_) + kPanel - 1) / kPanel); }
  // Panel p: padded_pairs() rows of kPanel words.
  const uint32_t* panel(int p) const { return words_ + static_cast<long>(p) * padded_pairs() * kPanel; }

 private:
  int K_, N_;
  void pack(const float* B, long row_stride, long col_stride);
  std::unique_ptr<uint32_t[]> owned_;
  uint32_t* words_;
};

// `words` words 64-byte aligned, in storage that `owner` takes (AMX reads tile rows of 64 bytes).
uint32_t* aligned_words(std::unique_ptr<uint32_t[]>& owner, size_t words);

// Storage of this thread for packed operands, reused from call to call: slot k (0 to 5) holds at
// least `words` words, 64-byte aligned, until this thread asks for slot k again. (Packing buffers of
// megabytes allocated per product came from mmap each time: page faults and unmapping took 13 % of a
// small bf16 training step on an Intel Xeon, family 6 model 167.)
// Slots 0-1: the operands of a gemm call (B, A); 2-3: the AMX kernel's A; 4-5: the output layer's.
constexpr int kScratchSlots = 6;
uint32_t* thread_scratch(int slot, size_t words);
// Frees this thread's slot (a caller whose buffer is large and needed once a step: the output layer's).
void release_thread_scratch(int slot);

// op(A) [M, K] (element (m, k) at A[m * row_stride + k * col_stride]) rounded to bf16, as M rows of
// (K + 1) / 2 pair words each (an odd K padded with zero) into out, row m at out + m * out_ld; words
// [(K + 1) / 2, out_ld) of each row are set to zero.
void pack_a(const float* A, int M, int K, long row_stride, long col_stride, uint32_t* out, long out_ld);

// out[j] = pair word of (row[2j], row[2j + 1]) for j < pairs (contiguous floats), rounded to bf16.
void pack_adjacent_pairs(uint32_t* out, const float* row, int pairs);
// out[j] = pair word of (even[j], odd[j]) for j < n; odd may be null (a zero row).
void pack_two_rows(uint32_t* out, const float* even, const float* odd, int n);

// One product on a dot-product kernel: C[M, N] (= or +=) A @ B.
struct Problem {
  const uint32_t* a;  // [M, lda] pair words (pack_a)
  long lda;           // in words, >= B's pairs()
  const PackedB* b;
  float* c;  // [M, ldc] float32
  long ldc;
  int M;
  bool accumulate;  // C += A @ B, else C = A @ B
};

// Rows [m0, m1) and panels [p0, p1) of C: what each dot-product kernel file implements.
using BlockFn = void (*)(const Problem& problem, int m0, int m1, int p0, int p1);

// Runs `block` over the whole of C on the OpenMP threads. Call it outside our parallel regions.
void run_blocks(BlockFn block, const Problem& problem);

struct Kernel {
  const char* name;
  bool (*usable)();                     // compiled in and this CPU runs it
  bool (*prefers)(int M, int N, int K);  // "auto" takes the first usable kernel that prefers the shape
  // C[M, N] = op(A) @ op(B) + beta * C (row-major float32, as blas::sgemm; alpha is 1): operands
  // hold bf16 values (others are rounded to bf16 on the dot-product kernels).
  void (*multiply)(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda, const float* B,
                   int ldb, float beta, float* C, int ldc);
  const char* description;
};

// C[M, N] (= or +=) op(A) @ b (op(A) as pack_a reads it) on the dot-product or AMX kernel named
// ("amx", "avx512_bf16", "generic"), with b packed once by the caller for many products.
// Inside a parallel region of the caller's it runs on the calling thread (nested regions are off).
void multiply_packed(const std::string& kernel, const float* A, int M, long row_stride, long col_stride,
                     const PackedB& b, float* C, long ldc, bool accumulate);
// Whether multiply_packed takes this kernel.
bool takes_packed_b(const std::string& kernel);

// In the order "auto" tries them.
const std::vector<Kernel>& kernels();
// The entry of that name, or nullptr.
const Kernel* find(const std::string& name);

// ---- what each entry's file provides ----
// The dot-product kernels' blocks (generic.cpp; avx512_bf16.cpp: nullptr where the compiler cannot
// build that instruction set).
void generic_block(const Problem& problem, int m0, int m1, int p0, int p1);
extern const BlockFn avx512_bf16_block;
extern double (*const avx512_bf16_peak)();  // GFLOP/s of independent VDPBF16PS chains on all threads
// amx.cpp: TDPBF16PS tiles on the same packed B (nullptr where the compiler cannot build it).
// amx_multiply: C[M, N] (= or +=) op(A) @ b, op(A) as pack_a reads it, rounded and packed here.
extern void (*const amx_multiply)(const float* A, int M, long row_stride, long col_stride, const PackedB& b,
                                  float* C, long ldc, bool accumulate);
extern double (*const amx_peak)();  // GFLOP/s of independent TDPBF16PS tiles on all threads

// AMX's A operand, for M rows and K columns: tiles of 16 rows x 16 pair words (1 KB), tile (g, q)
// (rows [16g, 16g + 16), pairs [16q, 16q + 16)) at words (g * chunks + q) * 256, row r of a tile at
// + 16 r; rows padded with zero rows to a multiple of 32, pairs with zero words to whole tiles.
struct AmxTiles {
  long chunks, groups;
  AmxTiles(int M, int K) : chunks((pairs_of(K) + kPairRun - 1) / kPairRun), groups(static_cast<int>((M + 31L) / 32 * 2)) {}
  size_t words() const { return static_cast<size_t>(groups) * chunks * kPairRun * kPairRun; }
  // The 16 pair words of row m at pairs [16q, 16q + 16).
  uint32_t* row_chunk(uint32_t* tiles, long m, long q) const {
    return tiles + ((m / kPairRun * chunks + q) * kPairRun + m % kPairRun) * kPairRun;
  }
};
// op(A) [M, K] in bf16, laid out as `kernel` ("amx", "avx512_bf16", "generic") reads it: AMX's tiles
// (AmxTiles), or for the dot-product kernels M rows of pair words padded with zero words to a multiple
// of kPairRun. In both, row m's columns [32 c, 32 c + 32) are 16 contiguous words (chunk(m, c)). For a
// caller that writes A where it computes it (the LSTM backward's gate gradients), instead of keeping
// a float32 A to pack for each product. Storage of words_for() words, owned by the caller; the
// constructor zeroes the padding.
class PackedA {
 public:
  PackedA(const std::string& kernel, int M, int K, uint32_t* storage);
  static size_t words_for(const std::string& kernel, int M, int K);
  // Row m's columns [k0, k0 + n) = values, which hold bf16 values (their high halves are stored).
  void store(long m, int k0, const float* values, int n);
  // Row m's columns [32 c, 32 c + 32), or nullptr for a row at or past M (zero).
  const uint32_t* chunk(long m, long c) const { return m < M_ ? chunk_words(m, c) : nullptr; }
  // The same 16 words to write (m < M), for a caller that packs pairs itself.
  uint32_t* row_chunk(long m, long c) { return chunk_words(m, c); }
  const std::string& kernel() const { return kernel_; }
  int M() const { return M_; }
  int K() const { return K_; }
  long padded_pairs() const { return (pairs_of(K_) + kPairRun - 1L) / kPairRun * kPairRun; }
  const uint32_t* words() const { return words_; }

 private:
  // The 16 words of row m's columns [32 c, 32 c + 32) (m past M: the tiles' padding rows).
  uint32_t* chunk_words(long m, long c) const {
    return tiles_ ? AmxTiles(M_, K_).row_chunk(words_, m, c) : words_ + m * padded_pairs() + c * kPairRun;
  }
  std::string kernel_;
  int M_, K_;
  bool tiles_;
  uint32_t* words_;
};

// C[M, N] (= or +=) a @ op(B) on a's kernel, op(B) [K, N] at B[k * b_row_stride + n * b_col_stride],
// packed a block of columns at a time (for_column_blocks).
void multiply_packed_a(const PackedA& a, const float* B, int N, long b_row_stride, long b_col_stride, float* C,
                       long ldc, bool accumulate);

// C[M, N] (= or +=) a @ b on a's kernel, both packed.
void multiply_packed(const PackedA& a, const PackedB& b, float* C, long ldc, bool accumulate);

// Writes b = a^T (b constructed WrittenByCaller with b.K() == a.M(), b.N() == a.K()): a's values paired
// down its columns instead of along its rows, the zero padding included.
void pack_transposed(const PackedA& a, PackedB& b);

// About this many bytes of a packed B at a time, where a product packs B per call (whole, the B of
// large's dx, Wx^T [6000, 1500], took 18 MB: its peak RSS stood 34 MB above fp32's).
constexpr long kColumnBlockBytes = 4L << 20;
// Packs op(B) [K, N] (element (k, n) at B[k * row_stride + n * col_stride]) a block of about
// kColumnBlockBytes of columns at a time into this thread's scratch slot 0, and calls
// multiply(block, first_column) on each. (Each column's sums are the same in any block.)
template <class Multiply>
void for_column_blocks(const float* B, int K, int N, long row_stride, long col_stride, const Multiply& multiply) {
  const long column_bytes = std::max<long>(1, static_cast<long>(PackedB::words_for(K, kPanel)) * 4 / kPanel);
  const int columns = static_cast<int>(std::max<long>(1, kColumnBlockBytes / column_bytes / kPanel) * kPanel);
  for (int j0 = 0; j0 < N; j0 += columns) {
    const int n = std::min(columns, N - j0);
    const PackedB block(B + static_cast<long>(j0) * col_stride, K, n, row_stride, col_stride,
                        thread_scratch(0, PackedB::words_for(K, n)));
    multiply(block, j0);
  }
}

// C[M, N] (= or +=) A @ b with A already in AmxTiles(M, b.K()) layout (nullptr without AMX).
extern void (*const amx_multiply_tiles)(const uint32_t* tiles, int M, const PackedB& b, float* C, long ldc,
                                        bool accumulate);
// C[M, N] (= or +=) op(A) @ op(B), op(B) [K, N] at B[k * b_row_stride + n * b_col_stride]: A packed
// once, B a block of columns at a time into this thread's B scratch (a few MB however large B is),
// the same results as packing B whole (nullptr without AMX).
extern void (*const amx_multiply_unpacked)(const float* A, int M, long a_row_stride, long a_col_stride,
                                           const float* B, int K, int N, long b_row_stride, long b_col_stride,
                                           float* C, long ldc, bool accumulate);

// Runs of the instruction peaks' loops, each about 1-2 ms; the peak is the best run.
constexpr int kPeakRuns = 8;
// The measured peak (GFLOP/s, all OpenMP threads) of the instruction of the native kernel named
// ("amx": TDPBF16PS, "avx512_bf16": VDPBF16PS), or with "" of the fastest one usable here; 0 where
// that kernel does not run here.
double native_peak_gflops(const std::string& kernel = "");
// sgemm.cpp: float32 SGEMM on the bf16 values. mkl.cpp: MKL's cblas_gemm_bf16bf16f32 (MKL builds).
void sgemm_multiply(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                    float beta, float* C, int ldc);
void mkl_multiply(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                  float beta, float* C, int ldc);

}  // namespace ptbfast::gemm::bf16
