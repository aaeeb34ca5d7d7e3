// Dispatch of blas.h to the libraries this build links (blas_mkl.cpp, blas_openblas.cpp).
//
// The default x86_64 build links both, and where large products go is chosen at run time, by CPU
// vendor ("auto"; set_large_products_library forces one). Measured on an AMD EPYC Zen 4 (family 25
// model 17, 2 threads, GFLOP/s): OpenBLAS beats MKL on every large product (400x200@200x10000: 186 vs
// 130; 700x650@650x10000: 197 vs 133; 2048^3: 196 vs 143). On an Intel Xeon (family 6 model 167,
// 2 threads) MKL beats OpenBLAS on every one (700x650@650x2600: 360 vs 155-159; 650x700^T@700x2600:
// 360-367 vs 99-159; 700x650@650x10000: 368 vs 332; 2048^3: 373-383 vs 340-351), and an all-MKL
// build trained fp32 small 1.12x and medium 1.05-1.09x as fast (bench --json, alternating). MKL's
// packed GEMM wins the small recurrent products at batch 20 on both (see PackedB).
#include "blas.h"

#include <atomic>
#include <stdexcept>

#include "blas_libraries.h"
#include "cpu_features.h"
#include "isa.h"
#include "kernels.h"

namespace ptbfast::blas {

#if defined(PTBFAST_BLAS_MKL) && defined(PTBFAST_BLAS_OPENBLAS)
namespace {
enum Route { kAuto, kMkl, kOpenBlas };
std::atomic<int> large_route{kAuto};

bool large_on_openblas() {
  static const bool amd_or_other = cpu_vendor() != "GenuineIntel";  // (MKL is Intel's: tuned for it)
  const int route = large_route.load(std::memory_order_relaxed);
  return route == kOpenBlas || (route == kAuto && amd_or_other);
}
}  // namespace

static bool is_large(int M, int N, int K) { return M >= kLargeSide && N >= kLargeSide && K >= kLargeSide; }
static bool to_openblas(int M, int N, int K) { return is_large(M, N, K) && large_on_openblas(); }
#endif

void set_large_products_library(const std::string& name) {
#if defined(PTBFAST_BLAS_MKL) && defined(PTBFAST_BLAS_OPENBLAS)
  if (name == "auto")
    large_route = kAuto;
  else if (name == "mkl")
    large_route = kMkl;
  else if (name == "openblas")
    large_route = kOpenBlas;
  else
    throw std::invalid_argument("the library for large products must be \"auto\", \"mkl\" or \"openblas\", got \"" +
                                name + "\"");
#else
  if (name != "auto" && name != backend_name())
    throw std::invalid_argument("this build links one BLAS library: the library for large products must be "
                                "\"auto\" or \"" + std::string(backend_name()) + "\", got \"" + name + "\"");
#endif
}

namespace {
enum OneRowRoute { kOneRowAuto, kOneRowPtbfast, kOneRowBlas };
std::atomic<int> one_row_route{kOneRowAuto};
}  // namespace

void set_one_row_products(const std::string& name) {
  if (name == "auto")
    one_row_route = kOneRowAuto;
  else if (name == "ptbfast")
    one_row_route = kOneRowPtbfast;
  else if (name == "blas")
    one_row_route = kOneRowBlas;
  else
    throw std::invalid_argument("one-row products must be \"auto\", \"ptbfast\" or \"blas\", got \"" + name + "\"");
}

std::string one_row_products() {
  const int route = one_row_route.load(std::memory_order_relaxed);
  return route == kOneRowPtbfast ? "ptbfast" : route == kOneRowBlas ? "blas" : "auto";
}

// "auto": ptbfast's loops where they were measured faster, AMD's CPUs (Zen 3) with their AVX2 form;
// the BLAS on Intel's (MKL is tuned for them; not measured against it), off x86-64, and at the
// baseline level (the loops' plain C++ form, not measured against MKL).
bool one_row_products_on_ptbfast() {
  static const bool amd = cpu_vendor() == "AuthenticAMD";
  const int route = one_row_route.load(std::memory_order_relaxed);
  return route == kOneRowPtbfast || (route == kOneRowAuto && amd && kernels_isa() != "baseline");
}

static std::atomic<long> one_row_runs{0}, one_row_sgemms{0};
void count_one_row_recurrent_products() { one_row_runs.fetch_add(1, std::memory_order_relaxed); }
long one_row_recurrent_product_runs() { return one_row_runs.load(std::memory_order_relaxed); }
long one_row_sgemm_runs() { return one_row_sgemms.load(std::memory_order_relaxed); }

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // op(A)@op(B) is zero: C = beta*C, and beta == 0 must clear NaNs too
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) C[(long)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(long)i * ldc + j];
    return;
  }
  // One row (op(A) contiguous) by a B read as it lies: ptbfast's loops, where they are chosen.
  if (M == 1 && (!trans_a || lda == 1) && one_row_products_on_ptbfast()) {
    one_row_sgemms.fetch_add(1, std::memory_order_relaxed);
    row_product(C, A, B, K, N, ldb, trans_b, alpha, beta);
    return;
  }
