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
#include <cmath>
#include <cstdint>
#include <cstring>

#define PTBFAST_BF16_TARGET
#include "blocked.h"

namespace ptbfast::gemm::bf16 {
namespace {

inline float flush_denormal(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7F800000u) == 0) bits &= 0x80000000u;  // exponent 0: zero or denormal -> signed zero
  float y;
  std::memcpy(&y, &bits, sizeof y);
  return y;
}

inline float bf16_value(uint32_t half) {  // half: bf16 bits in the low 16; denormals read as zero
  uint32_t bits = (half & 0xFFFFu) << 16;
  if ((bits & 0x7F800000u) == 0) bits &= 0x80000000u;
  float y;
  std::memcpy(&y, &bits, sizeof y);
  return y;
}

struct GenericLanes {
  struct Vec {
    float v[16];
  };
  static Vec zero() { return Vec{}; }
  static Vec load(const float* p, int n) {
    Vec out{};
    for (int l = 0; l < n; ++l) out.v[l] = p[l];
    return out;
  }
  static void store(float* p, const Vec& x, int n) {
    for (int l = 0; l < n; ++l) p[l] = x.v[l];
  }
  static void dot(Vec& acc, uint32_t a, const uint32_t* b) {
    const float a0 = bf16_value(a), a1 = bf16_value(a >> 16);
    for (int l = 0; l < 16; ++l) {
      const float b0 = bf16_value(b[l]), b1 = bf16_value(b[l] >> 16);
      const float odd = flush_denormal(std::fma(a1, b1, flush_denormal(acc.v[l])));
      acc.v[l] = flush_denormal(std::fma(a0, b0, odd));
    }
  }
};

}  // namespace

void generic_block(const Problem& problem, int m0, int m1, int p0, int p1) {
  block<GenericLanes>(problem, m0, m1, p0, p1);
}

}  // namespace ptbfast::gemm::bf16
