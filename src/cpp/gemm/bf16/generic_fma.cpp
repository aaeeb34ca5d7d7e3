// The generic twin with FMA switched on (generic_lanes.h): std::fma is one instruction instead of a
// libm call (measured 0.8-0.9 GFLOP/s in a portable build without it, AMD EPYC Zen 1). x86-64 only.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PTBFAST_BF16_TARGET __attribute__((target("fma")))
#include "generic_lanes.h"

namespace ptbfast::gemm::bf16 {
void generic_block_fma(const Problem& problem, int m0, int m1, int p0, int p1) {
  block<GenericLanes>(problem, m0, m1, p0, p1);
}
}  // namespace ptbfast::gemm::bf16
#endif
