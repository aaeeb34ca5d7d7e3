// The generic twin for any CPU (generic_lanes.h), compiled with the build's flags.
#define PTBFAST_BF16_TARGET
#include "generic_lanes.h"

namespace ptbfast::gemm::bf16 {
void generic_block_baseline(const Problem& problem, int m0, int m1, int p0, int p1) {
  block<GenericLanes>(problem, m0, m1, p0, p1);
}
}  // namespace ptbfast::gemm::bf16
