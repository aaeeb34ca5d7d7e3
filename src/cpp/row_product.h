// ptbfast's float32 products of one row, y[N] = x[K] @ W: batch 1 (TF's test pass, a text scored one
// row at a time) and generation (one word a step). Three loops, each streaming W once, front to back:
//
// - row_times_panels: W packed as panels of 32 columns, each [K][32] contiguous. The LSTM's recurrent
//   product over many steps: each time-loop thread packs its columns of Wh once for all steps (they
//   lie in four runs, one a gate, so read in place they would be four short streams a row). MKL's
//   packed SGEMM of one row read W at about half that rate: 86-94 us a step against 49-54 for 1,300
//   columns of 650 rows a thread (AMD EPYC Zen 3, 2 threads; medium's recurrent product).
// - row_times_matrix: W read where it lies, row-major. Products with no time to pack: a step a call
//   (generation's LSTM and logits). Columns in blocks whose sums stay in L1 while W's rows stream
//   past. On the same Zen 3, 2 threads, us a product (ops.matmul; one W, then six in turn, as from
//   memory): 650 x 10,000 285-327 / 693-1,073 against MKL's SGEMM 837-950 / 1,215-1,246; 650 x 2,600
//   78-79 / 178-180 against 183-188 / 337-351 (NumPy's OpenBLAS, apart: 401 / 946 and 81 / 155).
// - row_times_transposed: its twin for W's transpose (tied weights' logits multiply the embedding
//   [V, H] transposed), a dot product per row of W: 1 x 650 @ (10,000 x 650)^T 505-547 us against
//   MKL's 1,168-1,265.
//
// blas.h's one_row_products chooses them over the BLAS.
//
// Included by kernel files after isa_begin.h, so that it is compiled at each instruction-set level:
// AVX2 and FMA intrinsics at the AVX2 and AVX-512 levels (and in a native build with them), plain
// C++ that the compiler vectorises elsewhere. Inside the level's namespace, so it includes nothing:
// the includer has <algorithm> and, on x86-64, <immintrin.h> before isa_begin.h.
#pragma once

#ifndef PTBFAST_ISA_NS
#error "row_product.h belongs inside a kernel file's instruction-set level (isa_begin.h)"
#endif

#if defined(__x86_64__) && (defined(PTBFAST_ISA_AVX2) || defined(PTBFAST_ISA_AVX512) || \
                            (defined(PTBFAST_ISA_NATIVE) && defined(__AVX2__) && defined(__FMA__)))
#define PTBFAST_ROW_PRODUCT_AVX2 1
#endif

