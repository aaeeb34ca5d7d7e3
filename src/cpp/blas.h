// The one interface through which ptbfast multiplies matrices: row-major SGEMM from a real BLAS
// (Intel MKL by default on x86_64, with large products sent to OpenBLAS on CPUs other than Intel's,
// see blas.cpp; OpenBLAS from scipy-openblas32 alone elsewhere or on request).
#pragma once

#include <string>
#include <vector>

namespace ptbfast::gemm::bf16 {
struct Kernel;  // gemm/bf16/gemm_bf16.h
}

namespace ptbfast::blas {

// C[M,N] = alpha * op(A) @ op(B) + beta * C, all row-major; op(A) is M×K, op(B) is K×N.
// Empty products are handled here (BLAS libraries disagree on lda for zero sizes).
// Never call it from inside one of our own OpenMP parallel regions: OpenBLAS hangs there.
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);
// A product at least this large on every side goes to the library for large products when both are
// linked: OpenBLAS, or MKL on an Intel CPU ("auto", blas.cpp has the measurements).
constexpr int kLargeSide = 64;
// That library: "auto", "mkl" or "openblas" (a build with one library takes only its own, or "auto").
// Throws std::invalid_argument otherwise. Process-wide.
void set_large_products_library(const std::string& name);
// The library sgemm sends an M x K @ K x N product (A not transposed) to: "mkl", "openblas", or
// "ptbfast" for one row on ptbfast's loops (one_row_products; tests/test_gemm.py).
const char* sgemm_library(int M, int N, int K);

// Where float32 products of one row run (batch 1: TF's test pass, a text scored one row at a time;
// generation, a step a call): "auto" (ptbfast's own loops, row_product.h, on AMD's CPUs at the AVX2
// level or above, where they measured faster than MKL; the BLAS elsewhere), "ptbfast" or "blas".
// On ptbfast's loops: the LSTM's recurrent products at batch 1, and sgemm's products of one row
// (op(A) [1, K] contiguous). Throws std::invalid_argument on another name. Process-wide.
void set_one_row_products(const std::string& name);
std::string one_row_products();
// Whether the current setting runs them on ptbfast's loops on this CPU, at the active kernel level.
bool one_row_products_on_ptbfast();
// How many lstm_forward calls ran batch 1's recurrent products on ptbfast's loops, and how many of
// sgemm's products of one row ran on ptbfast's (the tests read them: the route taken).
void count_one_row_recurrent_products();
long one_row_recurrent_product_runs();
long one_row_sgemm_runs();

// The same product, for operands that hold bf16 values (float32 with the low 16 bits zero, as
// bf16 mixed precision makes them): on the path bf16_products() names, see blas_bf16.cpp.
void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc);

// The product for a kernel's precision: gemm_bf16 for bf16 operands, sgemm for float32 ones.
using Gemm = void (*)(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int);
inline Gemm gemm_for(bool bf16) { return bf16 ? &gemm_bf16 : &sgemm; }

