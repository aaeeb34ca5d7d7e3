// The dense SGD update, fused into one pass (NumPy's `p += a * g` makes a temporary and two passes).
// Its "backward" is nothing: the update is the last step of training.
#include "kernels.h"

#include "isa_begin.h"  // (compiled once per instruction-set level: isa.h)

void axpy(float* y, const float* x, float alpha, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
  for (int64_t k = 0; k < n; ++k) y[k] += alpha * x[k];
}

#include "isa_end.h"