#if defined(PTBFAST_BLAS_MKL) && defined(PTBFAST_BLAS_OPENBLAS)
  if (to_openblas(M, N, K))
    openblas::sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    mkl::sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#elif defined(PTBFAST_BLAS_MKL)
  mkl::sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
  openblas::sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

const char* sgemm_library(int M, int N, int K) {
  if (M == 1 && N > 0 && K > 0 && one_row_products_on_ptbfast()) return "ptbfast";
#if defined(PTBFAST_BLAS_MKL) && defined(PTBFAST_BLAS_OPENBLAS)
  return to_openblas(M, N, K) ? "openblas" : "mkl";
#elif defined(PTBFAST_BLAS_MKL)
  (void)M, (void)N, (void)K;
  return "mkl";
#else
  (void)M, (void)N, (void)K;
  return "openblas";
#endif
}

#if defined(PTBFAST_BLAS_MKL)
const char* backend_name() { return "mkl"; }
#else
const char* backend_name() { return "openblas"; }
#endif

const char* large_products_backend_name() {
#if defined(PTBFAST_BLAS_MKL) && defined(PTBFAST_BLAS_OPENBLAS)
  return large_on_openblas() ? "openblas" : "mkl";
#else
  return backend_name();
#endif
}

void set_num_threads(int n) {
#if defined(PTBFAST_BLAS_MKL)
  mkl::set_num_threads(n);
#endif
#if defined(PTBFAST_BLAS_OPENBLAS)
  openblas::set_num_threads(n);
#endif
}

int num_threads() {
#if defined(PTBFAST_BLAS_MKL)
  return mkl::num_threads();
#else
  return openblas::num_threads();
#endif
}

void init() {
#if defined(PTBFAST_BLAS_MKL)
  mkl::init();
#endif
#if defined(PTBFAST_BLAS_OPENBLAS)
  openblas::init();
#endif
}

#if !defined(PTBFAST_BLAS_MKL)  // without MKL nothing is packed: PackedB is a plain product
bool callable_in_parallel_region() { return false; }
ThisThreadOnly::ThisThreadOnly() = default;
ThisThreadOnly::~ThisThreadOnly() = default;

PackedB::PackedB(bool trans_b, int M, int N, int K, const float* B, int ldb, int /*uses*/)
    : trans_b_(trans_b), M_(M), N_(N), K_(K), ldb_(ldb), B_(B) {}
PackedB::~PackedB() = default;
void PackedB::gemm(const float* A, int lda, float beta, float* C, int ldc) const {
  sgemm(false, trans_b_, M_, N_, K_, 1.0f, A, lda, B_, ldb_, beta, C, ldc);
}
#endif

}  // namespace ptbfast::blas
