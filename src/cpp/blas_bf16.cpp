// bf16 products: the path of blas::gemm_bf16, chosen by measurement.
//
// bf16 mixed precision hands every product operands that hold bf16 values in float32. An SGEMM on
// them is already bf16 arithmetic (a product of two bf16 numbers is exact in float32), so the
// question is only speed. MKL's cblas_gemm_bf16bf16f32 runs on AMX tiles or AVX512-BF16, but was
// not faster on every shape (Intel Xeon with AMX, family 6 model 207, 2 threads, GFLOP/s bf16 /
// fp32, ../shared/notes): K = 200 (400x200 @ 200x10000, the small output layer) 195 / 229;
// K = 400 (20x400 @ 400x800) 204 / 199 and (200x400 @ 400x10000) 515 / 230; K = 650 279 / 231;
// K = 1300 240 / 131; K = 1500 596 / 235; K = 3000 328 / 114. So "auto" sends a product to MKL's
// bf16 GEMM only where K >= 400 and an Intel CPU has the instructions; everything else stays an SGEMM.
// (Those were whole products, N up to 10,000; the output layer multiplies 512-column pieces of w,
// and its dh product has K = the piece width: the threshold is untested on those shapes.)
// Without AVX512-BF16 or AMX MKL would emulate bf16 (correct, slower): "auto" never does that, and
// "mkl" forces it, for tests on any CPU and for measuring. Emulated, on AMD EPYC Zen 3 (2 threads,
// GFLOP/s, MKL bf16 / SGEMM, conversions included, alternating): 400x200 @ 200x10000 60-64 /
// 107-114, 700x650 @ 650x10000 85 / 123-132. MKL picks its instruction-set code paths on Intel CPUs
// only (its dispatch controls are "not available on non-Intel processors"), so on an AMD CPU that
// has AVX512-BF16 (Zen 4) its bf16 GEMM would not be known to use it: "auto" takes MKL's bf16 path
// on Intel CPUs alone until someone measures it on AMD (PTBFAST_BF16_PRODUCTS=mkl to try).
// Not every product comes here: the recurrent products inside the LSTM time loops stay packed
// SGEMMs (blas::PackedB).
//
// The operands are converted to bf16 bit patterns (their high halves) in scratch per call: a pass
// over A and B, small beside a product with K >= 400 multiply-adds per element, but memory that
// the SGEMM path does not use (up to both operands at 2 bytes per value).
#include <atomic>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "bf16.h"
#include "blas.h"
#include "blas_libraries.h"
#include "kernels.h"

