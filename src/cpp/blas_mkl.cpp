// Intel MKL (static, GNU OpenMP threading layer): plain and packed SGEMM.
#include <mkl.h>

#include "blas.h"
#include "blas_libraries.h"
#include "heap.h"

namespace ptbfast::blas {

constexpr size_t kHugePagesFromBytes = size_t{8} << 20;  // (see PackedB::PackedB)

namespace mkl {

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
              alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t* A, int lda,
               const uint16_t* B, int ldb, float beta, float* C, int ldc) {
  static_assert(sizeof(MKL_BF16) == sizeof(uint16_t), "MKL_BF16 is a 16-bit pattern");
  cblas_gemm_bf16bf16f32(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M,
                         N, K, alpha, reinterpret_cast<const MKL_BF16*>(A), lda,
                         reinterpret_cast<const MKL_BF16*>(B), ldb, beta, C, ldc);
}
void set_num_threads(int n) { mkl_set_num_threads(n); }
int num_threads() { return mkl_get_max_threads(); }
// Results independent of the arrays' memory alignment, so a resumed run repeats the same bits.
void init() { mkl_cbwr_set(MKL_CBWR_AUTO); }

}  // namespace mkl

PackedB::PackedB(bool trans_b, int M, int N, int K, const float* B, int ldb, int uses)
    : trans_b_(trans_b), M_(M), N_(N), K_(K), ldb_(ldb), B_(B) {
  if (M == 0 || N == 0 || K == 0 || uses < kPackedMinUses) return;  // sgemm() handles empty and one-off products
  const size_t bytes = cblas_sgemm_pack_get_size(CblasBMatrix, M, N, K);
  packed_ = static_cast<float*>(mkl_malloc(bytes, 64));
  if (packed_ == nullptr) return;  // out of memory: fall back to unpacked products
  // On 2 MB pages where B itself is larger than the second-level TLB covers in 4 KB pages (8 MB on
  // Intel's Golden Cove, 12 MB on Zen 4): large's 18 MB of Wh a thread, streamed every step, ran 20 %
  // slower on the second thread than on the first on 4 KB pages, both as fast as the first on 2 MB
  // pages. Not below: MKL pads its packs (small's 320 KB of Wh take 7.9 MB), and a 2 MB page counts
  // whole in memory once touched (small's peak RSS +8 MB for no speed).
  if (static_cast<size_t>(N) * K * sizeof(float) >= kHugePagesFromBytes) heap::advise_huge_pages(packed_, bytes);
  cblas_sgemm_pack(CblasRowMajor, CblasBMatrix, trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, B, ldb,
                   packed_);
}

PackedB::~PackedB() { mkl_free(packed_); }

void PackedB::gemm(const float* A, int lda, float beta, float* C, int ldc) const {
  if (packed_ == nullptr) {
    // Straight to MKL, never to OpenBLAS (this may run inside our parallel regions); empty
    // products go through blas::sgemm, which handles them without calling any library.
    if (M_ == 0 || N_ == 0 || K_ == 0)
      sgemm(false, trans_b_, M_, N_, K_, 1.0f, A, lda, B_, ldb_, beta, C, ldc);
    else
      mkl::sgemm(false, trans_b_, M_, N_, K_, 1.0f, A, lda, B_, ldb_, beta, C, ldc);
    return;
  }
  cblas_sgemm_compute(CblasRowMajor, CblasNoTrans, CblasPacked, M_, N_, K_, A, lda, packed_, N_, beta, C, ldc);
}

bool callable_in_parallel_region() { return true; }

ThisThreadOnly::ThisThreadOnly() : previous_(mkl_set_num_threads_local(1)) {}
ThisThreadOnly::~ThisThreadOnly() { mkl_set_num_threads_local(previous_); }

}  // namespace ptbfast::blas