// How gemm_bf16 multiplies: "auto" (per product, the first kernel of gemm/bf16's table usable on
// this CPU that prefers the shape; the default) or a kernel of that table by name ("mkl",
// "avx512_bf16", "sgemm", "generic": bf16_product_names()). set_bf16_products throws
// std::invalid_argument on another name, or on a kernel this CPU or build cannot run.
void set_bf16_products(const std::string& name);
std::string bf16_products();
std::vector<std::string> bf16_product_names();         // the table's kernels, in the order auto tries them
std::vector<std::string> usable_bf16_product_names();  // those this CPU and build run
// The kernel a product of this shape runs on under the current setting.
std::string bf16_product_kernel(int M, int N, int K);
// The kernel of gemm/bf16's table that a product of this shape runs on under the current setting,
// and gemm_bf16 on that kernel whatever the shape: for products that must round their operands
// alike though "auto" would choose per shape (a call's smaller last block of rows, below 128 rows,
// would go to SGEMM, which rounds nothing), and that a setting changed meanwhile must not split.
const gemm::bf16::Kernel* bf16_kernel(int M, int N, int K);
// Whether that kernel rounds float32 operands to bf16 itself (every one but "sgemm").
bool bf16_kernel_rounds_operands(const gemm::bf16::Kernel* kernel);
void gemm_bf16_on(const gemm::bf16::Kernel* kernel, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                  const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);
// Whether gemm_bf16 of this shape rounds float32 operands to bf16 itself (every kernel but "sgemm":
// they round as they pack or convert), so that a caller may pass operands unrounded.
bool gemm_bf16_rounds_operands(int M, int N, int K);
// The kernel of gemm/bf16's table that a product of this shape runs on, where that kernel can take
// a B packed once for many products (gemm::bf16::multiply_packed); else "".
std::string bf16_packed_b_kernel(int M, int N, int K);
// The kernel of the LSTM's recurrent products of `rows` rows (one B for T products, packed once)
// where one of ptbfast's kernels runs them: the one set, where it takes a packed B; under "auto" the
// first of those usable here that prefers many rows (AMX, or AVX512-BF16 on CPUs not Intel's), but
// for one row AVX512-BF16 where AMX would be chosen and the CPU has both. Else "" (packed SGEMMs on
// the rounded weights). Every such kernel reads the same packed B.
std::string bf16_recurrent_kernel(int rows = 1 << 20);
// The kernel that multiplies `rows` rows by a B packed for the kernel `packed_for` (every such kernel
// reads the same packed B): packed_for, but under "auto" AVX512-BF16 for one row where packed_for is
// AMX and the CPU has both (a frozen model's products of batch 1, as the recurrent products).
std::string bf16_kernel_for_rows(const std::string& packed_for, int rows);
// In words: what the setting resolves to on this CPU and build (ptbfast info).
std::string bf16_products_description();
// Whether some bf16 products run on the CPU's bf16 instructions (AVX512-BF16 or AMX).
bool bf16_products_use_bf16_instructions();

// A right-hand operand op(B) [K, N] prepared once for many products A @ op(B) with the same M:
// MKL packs it into its internal layout (cblas_sgemm_pack), measured 228 vs 169 GFLOP/s on the
// 20x650 @ 650x2600 recurrent product; with OpenBLAS it is a plain sgemm on the original.
// Fewer uses than this run unpacked (packing costs about 6 products).
constexpr int kPackedMinUses = 8;

class PackedB {
 public:
  // `uses`: how many products will follow; packing costs about 6 products, so fewer are run unpacked.
  // Never throws: without memory to pack, products run unpacked.
  PackedB(bool trans_b, int M, int N, int K, const float* B, int ldb, int uses);
  ~PackedB();
  PackedB(const PackedB&) = delete;
  PackedB& operator=(const PackedB&) = delete;
  // C[M, N] = A[M, K] @ op(B) + beta * C. With MKL it never goes to OpenBLAS, so it may run inside
  // our parallel regions (see callable_in_parallel_region).
  void gemm(const float* A, int lda, float beta, float* C, int ldc) const;
  // Whether B was packed (MKL, uses >= the threshold, memory to pack), or products run unpacked.
  bool packed() const { return packed_ != nullptr; }

 private:
  bool trans_b_;
  int M_, N_, K_, ldb_;
  const float* B_;
  float* packed_ = nullptr;
};

// True when PackedB may be used inside our OpenMP parallel regions, each thread running its own
// products on itself (MKL, under a ThisThreadOnly scope). OpenBLAS may not: it hung there.
bool callable_in_parallel_region();

// For its lifetime, BLAS calls made by this thread run on this thread only (MKL's
// mkl_set_num_threads_local(1)); without MKL it does nothing.
class ThisThreadOnly {
 public:
  ThisThreadOnly();
  ~ThisThreadOnly();
  ThisThreadOnly(const ThisThreadOnly&) = delete;
  ThisThreadOnly& operator=(const ThisThreadOnly&) = delete;

 private:
  int previous_ = 0;
};

const char* backend_name();                   // the main library: "mkl" or "openblas"
const char* large_products_backend_name();  // the library large products use
void set_num_threads(int n);
int num_threads();

// Called once at import: makes OpenBLAS run its work on our OpenMP threads (see blas.cpp).
void init();

}  // namespace ptbfast::blas
