// vecmath.h's exp, sigmoid and tanh over an array, compiled at each instruction-set level like the
// kernels that inline them (isa.h), so tests/test_vecmath.py measures the code the kernels run.
#include <cstdint>

#include "kernels.h"
#include "vecmath.h"

#include "isa_begin.h"  // (compiled once per instruction-set level: isa.h)

void apply_vecmath(VecMath function, float* out, const float* in, int64_t n) {
  switch (function) {
    case VecMath::kExp:
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) out[k] = exp_approx(in[k]);
      break;
    case VecMath::kSigmoid:
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) out[k] = sigmoid_approx(in[k]);
      break;
    case VecMath::kTanh:
#pragma omp simd
      for (int64_t k = 0; k < n; ++k) out[k] = tanh_approx(in[k]);
      break;
  }
}

#include "isa_end.h"