namespace ptbfast::blas {

static constexpr int kMklBf16MinK = 400;

enum class Bf16Products { kSgemm, kMkl, kAuto };

#if defined(PTBFAST_BLAS_MKL)
static bool amx_usable() { return cpu_has_amx_bf16() && amx_permission() == "granted"; }
static bool cpu_has_bf16_instructions() { return cpu_has_avx512_bf16() || amx_usable(); }
// Whether MKL's bf16 GEMM runs on the CPU's bf16 instructions here (see the top of this file).
static bool cpu_runs_bf16() { return cpu_has_bf16_instructions() && cpu_vendor() == "GenuineIntel"; }
#endif

static Bf16Products parse(const std::string& name) {
  if (name == "sgemm") return Bf16Products::kSgemm;
  if (name == "auto") return Bf16Products::kAuto;
  if (name == "mkl") {
#if defined(PTBFAST_BLAS_MKL)
    return Bf16Products::kMkl;
#else
    throw std::invalid_argument("bf16 products \"mkl\" need a build with MKL (this one has OpenBLAS only)");
#endif
  }
  throw std::invalid_argument("bf16 products must be \"auto\", \"sgemm\" or \"mkl\", got \"" + name + "\"");
}

static std::atomic<Bf16Products>& chosen() {
  static std::atomic<Bf16Products> path{Bf16Products::kAuto};  // (ptbfast.ops sets PTBFAST_BF16_PRODUCTS's)
  return path;
}

void set_bf16_products(const std::string& name) { chosen().store(parse(name)); }

std::string bf16_products() {
  switch (chosen().load()) {
    case Bf16Products::kSgemm: return "sgemm";
    case Bf16Products::kMkl: return "mkl";
    default: return "auto";
  }
}

// Whether a product of this K runs on MKL's bf16 GEMM.
static bool on_mkl_bf16(int K) {
#if defined(PTBFAST_BLAS_MKL)
  const Bf16Products path = chosen().load();
  if (path == Bf16Products::kMkl) return true;
  static const bool cpu = cpu_runs_bf16();
  return path == Bf16Products::kAuto && cpu && K >= kMklBf16MinK;
#else
  (void)K;
  return false;
#endif
}

bool bf16_products_use_matrix_engine() {
#if defined(PTBFAST_BLAS_MKL)
  return chosen().load() != Bf16Products::kSgemm && cpu_runs_bf16();
#else
  return false;
#endif
}

std::string bf16_products_description() {
  const std::string sgemm = "float32 SGEMM on the bf16 values (exact bf16 products, fp32 speed)";
  switch (chosen().load()) {
    case Bf16Products::kSgemm: return sgemm + " (set to sgemm: PTBFAST_BF16_PRODUCTS=sgemm)";
    case Bf16Products::kMkl: return "MKL cblas_gemm_bf16bf16f32 on every product outside the LSTM time loops (forced)";
    default: break;
  }
#if defined(PTBFAST_BLAS_MKL)
  if (cpu_runs_bf16())
    return "MKL cblas_gemm_bf16bf16f32 where K >= " + std::to_string(kMklBf16MinK) +
           " outside the LSTM time loops (the CPU's " +
           (amx_usable() ? "AMX" : "AVX512-BF16") + "), elsewhere " + sgemm;
  if (cpu_has_bf16_instructions())
    return sgemm + ": MKL's bf16 GEMM is used on Intel CPUs only (MKL picks its instruction-set code paths on "
           "Intel alone) and this one is " + cpu_vendor() + " (PTBFAST_BF16_PRODUCTS=mkl to measure it here)";
  return sgemm + ": the CPU has neither AVX512-BF16 nor AMX";
#else
  return sgemm + ": this build has no MKL";
#endif
}

#if defined(PTBFAST_BLAS_MKL)
// An [rows, cols] block of bf16 values held in float32 (leading dimension ld) as bit patterns.
static std::vector<uint16_t> to_bf16_bits(const float* a, int rows, int cols, int ld) {
  std::vector<uint16_t> out(static_cast<size_t>(rows) * cols);
#pragma omp parallel for schedule(static) if (static_cast<long>(rows) * cols >= (1L << 16))
  for (int r = 0; r < rows; ++r) {
    const float* src = a + static_cast<long>(r) * ld;
    uint16_t* dst = out.data() + static_cast<long>(r) * cols;
    for (int c = 0; c < cols; ++c) {
      uint32_t bits;
      const float rounded = round_bf16(src[c]);  // (a no-op on bf16 values; rounds anything else)
      std::memcpy(&bits, &rounded, sizeof bits);
      dst[c] = static_cast<uint16_t>(bits >> 16);
    }
  }
  return out;
}
#endif

void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0 || K == 0 || !on_mkl_bf16(K)) {
    sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
#if defined(PTBFAST_BLAS_MKL)
  const int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
  const int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
  const std::vector<uint16_t> a = to_bf16_bits(A, a_rows, a_cols, lda), b = to_bf16_bits(B, b_rows, b_cols, ldb);
  mkl::gemm_bf16(trans_a, trans_b, M, N, K, alpha, a.data(), a_cols, b.data(), b_cols, beta, C, ldc);
#endif
}

}  // namespace ptbfast::blas
