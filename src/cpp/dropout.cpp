// Dropout's random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC 2011), the counter-based generator TF's dropout draws from too. Block b of a stream is the
// four words Philox makes from counter (b as two 32-bit words, stream, 0) and key = the seed's two
// halves. Elements come 64 at a time from 16 blocks: element k is word (k % 64) / 16 of block
// 16 (k / 64) + k % 16, so each word is a lane of a vector loop and lands in a contiguous store
// (16 is this layout's constant, not a vector width: every level computes the same). Any thread
// computes any element by itself: the same bits for every thread count and instruction-set level
// (integer arithmetic, then an exact conversion). A word becomes a float in [0, 1) as NumPy's
// float32 random() makes one: (word >> 8) * 2^-24.
// Dropout's backward multiplies by the same mask (the model does that, in NumPy): nothing here.
#include "kernels.h"

#include <algorithm>

#if defined(__x86_64__) && (defined(PTBFAST_ISA_AVX512) || (defined(PTBFAST_ISA_NATIVE) && defined(__AVX512F__)))
#define PTBFAST_PHILOX_AVX512 1
#include <immintrin.h>
#endif

#include "isa_begin.h"  // (compiled once per instruction-set level: isa.h)

namespace {

constexpr int kLanes = 16;                  // blocks per group of 64 elements
constexpr int64_t kGroupsPerChunk = 1024;   // groups one thread makes at a time

#if defined(PTBFAST_PHILOX_AVX512)
// The high and low words of a * m (32 x 32 -> 64 bits) in each of 16 lanes, from VPMULUDQ's products of
// the even lanes and of the odd ones: the portable loop below became VPMULLQ on zero-extended words,
// no faster than SSE2 (a 455,000-element mask: 0.36-0.40 ms on 2 threads at either level).
// (The zero-masked forms with every lane set compile to the plain instructions; the plain intrinsics
// made GCC 12 warn of its own _mm512_undefined_epi32, GCC bug 105593.)
inline void multiply_wide(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  constexpr __mmask8 kAll = 0xFF;
  const __m512i even = _mm512_maskz_mul_epu32(kAll, a, m);
  const __m512i odd = _mm512_maskz_mul_epu32(kAll, _mm512_maskz_srli_epi64(kAll, a, 32), m);
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_maskz_srli_epi64(kAll, even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_maskz_slli_epi64(kAll, odd, 32));
}

// words[j][i] = word j of block first + i, for i < kLanes (first: a multiple of kLanes).
inline void philox4x32_10(uint32_t (&words)[4][kLanes], uint64_t first, uint32_t stream, uint64_t seed) {
  static_assert(kLanes == 16, "one 512-bit vector of blocks");
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m512i m2 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  // (first + i never carries into the high word: 2^32 is a multiple of 16)
  __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first))),
                                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  __m512i c1 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first >> 32)));
  __m512i c2 = _mm512_set1_epi32(static_cast<int>(stream)), c3 = _mm512_setzero_si512();
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    if (round > 0) k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
    __m512i hi0, lo0, hi2, lo2;
    multiply_wide(c0, m0, hi0, lo0);
    multiply_wide(c2, m2, hi2, lo2);
    c0 = _mm512_xor_si512(_mm512_xor_si512(hi2, c1), _mm512_set1_epi32(static_cast<int>(k0)));
    c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int>(k1)));
    c1 = lo2;
    c3 = lo0;
  }
  _mm512_storeu_si512(words[0], c0);
  _mm512_storeu_si512(words[1], c1);
  _mm512_storeu_si512(words[2], c2);
  _mm512_storeu_si512(words[3], c3);
}
#else
// words[j][i] = word j of block first + i, for i < kLanes.
inline void philox4x32_10(uint32_t (&words)[4][kLanes], uint64_t first, uint32_t stream, uint64_t seed) {
  uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
  for (int i = 0; i < kLanes; ++i) {
    c0[i] = static_cast<uint32_t>(first + i), c1[i] = static_cast<uint32_t>((first + i) >> 32);
    c2[i] = stream, c3[i] = 0;
  }
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    if (round > 0) k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;  // (the key schedule: Weyl increments)
#pragma omp simd
    for (int i = 0; i < kLanes; ++i) {
      const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0[i], p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2[i];
      const uint32_t next0 = static_cast<uint32_t>(p1 >> 32) ^ c1[i] ^ k0, next2 = static_cast<uint32_t>(p0 >> 32) ^ c3[i] ^ k1;
      c1[i] = static_cast<uint32_t>(p1), c3[i] = static_cast<uint32_t>(p0);
      c0[i] = next0, c2[i] = next2;
    }
  }
  for (int i = 0; i < kLanes; ++i) words[0][i] = c0[i], words[1][i] = c1[i], words[2][i] = c2[i], words[3][i] = c3[i];
}
#endif

inline float unit_float(uint32_t word) { return static_cast<float>(word >> 8) * (1.0f / 16777216.0f); }

// out[k] = f(unit_float(element k)) for k < n, groups of 64 elements in parallel chunks.
template <typename F>
void for_each_uniform(float* out, int64_t n, uint64_t seed, uint32_t stream, const F& f) {
  constexpr int64_t kGroup = 4 * kLanes;
  const int64_t groups = (n + kGroup - 1) / kGroup, chunks = (groups + kGroupsPerChunk - 1) / kGroupsPerChunk;
#pragma omp parallel for schedule(static) if (n > (1 << 15))
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t g1 = std::min(groups, (chunk + 1) * kGroupsPerChunk);
    for (int64_t g = chunk * kGroupsPerChunk; g < g1; ++g) {
      uint32_t words[4][kLanes];
      philox4x32_10(words, static_cast<uint64_t>(g) * kLanes, stream, seed);
      float* o = out + g * kGroup;
      if (g * kGroup + kGroup <= n) {
        for (int j = 0; j < 4; ++j)
#pragma omp simd
          for (int i = 0; i < kLanes; ++i) o[j * kLanes + i] = f(unit_float(words[j][i]));
      } else {  // the last group, cut by n
        for (int64_t e = 0; e < n - g * kGroup; ++e) o[e] = f(unit_float(words[e / kLanes][e % kLanes]));
      }
    }
  }
}

}  // namespace

void philox_uniform(float* out, int64_t n, uint64_t seed, uint32_t stream) {
  for_each_uniform(out, n, seed, stream, [](float u) { return u; });
}

void dropout_mask(float* out, int64_t n, uint64_t seed, uint32_t stream, float keep_prob, float scale) {
  for_each_uniform(out, n, seed, stream, [=](float u) { return u < keep_prob ? scale : 0.0f; });
}

#include "isa_end.h"
