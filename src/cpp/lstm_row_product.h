// The LSTM's float32 recurrent product of one row (batch 1: TF's test pass, a text scored one row at
// a time): y[N] = h[K] @ W for one time-loop thread's N columns of Wh, packed once for all steps as
// panels of 32 columns, each [K][32] contiguous, so that every step streams W once, front to back.
// A loop of our own because MKL's packed SGEMM of one row read W at about half that rate: 86-94 us
// a step against 49-54 for 1,300 columns of 650 rows a thread (AMD EPYC Zen 3, 2 threads; medium's
// recurrent product). blas.h's one_row_recurrent_products chooses it.
//
// Included by lstm.cpp after isa_begin.h, so that it is compiled at each instruction-set level:
// AVX2 and FMA intrinsics at the AVX2 and AVX-512 levels (and in a native build with them), plain
// C++ that the compiler vectorises elsewhere. Inside the level's namespace, so it includes nothing:
// lstm.cpp includes <algorithm> and, on x86-64, <immintrin.h> before isa_begin.h.
#pragma once

#ifndef PTBFAST_ISA_NS
#error "lstm_row_product.h belongs inside a kernel file's instruction-set level (isa_begin.h)"
#endif

constexpr int kRowPanelWidth = 32;

// Floats of N columns of K rows as panels (the last one padded with zero columns).
inline long row_panel_floats(int K, int N) {
  return static_cast<long>((N + kRowPanelWidth - 1) / kRowPanelWidth) * K * kRowPanelWidth;
}

// y[0, N) = h[0, K) @ W, W as row_panel_floats(K, N) floats of panels. Each column sums the even
// rows' terms and the odd rows' terms apart, in row order, and adds the two at the end (two
// independent chains a column: one would wait on the multiply-add's latency).
inline void row_times_panels(float* __restrict y, const float* __restrict h, const float* __restrict panels, int K,
                             int N) {
  constexpr int P = kRowPanelWidth;
  for (int p = 0; p * P < N; ++p) {
    const float* __restrict w = panels + static_cast<long>(p) * K * P;
    alignas(32) float sum[P];
#if defined(__x86_64__) && (defined(PTBFAST_ISA_AVX2) || defined(PTBFAST_ISA_AVX512) || \
                            (defined(PTBFAST_ISA_NATIVE) && defined(__AVX2__) && defined(__FMA__)))
    // (GCC's vectorisation of the plain loop below chained the columns' sums: 65-70 us a step, not 49-54)
    __m256 e0 = _mm256_setzero_ps(), e1 = e0, e2 = e0, e3 = e0, o0 = e0, o1 = e0, o2 = e0, o3 = e0;
    int k = 0;
    for (; k + 1 < K; k += 2, w += 2 * P) {
      const __m256 even = _mm256_broadcast_ss(h + k), odd = _mm256_broadcast_ss(h + k + 1);
      e0 = _mm256_fmadd_ps(even, _mm256_loadu_ps(w), e0);
      e1 = _mm256_fmadd_ps(even, _mm256_loadu_ps(w + 8), e1);
      e2 = _mm256_fmadd_ps(even, _mm256_loadu_ps(w + 16), e2);
      e3 = _mm256_fmadd_ps(even, _mm256_loadu_ps(w + 24), e3);
      o0 = _mm256_fmadd_ps(odd, _mm256_loadu_ps(w + 32), o0);
      o1 = _mm256_fmadd_ps(odd, _mm256_loadu_ps(w + 40), o1);
      o2 = _mm256_fmadd_ps(odd, _mm256_loadu_ps(w + 48), o2);
      o3 = _mm256_fmadd_ps(odd, _mm256_loadu_ps(w + 56), o3);
    }
    if (k < K) {  // (odd K: the last row)
      const __m256 even = _mm256_broadcast_ss(h + k);
      e0 = _mm256_fmadd_ps(even, _mm256_loadu_ps(w), e0);
      e1 = _mm256_fmadd_ps(even, _mm256_loadu_ps(w + 8), e1);
      e2 = _mm256_fmadd_ps(even, _mm256_loadu_ps(w + 16), e2);
      e3 = _mm256_fmadd_ps(even, _mm256_loadu_ps(w + 24), e3);
    }
    _mm256_store_ps(sum, _mm256_add_ps(e0, o0));
    _mm256_store_ps(sum + 8, _mm256_add_ps(e1, o1));
    _mm256_store_ps(sum + 16, _mm256_add_ps(e2, o2));
    _mm256_store_ps(sum + 24, _mm256_add_ps(e3, o3));
#else
    float even[P] = {}, odd[P] = {};
    int k = 0;
    for (; k + 1 < K; k += 2, w += 2 * P) {
      const float he = h[k], ho = h[k + 1];
#pragma omp simd
      for (int j = 0; j < P; ++j) {
        even[j] += he * w[j];
        odd[j] += ho * w[P + j];
      }
    }
    if (k < K) {
      const float he = h[k];
#pragma omp simd
      for (int j = 0; j < P; ++j) even[j] += he * w[j];
    }
#pragma omp simd
    for (int j = 0; j < P; ++j) sum[j] = even[j] + odd[j];
#endif
    const int columns = std::min(P, N - p * P);
    std::copy_n(sum, columns, y + p * P);
  }
}