#if defined(PTBFAST_ROW_PRODUCT_AVX2)
// A mask of the first `count` (0 to 8) of eight lanes: the loops' partial vectors, loaded through it.
inline __m256i first_lanes(int count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
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
#if defined(PTBFAST_ROW_PRODUCT_AVX2)
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

// Columns of row_times_matrix's blocks: their sums (8 KB) stay in L1 beside the rows streaming past.
// (1,024 and 512 measured slower on 650 x 10,000: 362 and 439 us, Zen 3 as above.)
constexpr int kRowBlockColumns = 2048;

// y[0, N) = alpha * (x[0, K) @ W) + beta * y (beta == 0: y is not read), W's K rows ldw floats apart,
// its first N columns read where they lie. Each column is one chain of multiply-adds in row order,
// so its result does not depend on how a caller splits the columns (threads, gates).
inline void row_times_matrix(float* __restrict y, const float* __restrict x, const float* __restrict w, int K, int N,
                             long ldw, float alpha, float beta) {
  constexpr int C = kRowBlockColumns;
  alignas(64) float sum[C];
  for (long c0 = 0; c0 < N; c0 += C) {
    const int n = static_cast<int>(std::min<long>(C, N - c0));
    const float* __restrict wc = w + c0;
#if defined(PTBFAST_ROW_PRODUCT_AVX2)
    // Eight rows a pass over the block (the sums loaded and stored once for eight multiply-adds); the
    // last partial vector of columns through a mask, with the same arithmetic as the others.
    const int full = n & ~7, rest = n - full;
    const __m256i tail = first_lanes(rest);
    std::fill_n(sum, full + (rest ? 8 : 0), 0.0f);
    int k = 0;
    for (; k + 8 <= K; k += 8) {
      __m256 xs[8];
      for (int r = 0; r < 8; ++r) xs[r] = _mm256_broadcast_ss(x + k + r);
      const float* __restrict row = wc + k * ldw;
      for (int j = 0; j < full; j += 8) {
        __m256 s = _mm256_load_ps(sum + j);
        for (int r = 0; r < 8; ++r) s = _mm256_fmadd_ps(xs[r], _mm256_loadu_ps(row + r * ldw + j), s);
        _mm256_store_ps(sum + j, s);
      }
      if (rest) {
        __m256 s = _mm256_load_ps(sum + full);
        for (int r = 0; r < 8; ++r) s = _mm256_fmadd_ps(xs[r], _mm256_maskload_ps(row + r * ldw + full, tail), s);
        _mm256_store_ps(sum + full, s);
      }
    }
    for (; k < K; ++k) {
      const __m256 xk = _mm256_broadcast_ss(x + k);
      const float* __restrict row = wc + k * ldw;
      for (int j = 0; j < full; j += 8)
        _mm256_store_ps(sum + j, _mm256_fmadd_ps(xk, _mm256_loadu_ps(row + j), _mm256_load_ps(sum + j)));
      if (rest)
        _mm256_store_ps(sum + full,
                        _mm256_fmadd_ps(xk, _mm256_maskload_ps(row + full, tail), _mm256_load_ps(sum + full)));
    }
#else
    std::fill_n(sum, n, 0.0f);
    for (int k = 0; k < K; ++k) {
      const float xk = x[k];
      const float* __restrict row = wc + k * ldw;
#pragma omp simd
      for (int j = 0; j < n; ++j) sum[j] += xk * row[j];
    }
#endif
    float* __restrict out = y + c0;
    if (beta == 0.0f) {
#pragma omp simd
      for (int j = 0; j < n; ++j) out[j] = alpha * sum[j];
    } else {
#pragma omp simd
      for (int j = 0; j < n; ++j) out[j] = alpha * sum[j] + beta * out[j];
    }
  }
}

#if defined(PTBFAST_ROW_PRODUCT_AVX2)
// The sum of v's eight lanes, in one fixed order.
inline float sum_of_lanes(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#endif

// y[0, N) = alpha * (x[0, K) @ W^T) + beta * y (beta == 0: y is not read), W [N, K] row-major, its
// rows ldw floats apart, read where it lies: y[n] is the dot product of x with W's row n. Each row's
// sum is the same arithmetic wherever the row falls (eight lanes over k in order, then the lanes in
// one fixed order), so its result does not depend on how a caller splits the rows.
inline void row_times_transposed(float* __restrict y, const float* __restrict x, const float* __restrict w, int K,
                                 int N, long ldw, float alpha, float beta) {
  const auto store = [&](int n, float dot) { y[n] = beta == 0.0f ? alpha * dot : alpha * dot + beta * y[n]; };
#if defined(PTBFAST_ROW_PRODUCT_AVX2)
  const int full = K & ~7, rest = K - full;
  const __m256i tail = first_lanes(rest);
  const __m256 x_tail = _mm256_maskload_ps(x + full, tail);
  int n = 0;
  for (; n + 4 <= N; n += 4) {  // (four rows at a time: four independent chains, x loaded once for them)
    const float* __restrict r = w + n * ldw;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int k = 0; k < full; k += 8) {
      const __m256 xk = _mm256_loadu_ps(x + k);
      s0 = _mm256_fmadd_ps(xk, _mm256_loadu_ps(r + k), s0);
      s1 = _mm256_fmadd_ps(xk, _mm256_loadu_ps(r + ldw + k), s1);
      s2 = _mm256_fmadd_ps(xk, _mm256_loadu_ps(r + 2 * ldw + k), s2);
      s3 = _mm256_fmadd_ps(xk, _mm256_loadu_ps(r + 3 * ldw + k), s3);
    }
    if (rest) {
      s0 = _mm256_fmadd_ps(x_tail, _mm256_maskload_ps(r + full, tail), s0);
      s1 = _mm256_fmadd_ps(x_tail, _mm256_maskload_ps(r + ldw + full, tail), s1);
      s2 = _mm256_fmadd_ps(x_tail, _mm256_maskload_ps(r + 2 * ldw + full, tail), s2);
      s3 = _mm256_fmadd_ps(x_tail, _mm256_maskload_ps(r + 3 * ldw + full, tail), s3);
    }
    store(n, sum_of_lanes(s0));
    store(n + 1, sum_of_lanes(s1));
    store(n + 2, sum_of_lanes(s2));
    store(n + 3, sum_of_lanes(s3));
  }
  for (; n < N; ++n) {
    const float* __restrict r = w + n * ldw;
    __m256 s = _mm256_setzero_ps();
    for (int k = 0; k < full; k += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(r + k), s);
    if (rest) s = _mm256_fmadd_ps(x_tail, _mm256_maskload_ps(r + full, tail), s);
    store(n, sum_of_lanes(s));
  }
#else
  for (int n = 0; n < N; ++n) {  // (eight partial sums, k % 8, added in one fixed order: the same bits per row)
    const float* __restrict r = w + n * ldw;
    float lanes[8] = {};
    int k = 0;
    for (; k + 8 <= K; k += 8)
#pragma omp simd
      for (int l = 0; l < 8; ++l) lanes[l] += x[k + l] * r[k + l];
    for (int l = 0; k + l < K; ++l) lanes[l] += x[k + l] * r[k + l];
    store(n, ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7])));
  }
#endif
}
