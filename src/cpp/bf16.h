// Rounding float32 to bfloat16 (1 sign, 8 exponent, 7 mantissa bits), kept in a float32 whose low
// 16 bits are zero. This is how bf16 mixed precision enters ptbfast: matrix-product operands are
// rounded to bf16 and the products accumulate in float32. The product of two bf16 values is exact
// in float32 (8 x 8 significant bits fit in 24), so an SGEMM on rounded operands computes what a
// bf16 x bf16 -> fp32 GEMM does, up to the order of the sums.
#pragma once

#include <cstdint>
#include <cstring>

namespace ptbfast {

// Round to nearest, ties to even (as AMX, AVX512-BF16 and PyTorch convert); NaN stays NaN (made
// quiet, so that dropping its low bits cannot turn it into an infinity); overflow gives infinity.
// Selects only, no branches: loops of it vectorise.
static inline float round_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  const uint32_t out = nan ? ((u | 0x00400000u) & 0xFFFF0000u) : rounded;
  float y;
  std::memcpy(&y, &out, sizeof y);
  return y;
}

// The bf16 bit pattern of x rounded as round_bf16 does (its high 16 bits), for packed bf16 operands.
static inline uint16_t bf16_bits(float x) {
  const float rounded = round_bf16(x);
  uint32_t u;
  std::memcpy(&u, &rounded, sizeof u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace ptbfast
