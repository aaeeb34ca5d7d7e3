// The generic twin of the bf16 dot-product kernels: plain C++ that computes, lane by lane, what
// VDPBF16PS computes (gemm_bf16.h), so it runs on any CPU and equals the native kernel bit for bit.
//
// Per lane, for one pair word of A (a0 low half, a1 high) and of B (b0, b1), as Intel's pseudo-code
// gives it ("FP32 FMA with daz in, ftz out and RNE rounding"), odd element first:
//   acc = ftz(fma(a0, b0, ftz(fma(a1, b1, daz(acc)))))     with a0, a1, b0, b1 daz'd
// (a product of two bf16 values is exact in fp32, so fma and multiply-then-add agree but where the
// product would be denormal, which an fma keeps exact). Denormals read as signed zero and denormal
// results become signed zero. ftz here tests the rounded result (tininess after rounding, as x86
// detects it); a result that rounds up to the smallest normal stays.
#include "gemm_bf16.h"
#include "../../cpu_features.h"

namespace ptbfast::gemm::bf16 {
void generic_block_baseline(const Problem& problem, int m0, int m1, int p0, int p1);
void generic_block_fma(const Problem& problem, int m0, int m1, int p0, int p1);  // (x86-64 only)

void generic_block(const Problem& problem, int m0, int m1, int p0, int p1) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool fma = cpu_runs_avx2_level();  // (FMA is part of that level)
  if (fma) return generic_block_fma(problem, m0, m1, p0, p1);
#endif
  generic_block_baseline(problem, m0, m1, p0, p1);
}
}  // namespace ptbfast::gemm::bf16
