// bf16 products: the path of blas::gemm_bf16, one of the bf16 GEMM table's kernels
// (gemm/bf16/gemm_bf16.h) by name, or "auto": for each product, the first kernel usable on this
// CPU that prefers its shape (from 128 rows: ptbfast's AMX kernel where the CPU has AMX; MKL's bf16
// GEMM where an Intel CPU has AVX512-BF16 and K >= 400; ptbfast's AVX512-BF16 kernel on other CPUs
// that have it; float32 SGEMM elsewhere).
//
// bf16 mixed precision hands every product operands that hold bf16 values in float32, so every
// kernel computes bf16 arithmetic; they differ in speed, in the order of the sums and (the
// dot-product kernels) in flushing denormals. Not every product comes here: the recurrent products
// inside the LSTM time loops run on a B packed once for all steps, on ptbfast's kernel
// (bf16_recurrent_kernel) or as packed SGEMMs (blas::PackedB).
#include <atomic>
#include <stdexcept>

#include "blas.h"
#include "gemm/bf16/gemm_bf16.h"

namespace ptbfast::blas {

namespace table = gemm::bf16;

// The kernel set by name, or nullptr for "auto" (ptbfast.ops sets PTBFAST_BF16_PRODUCTS's at import).
static std::atomic<const table::Kernel*>& chosen() {
  static std::atomic<const table::Kernel*> kernel{nullptr};
  return kernel;
}

static std::string names() {
  std::string out = "auto";
  for (const table::Kernel& k : table::kernels()) out += std::string(", ") + k.name;
  return out;
}

void set_bf16_products(const std::string& name) {
  if (name == "auto") {
    chosen().store(nullptr);
    return;
  }
  const table::Kernel* kernel = table::find(name);
  if (kernel == nullptr) {
    if (name == "mkl") throw std::invalid_argument("bf16 products \"mkl\" need a build with MKL (this one has OpenBLAS only)");
    throw std::invalid_argument("bf16 products must be one of " + names() + ", got \"" + name + "\"");
  }
  if (!kernel->usable())
    throw std::invalid_argument("bf16 products \"" + name + "\" cannot run here: " + kernel->description +
                                " needs a CPU (and compiler) with that instruction set");
  chosen().store(kernel);
}

std::string bf16_products() {
  const table::Kernel* kernel = chosen().load();
  return kernel == nullptr ? "auto" : kernel->name;
}

std::vector<std::string> bf16_product_names() {
  std::vector<std::string> out;
  for (const table::Kernel& k : table::kernels()) out.push_back(k.name);
  return out;
}

std::vector<std::string> usable_bf16_product_names() {
  std::vector<std::string> out;
  for (const table::Kernel& k : table::kernels())
    if (k.usable()) out.push_back(k.name);
  return out;
}

static const table::Kernel& kernel_for(int M, int N, int K) {
  if (const table::Kernel* kernel = chosen().load()) return *kernel;
  for (const table::Kernel& k : table::kernels())
    if (k.usable() && k.prefers(M, N, K)) return k;
  return *table::find("sgemm");
}

std::string bf16_product_kernel(int M, int N, int K) { return kernel_for(M, N, K).name; }

bool bf16_kernel_rounds_operands(const table::Kernel* kernel) { return std::string(kernel->name) != "sgemm"; }

bool gemm_bf16_rounds_operands(int M, int N, int K) {
  return M > 0 && N > 0 && K > 0 && bf16_kernel_rounds_operands(&kernel_for(M, N, K));
}

std::string bf16_packed_b_kernel(int M, int N, int K) {
  if (M == 0 || N == 0 || K == 0) return "";
  const std::string name = kernel_for(M, N, K).name;
  return table::takes_packed_b(name) ? name : "";
}

// One row of A (batch 1: TF's test pass, generation) fills 1 of the 16 rows of AMX's tiles: the
// recurrent products of a medium b1 evaluation took 64.8 us a step on AMX and 45.3 on the AVX512-BF16
// kernel, small 8.3-10.4 and 5.7-6.1, large 787-795 and 651-662 (2 rows: 64.9 on AMX, 74.0; Intel
// Xeon family 6 model 167, 2 threads).
static constexpr int kRowsForDotProductsOverAmx = 1;

std::string bf16_kernel_for_rows(const std::string& packed_for, int rows) {
  if (chosen().load() == nullptr && packed_for == "amx" && rows <= kRowsForDotProductsOverAmx &&
      table::find("avx512_bf16")->usable())
    return "avx512_bf16";
  return packed_for;
}

std::string bf16_recurrent_kernel(int rows) {
  if (const table::Kernel* kernel = chosen().load()) return table::takes_packed_b(kernel->name) ? kernel->name : "";
  // (B packed once for T products: the kernel "auto" takes for many rows, where it takes a packed B;
  // with a kernel before it that takes none, such as MKL's, the SGEMMs)
  for (const table::Kernel& k : table::kernels())
    if (k.usable() && k.prefers(1 << 20, 1 << 20, 1 << 20))
      return table::takes_packed_b(k.name) ? bf16_kernel_for_rows(k.name, rows) : "";
  return "";
}

// The kernels that run on the CPU's bf16 instructions when they run here.
static bool on_bf16_instructions(const table::Kernel& k) {
  const std::string name = k.name;
  if (name == "mkl") return k.prefers(1 << 20, 1, 1 << 20);  // (true where MKL has them: mkl.cpp)
  return name != "sgemm" && name != "generic";
}

bool bf16_products_use_bf16_instructions() {
  if (const table::Kernel* kernel = chosen().load()) return on_bf16_instructions(*kernel);
  for (const table::Kernel& k : table::kernels())
    if (k.usable() && on_bf16_instructions(k) && k.prefers(400, 10000, 1 << 20)) return true;
  return false;
}

std::string bf16_products_description() {
  if (const table::Kernel* kernel = chosen().load())
    return std::string(kernel->description) +
           (table::takes_packed_b(kernel->name) ? " on every product (set to "
                                                : " on every product outside the LSTM time loops (set to ") +
           kernel->name + ": PTBFAST_BF16_PRODUCTS=" + kernel->name + ")";
  std::string out;
  bool every_shape_from_128_rows = false;  // (then the kernels after it that want 128 rows never run)
  for (const table::Kernel& k : table::kernels()) {
    if (!k.usable() || !on_bf16_instructions(k) || !k.prefers(400, 10000, 1 << 20)) continue;
    if (every_shape_from_128_rows && !k.prefers(127, 10000, 1 << 20)) continue;
    every_shape_from_128_rows = every_shape_from_128_rows || k.prefers(128, 1, 1);
    const std::string name = k.name;
    out += std::string(k.description) +
           (name == "mkl"                                 ? " where M >= 128 and K >= 400, "
            : name == "amx" || name == "avx512_bf16" ? " where M >= 128, "
                                                     : ", ");
  }
  const table::Kernel& sgemm = *table::find("sgemm");
  if (out.empty()) return std::string(sgemm.description) + ": the CPU's bf16 instructions (AVX512-BF16, AMX) are not "
                          "used here (none, or MKL's on a CPU that is not Intel's)";
  return out + "elsewhere " + sgemm.description;
}

const table::Kernel* bf16_kernel(int M, int N, int K) { return &kernel_for(M, N, K); }

void gemm_bf16_on(const table::Kernel* kernel, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                  const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (alpha != 1.0f || M == 0 || N == 0 || K == 0) {  // (every caller passes alpha 1)
    sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  kernel->multiply(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc) {
  gemm_bf16_on(&kernel_for(M, N, K), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace ptbfast::blas
