// The lanes of the generic twin (generic.cpp): plain C++ that computes, lane by lane, what
// VDPBF16PS computes. Included twice: by generic_baseline.cpp for any CPU, by generic_fma.cpp with FMA switched
// on (where std::fma becomes one instruction instead of a libm call; the bits are the same, fma is
// correctly rounded either way). Everything here has internal linkage, like blocked.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "blocked.h"

namespace ptbfast::gemm::bf16 {
namespace {

PTBFAST_BF16_TARGET inline float flush_denormal(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7F800000u) == 0) bits &= 0x80000000u;  // exponent 0: zero or denormal -> signed zero
  float y;
  std::memcpy(&y, &bits, sizeof y);
  return y;
}

PTBFAST_BF16_TARGET inline float bf16_value(uint32_t half) {  // half: bf16 bits in the low 16; denormals read as zero
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
  PTBFAST_BF16_TARGET static Vec zero() { return Vec{}; }
  PTBFAST_BF16_TARGET static Vec load(const float* p, int n) {
    Vec out{};
    for (int l = 0; l < n; ++l) out.v[l] = p[l];
    return out;
  }
  PTBFAST_BF16_TARGET static void store(float* p, const Vec& x, int n) {
    for (int l = 0; l < n; ++l) p[l] = x.v[l];
  }
  PTBFAST_BF16_TARGET static void dot(Vec& acc, uint32_t a, const uint32_t* b) {
    const float a0 = bf16_value(a), a1 = bf16_value(a >> 16);
    for (int l = 0; l < 16; ++l) {
      const float b0 = bf16_value(b[l]), b1 = bf16_value(b[l] >> 16);
      const float odd = flush_denormal(std::fma(a1, b1, flush_denormal(acc.v[l])));
      acc.v[l] = flush_denormal(std::fma(a0, b0, odd));
    }
  }
};

}  // namespace

}  // namespace ptbfast::gemm::bf16
