// One LSTM layer over T time steps (TF BasicLSTMCell), forward and backward through time.
//
// Both directions do their big products as single GEMMs over all T*B rows (the input projection
// forward; the weight gradients and dx backward) and keep only the recurrent product h_{t-1} @ Wh
// (B x H x 4H) inside the time loop. That loop runs in one parallel region: each thread owns a
// slice of the hidden units, keeps its part of Wh packed for all T steps (MKL, when T >= 8; at batch
// 1, where blas::one_row_products_on_ptbfast says, ptbfast's loops: its panels from 8 steps, Wh read
// in place below; in bf16 ptbfast's AMX or dot-product kernel where blas::bf16_recurrent_kernel
// names one),
// computes its units' gate pre-activations and their gate math (a vectorised loop per gate, then the
// cell: gate_math_forward), and waits at one barrier per step. (One BLAS call over all threads per
// step, then a parallel gate pass, cost two fork/joins per step and left the threads idle at each.)
#include <omp.h>
#if defined(__x86_64__)
#include <immintrin.h>  // (row_product.h)
#endif

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "bf16.h"
#include "blas.h"
#include "free_floats.h"
#include "frozen_weights.h"
#include "gemm/bf16/gemm_bf16.h"
#include "kernels.h"
#include "profile.h"
#include "time_loop_team.h"
#include "vecmath.h"

#include "isa_begin.h"  // (compiled once per instruction-set level: isa.h)
#include "row_product.h"

// Below this many multiply-adds per recurrent product, one step is a few microseconds and the
// per-step barrier would cost more than splitting the step saves.
static constexpr long kParallelMacs = 1L << 16;
// When one thread runs the time loop (no MKL), its gate math is still split across threads from
// this many elements per step on (below, the fork/join costs more than the work).
static constexpr long kParallelGateElements = 4096;

// Threads for the time loop. Without MKL (and without bf16 products on ptbfast's kernels, which run
// on the calling thread inside a parallel region) it runs on one thread: the BLAS threads each
// product and the gate math is a parallel loop of its own.
static int time_loop_threads(int B, int H, bool own_products) {
  const long macs = static_cast<long>(B) * H * 4 * H;
  if (macs < kParallelMacs || !(own_products || blas::callable_in_parallel_region())) return 1;
  return omp_get_max_threads();
}

// Hidden units [k0, k1) of thread `part` of `parts`, in whole 16-float vectors (one AVX-512
// register), so that only the last thread's gate loops end in a partial vector.
struct UnitRange {
  int k0, k1;
  int size() const { return k1 - k0; }
};
static UnitRange units_of(int part, int parts, int H) {
  const long vectors = (H + 15) / 16;
  return {std::min(H, static_cast<int>(vectors * part / parts) * 16),
          std::min(H, static_cast<int>(vectors * (part + 1) / parts) * 16)};
}

// out[n] = in[n], or in bf16 rounded to bf16 (the recurrent weights, as they are packed).
static void copy_or_round(float* out, const float* in, int n, bool bf16) {
  if (!bf16) {
    std::copy_n(in, n, out);
    return;
  }
#pragma omp simd
  for (int k = 0; k < n; ++k) out[k] = round_bf16(in[k]);
}

// Units [u.k0, u.k1) of w_hidden [H, 4H]: their columns of gates i, j, f, o side by side, [H, 4n],
// into w (rounded in bf16).
static void gather_own_columns(float* w, const float* w_hidden, UnitRange u, int H, bool bf16) {
  const int n = u.size(), G = 4 * H;
  for (int r = 0; r < H; ++r)
    for (int q = 0; q < 4; ++q)
      copy_or_round(w + static_cast<long>(r) * 4 * n + q * n, w_hidden + static_cast<long>(r) * G + q * H + u.k0, n,
                    bf16);
}

// Units [u.k0, u.k1) of w_hidden [H, 4H], their columns laid out as gather_own_columns lays them, as
// row_times_panels' panels (row_panel_floats(H, 4n) floats), each panel row in runs of one gate's units.
static void pack_own_row_panels(float* panels, const float* w_hidden, UnitRange u, int H) {
  const int n = u.size(), N = 4 * n;
  const long G = 4L * H;
  for (int p = 0; p * kRowPanelWidth < N; ++p)
    for (int r = 0; r < H; ++r) {
      float* out = panels + (static_cast<long>(p) * H + r) * kRowPanelWidth;
      int j = 0;  // columns of this panel row written
      for (int c = p * kRowPanelWidth; j < kRowPanelWidth && c < N;) {
        const int unit = c % n, run = std::min({kRowPanelWidth - j, n - unit, N - c});
        std::copy_n(w_hidden + r * G + static_cast<long>(c / n) * H + u.k0 + unit, run, out + j);
        j += run;
        c += run;
      }
      std::fill(out + j, out + kRowPanelWidth, 0.0f);
    }
}

// Where thread `part` of `parts` keeps its panels in a buffer of all threads' (row_panels_of_all).
static long row_panels_offset(int part, int parts, int H) {
  long offset = 0;
  for (int q = 0; q < part; ++q) offset += row_panel_floats(H, 4 * units_of(q, parts, H).size());
  return offset;
}
// Floats for the panels of any team of at most `threads` threads: each thread with units pads at most
// one panel, and no more threads have units than H has 16-unit vectors (units_of).
static long row_panels_of_all(int threads, int H) {
  const long padded = std::min<long>(threads, (H + 15) / 16);
  return static_cast<long>(H) * (4L * H + padded * kRowPanelWidth);
}

// Units [u.k0, u.k1) of w_hidden [H, 4H] as gemm_bf16's packed B [H, 4n] of the columns
// gather_own_columns lays side by side, packed straight from w_hidden (no float32 copy first):
// 16 pair rows at a time across every panel, as PackedB packs a row-major B, each panel row in runs
// of one gate's units.
static gemm::bf16::PackedB* pack_own_columns(const float* w_hidden, UnitRange u, int H) {
  namespace gb = gemm::bf16;
  const int n = u.size(), N = 4 * n;
  const long G = 4L * H;
  const double start = profile::now_outside();
  auto* b = new gb::PackedB(H, N, gb::PackedB::WrittenByCaller{});
  const int pairs = b->pairs(), padded = b->padded_pairs();
  for (int k0 = 0; k0 < padded; k0 += gb::kPairRun) {
    for (int p = 0; p < b->panels(); ++p) {
      for (int k = k0; k < k0 + gb::kPairRun; ++k) {
        uint32_t* out = b->words() + b->word(k, p * gb::kPanel);
        int j = 0;  // words of this panel row written
        if (k < pairs) {
          const float* even = w_hidden + 2L * k * G;
          const float* odd = 2 * k + 1 < H ? even + G : nullptr;
          for (int c = p * gb::kPanel; j < gb::kPanel && c < N;) {
            const int unit = c % n, run = std::min({gb::kPanel - j, n - unit, N - c});
            const long column = static_cast<long>(c / n) * H + u.k0 + unit;  // (gate c / n)
            gb::pack_two_rows(out + j, even + column, odd ? odd + column : nullptr, run);
            j += run;
            c += run;
          }
        }
        std::fill(out + j, out + gb::kPanel, 0u);
      }
    }
  }
  profile::since_outside(profile::kBf16Packing, start);
  return b;
}

void lstm_freeze_bf16(FrozenWeights& frozen, const float* kernel, int In, int H, bool rounded_copies) {
  const int G = 4 * H;
  using gemm::bf16::PackedB;
  frozen.lstm_inputs = In;
  frozen.lstm_units = H;
  // The input projection: B = Wx [In, 4H], for the kernel that takes it from many rows on.
  frozen.lstm_input_kernel = blas::bf16_packed_b_kernel(1 << 20, G, In);
  if (!frozen.lstm_input_kernel.empty()) frozen.lstm_input.reset(new PackedB(kernel, In, G, G, 1));
  // The recurrent product on ptbfast's kernel: each time-loop thread's columns, for the thread count
  // a call of more than a few rows uses (time_loop_threads).
  frozen.lstm_recurrent.clear();
  frozen.lstm_parts = 0;
  frozen.lstm_rounded_input.reset();
  frozen.lstm_rounded_recurrent.reset();
  // Where the products are SGEMMs, on request: the weights rounded once (Wx for the input projection,
  // which a kernel that rounds as it packs reads the same; Wh gathered by the time loop's threads).
  if (rounded_copies && frozen.lstm_input_kernel.empty()) {
    frozen.lstm_rounded_input.reset(new float[static_cast<size_t>(In) * G]);
    round_to_bf16(frozen.lstm_rounded_input.get(), kernel, static_cast<int64_t>(In) * G);
  }
  const float* w_hidden = kernel + static_cast<long>(In) * G;
  if (H == 0) return;
  if (blas::bf16_recurrent_kernel().empty()) {
    if (!rounded_copies) return;
    const int parts = time_loop_threads(1 << 20, H, false);
    frozen.lstm_rounded_recurrent.reset(new float[static_cast<size_t>(H) * G]);
    for (int part = 0; part < parts; ++part) {
      const UnitRange u = units_of(part, parts, H);
      gather_own_columns(frozen.lstm_rounded_recurrent.get() + static_cast<long>(H) * 4 * u.k0, w_hidden, u, H, true);
    }
    frozen.lstm_parts = parts;
    return;
  }
  const int parts = time_loop_threads(1 << 20, H, true);
  for (int part = 0; part < parts; ++part) {
    const UnitRange u = units_of(part, parts, H);
    frozen.lstm_recurrent.emplace_back(u.size() == 0 ? nullptr : pack_own_columns(w_hidden, u, H));
  }
  frozen.lstm_parts = parts;
}

// Splits a time loop's wall time into thread 0's recurrent products and the rest (gate math).
static void time_loop_profile(double loop_start, double recurrent_seconds) {
  if (loop_start <= 0 || !profile::enabled()) return;  // (started while profiling was off: profile.h)
  profile::add(profile::kRecurrentProducts, recurrent_seconds);
  profile::add(profile::kGateMath, omp_get_wtime() - loop_start - recurrent_seconds);
}

// Runs loop(part, parts, member) on the time loop's threads, BLAS calls inside each on its own thread;
// the loop passes `steps` barriers, member.wait() each, and stops where one returns false (a thread
// failed: time_loop_team.h). A thread's exception is rethrown here, after the region.
template <typename Loop>
static void run_time_loop(int threads, int steps, const Loop& loop) {
  if (threads == 1) {  // no region: the BLAS may thread each product itself; exceptions pass straight up
    TimeLoopTeam team(steps, false);
    TimeLoopTeam::Member member(team, 0);
    loop(0, 1, member);
    return;
  }
  TimeLoopTeam team(steps, true);
#pragma omp parallel num_threads(threads)
  {
    TimeLoopTeam::Member member(team, omp_get_thread_num());
    try {
      const blas::ThisThreadOnly own_thread;
      loop(omp_get_thread_num(), omp_get_num_threads(), member);
    } catch (...) {
      team.fail(std::current_exception());
    }
    member.pass_remaining();
  }
  team.rethrow_first_error();
}

// One gate's activations in place over n units: g[k] = act(g[k] + rec[k] + bias[k] (+ forget_bias)).
// restrict pointers and scalars by value: inside the time loop's lambda, the stores to the gates
// could alias the captured forget_bias, and GCC left such a loop scalar.
template <bool kTanh, bool kForget>
static void gate_activation(float* __restrict g, const float* __restrict rec, const float* __restrict bias, int n,
                            float forget_bias) {
#pragma omp simd
  for (int k = 0; k < n; ++k) {
    const float z = kForget ? g[k] + rec[k] + bias[k] + forget_bias : g[k] + rec[k] + bias[k];
    g[k] = kTanh ? tanh_approx(z) : sigmoid_approx(z);
  }
}

// The gate math of one row's units [k0, k0 + n): g holds x @ Wx of gates i, j, f, o (stride H) and
// becomes their activations; rec holds h_{t-1} @ Wh (stride n). One short loop per gate, then the
// cell: a single loop doing all five nonlinearities was ~200 instructions per vector with a long
// dependency chain, too long for the out-of-order window to overlap iterations (Zen 3: 6.7 ns
// per unit fused, 5.0 in passes). The bf16 choice is a template argument (a run-time select
// between h and its rounding is not one GCC 12 vectorises).
template <bool kRoundH>
static void gate_math_forward(float* __restrict g, const float* __restrict rec, const float* __restrict bias,
                              const float* __restrict c_prev, float* __restrict c_next, float* __restrict h_next,
                              int n, int H, float forget_bias) {
  gate_activation<false, false>(g, rec, bias, n, 0.0f);                           // i
  gate_activation<true, false>(g + H, rec + n, bias + H, n, 0.0f);                // j
  gate_activation<false, true>(g + 2 * H, rec + 2 * n, bias + 2 * H, n, forget_bias);  // f
  gate_activation<false, false>(g + 3 * H, rec + 3 * n, bias + 3 * H, n, 0.0f);   // o
  const float* __restrict i = g;
  const float* __restrict j = g + H;
  const float* __restrict f = g + 2 * H;
  const float* __restrict o = g + 3 * H;
#pragma omp simd
  for (int k = 0; k < n; ++k) {
    const float c = c_prev[k] * f[k] + i[k] * j[k];
    c_next[k] = c;
    const float h = tanh_approx(c) * o[k];
    h_next[k] = kRoundH ? round_bf16(h) : h;
  }
}

void lstm_forward(float* h_all, float* c_all, float* gates, const float* x, const float* c0, const float* h0,
                  const float* kernel, const float* bias, float forget_bias, int T, int B, int In, int H,
                  bool bf16, const FrozenWeights* frozen) {
  const int G = 4 * H;
  const long rows = static_cast<long>(T) * B;
  const bool rounded_once = bf16 && frozen && frozen->lstm_rounded_input;  // (a frozen model's, for SGEMMs)
  const float* w_input = rounded_once ? frozen->lstm_rounded_input.get() : kernel;  // [In, 4H]
  const float* w_hidden = kernel + static_cast<long>(In) * G;  // [H, 4H]

  // bf16 on ptbfast's kernel (every one reads the same packed B): "" for packed SGEMMs.
  const std::string recurrent_kernel = bf16 ? blas::bf16_recurrent_kernel(B) : "";
  const bool own_recurrent = !recurrent_kernel.empty();
  // bf16 products on SGEMM take Wx rounded (ptbfast's and MKL's kernels round as they pack).
  const bool round_wx = bf16 && !rounded_once && !blas::gemm_bf16_rounds_operands(static_cast<int>(rows), G, In);
  // fp32 at batch 1: ptbfast's products of one row on the time loop's threads, whatever the BLAS
  // (row_product.h): over enough steps to pay for packing, on panels of each thread's columns packed
  // once (row_panels); over fewer (generation: one step a call), on Wh where it lies.
  const bool row_products = !bf16 && B == 1 && blas::one_row_products_on_ptbfast();
  const bool row_panels_used = row_products && T >= blas::kPackedMinUses;
  // bf16 at batch 1 where the products are SGEMMs: the same loop reads each thread's gathered, rounded
  // columns (a product of bf16 values is exact in float32: bf16 arithmetic, as on SGEMM).
  const bool bf16_rows = bf16 && !own_recurrent && B == 1 && blas::one_row_products_on_ptbfast();
  const int threads = time_loop_threads(B, H, own_recurrent || row_products || bf16_rows);
  // A frozen model's rounded, gathered columns of Wh (bf16 on SGEMM), where gathered for this many threads.
  const float* frozen_gathered = !own_recurrent && bf16 && frozen && frozen->lstm_rounded_recurrent &&
                                         frozen->lstm_parts == threads
                                     ? frozen->lstm_rounded_recurrent.get()
                                     : nullptr;
  // fp32 SGEMMs read each thread's columns of Wh where they lie (one thread: all of Wh, one product a
  // step; several, over fewer steps than packing pays for: one product a gate) instead of a gathered
  // copy, whose writing (H x 4n floats a call, into fresh memory) took 8.9 of 12.2 ms a layer in
  // large's generation, one step a call (Intel Xeon family 6 model 167). bf16 on SGEMM gathers them
  // rounded, or reads a frozen model's.
  const bool gather_wh = !own_recurrent && !row_products && !frozen_gathered &&
                         (bf16 || (threads > 1 && T >= blas::kPackedMinUses));

  // Scratch of all threads, allocated here, before the region (which would catch its failure: time_loop_team.h):
  // the thread of units [k0, k1), n = k1 - k0, uses rec [B, 4n] from B*4*k0, and for packed SGEMMs
  // w_own [H, 4n] from offset H*4*k0 (ptbfast's kernels pack the columns straight from the kernel).
  // w_own first holds Wx rounded where the input projection needs it (so a bf16 layer needs no
  // rounded copy of its kernel beside this scratch that fp32 has too).
  // (new[], not vector: every element is written before it is read, so no zero-fill pass.)
  const std::unique_ptr<float[]> w_own(
      new float[static_cast<size_t>(std::max(gather_wh ? H : 0, round_wx ? In : 0)) * G]),
      rec_all(new float[static_cast<size_t>(B) * G]),
      row_panels(row_panels_used ? new float[row_panels_of_all(threads, H)] : nullptr);

  // Input projection of every step at once: gates = x @ Wx (the bias is added in the gate math,
  // which saves a pass that would write it into all T*B rows first).
  const double input_start = profile::now();
  std::string frozen_input_kernel;  // (as output_layer.cpp's use_frozen chooses)
  if (bf16 && frozen && frozen->lstm_input) {
    frozen_input_kernel = blas::bf16_packed_b_kernel(static_cast<int>(rows), G, In);
    if (frozen_input_kernel.empty() && rows > 0 && blas::bf16_products() == "auto")
      frozen_input_kernel = blas::bf16_kernel_for_rows(frozen->lstm_input_kernel, static_cast<int>(rows));
  }
  if (!frozen_input_kernel.empty()) {  // Wx packed once for the frozen model (what this call would pack)
    gemm::bf16::multiply_packed(frozen_input_kernel, x, static_cast<int>(rows), In, 1, *frozen->lstm_input, gates, G,
                                false);
  } else {
    if (round_wx) round_to_bf16(w_own.get(), w_input, static_cast<int64_t>(In) * G);
    blas::gemm_for(bf16)(false, false, static_cast<int>(rows), G, In, 1.0f, x, In, round_wx ? w_own.get() : w_input,
                         G, 0.0f, gates, G);
  }
  profile::since(profile::kLstmInputProducts, input_start);
  if (rows == 0) return;
  if (row_products || bf16_rows) blas::count_one_row_recurrent_products();
  // bf16: the first recurrent product multiplies h0 rounded (later ones h_t, rounded when made).
  std::vector<float> h0_rounded(bf16 ? static_cast<size_t>(B) * H : 0);
  if (bf16) round_to_bf16(h0_rounded.data(), h0, static_cast<int64_t>(B) * H);
  const float* h0_product = bf16 ? h0_rounded.data() : h0;
  const double loop_start = profile::now();
  double recurrent_seconds = 0.0;  // thread 0's, when profiling
  // A frozen model's packs of the threads' columns, where they were packed for this many threads.
  const bool frozen_recurrent = own_recurrent && frozen && !frozen->lstm_recurrent.empty() &&
                                frozen->lstm_parts == threads;
  run_time_loop(threads, T, [&](int part, int parts, TimeLoopTeam::Member& team) {
    const bool timing = part == 0 && profile::enabled();
    const UnitRange u = units_of(part, parts, H);
    const int n = u.size();
    // This thread's columns of Wh, gates i, j, f, o side by side: [H, 4n], packed once for T steps:
    // on ptbfast's kernel as bf16 pairs (each step's product on this thread), else gathered into
    // w_own for the packed SGEMM (or read where they lie: gather_wh).
    // A frozen model's packs and gathers are laid out for `threads` parts; a team of fewer threads
    // than asked (OMP_DYNAMIC) makes its own here instead of reading another thread's columns.
    const bool frozen_layout = parts == threads;
    float* w_gathered = gather_wh ? w_own.get() + static_cast<long>(H) * 4 * u.k0 : nullptr;
    std::unique_ptr<float[]> gathered_here;
    if (frozen_gathered && !frozen_layout) {
      gathered_here.reset(new float[static_cast<size_t>(H) * 4 * n]);
      w_gathered = gathered_here.get();
    }
    if (w_gathered) gather_own_columns(w_gathered, w_hidden, u, H, bf16);
    const float* w = w_gathered ? w_gathered : frozen_gathered ? frozen_gathered + static_cast<long>(H) * 4 * u.k0
                                                               : nullptr;
    std::unique_ptr<gemm::bf16::PackedB> packed_here;
    const gemm::bf16::PackedB* recurrent_bf16 = nullptr;
    if (frozen_recurrent && frozen_layout) {
      recurrent_bf16 = frozen->lstm_recurrent[part].get();
    } else if (own_recurrent && n > 0) {
      packed_here.reset(pack_own_columns(w_hidden, u, H));
      recurrent_bf16 = packed_here.get();
    }
    // Batch 1 on ptbfast's loop: this thread's columns as its panels.
    float* own_row_panels = nullptr;
    if (row_panels_used) {
      own_row_panels = row_panels.get() + row_panels_offset(part, parts, H);
      pack_own_row_panels(own_row_panels, w_hidden, u, H);
    }
    // The SGEMMs' B: the gathered columns [H, 4n]; on one thread Wh itself (its columns, gates side
    // by side, are Wh); else each gate's n columns where they lie in Wh.
    const bool on_sgemm = !own_recurrent && !row_products && !bf16_rows;
    std::optional<blas::PackedB> recurrent[4];
    if (on_sgemm && w)
      recurrent[0].emplace(false, B, 4 * n, H, w, 4 * n, T);
    else if (on_sgemm && parts == 1)
      recurrent[0].emplace(false, B, G, H, w_hidden, G, T);
    else if (on_sgemm)
      for (int g = 0; g < 4; ++g) recurrent[g].emplace(false, B, n, H, w_hidden + g * H + u.k0, G, T);
    float* rec = rec_all.get() + static_cast<long>(B) * 4 * u.k0;

    for (int t = 0; t < T; ++t) {
      const float* h_prev = t == 0 ? h0_product : h_all + static_cast<long>(t - 1) * B * H;
      const float* c_prev = t == 0 ? c0 : c_all + static_cast<long>(t - 1) * B * H;
      const double product_start = timing ? omp_get_wtime() : 0.0;
      if (recurrent_bf16)  // rec [B, 4n] = h_{t-1} @ own columns of Wh
        gemm::bf16::multiply_packed(recurrent_kernel, h_prev, B, H, 1, *recurrent_bf16, rec, 4 * n, false);
      else if (own_row_panels)  // rec [1, 4n] = h_{t-1} @ own columns of Wh
        row_times_panels(rec, h_prev, own_row_panels, H, 4 * n);
      else if (bf16_rows)  // (the gathered, rounded columns [H, 4n])
        row_times_matrix(rec, h_prev, w, H, 4 * n, 4 * n, 1.0f, 0.0f);
      else if (row_products && parts == 1)  // (one thread: its columns, gates side by side, are Wh)
        row_times_matrix(rec, h_prev, w_hidden, H, G, G, 1.0f, 0.0f);
      else if (row_products)  // (one product a gate, its n columns where they lie)
        for (int g = 0; g < 4; ++g) row_times_matrix(rec + g * n, h_prev, w_hidden + g * H + u.k0, H, n, G, 1.0f, 0.0f);
      else  // (one product, or one a gate)
        for (int g = 0; g < 4; ++g)
          if (recurrent[g]) recurrent[g]->gemm(h_prev, H, 0.0f, rec + g * n, 4 * n);
      if (timing) recurrent_seconds += omp_get_wtime() - product_start;
      // Split across threads only when one thread runs the whole loop (no MKL); inside the
      // region the `if` is false and each thread runs its rows itself.
#pragma omp parallel for schedule(static) if (parts == 1 && static_cast<long>(B) * H >= kParallelGateElements)
      for (int b = 0; b < B; ++b) {
        const long off = static_cast<long>(b) * H + u.k0;
        float* g = gates + (static_cast<long>(t) * B + b) * G + u.k0;
        const float* r = rec + static_cast<long>(b) * 4 * n;
        float* c_next = c_all + static_cast<long>(t) * B * H + off;
        float* h_next = h_all + static_cast<long>(t) * B * H + off;
        if (bf16)
          gate_math_forward<true>(g, r, bias + u.k0, c_prev + off, c_next, h_next, n, H, forget_bias);
        else
          gate_math_forward<false>(g, r, bias + u.k0, c_prev + off, c_next, h_next, n, H, forget_bias);
      }
      if (!team.wait()) return;  // step t+1 multiplies all of h_t
    }
  });
  time_loop_profile(loop_start, recurrent_seconds);
}

// The kernel of every product after a bf16 backward's time loop (dx, dWx, dWh) where one kernel that
// takes a packed B runs them all (ptbfast's own), else "".
static std::string one_packing_kernel(long rows, int In, int H) {
  const int G = 4 * H, R = static_cast<int>(rows);
  const std::string dx = blas::bf16_packed_b_kernel(R, In, G);
  if (dx != blas::bf16_packed_b_kernel(In, G, R) || dx != blas::bf16_packed_b_kernel(H, G, R)) return "";
  return dx;
}

// dWh = h_{t-1}^T @ d_gates, then dWx = x^T @ d_gates, on `kernel`, d_gates packed as B: h_{t-1} of all
// steps (h0, then h_all's first T-1 steps) copied into h_prev [rows, H] as one operand, so that dWh is
// one product (the kernel rounds h0 as it packs it). h_prev may lie in dw_input: dWh is made first.
static void weight_gradients_on_packed(const std::string& kernel, const gemm::bf16::PackedB& d_gates_packed,
                                       const float* x, const float* h0, const float* h_all, float* h_prev,
                                       long rows, long state, int In, int H, float* dw_input, float* dw_hidden) {
  const int G = 4 * H;
  std::copy_n(h0, state, h_prev);
  std::copy_n(h_all, rows * H - state, h_prev + state);
  gemm::bf16::multiply_packed(kernel, h_prev, H, 1, H, d_gates_packed, dw_hidden, G, false);
  gemm::bf16::multiply_packed(kernel, x, In, 1, In, d_gates_packed, dw_input, G, false);
}

void lstm_backward(float* dx, float* dc0, float* dh0, float* dkernel, float* dbias, const float* d_h_all,
                   const float* d_c_T, const float* d_h_T, const float* x, const float* c0, const float* h0,
                   const float* kernel, const float* h_all, const float* c_all, const float* gates, int T, int B,
                   int In, int H, bool bf16) {
  const int G = 4 * H;
  const long rows = static_cast<long>(T) * B;
  const long state = static_cast<long>(B) * H;
  const float* w_input = kernel;
  const float* w_hidden = kernel + static_cast<long>(In) * G;

  // d_gates: the gradient w.r.t. the gate pre-activations of every step (each element is written
  // by the time loop before anything reads it, hence no zero-fill). bf16, where ptbfast's kernels run
  // every product after the loop: the loop writes them rounded straight into dx's A operand as its
  // kernel reads it (half of float32's size; in dkernel's rows [0, In), which nothing reads before
  // dWx is written, where they fit), each step's float32 copy in one of two buffers of B rows, and
  // no float32 d_gates of all steps exists.
  const std::string written_kernel = bf16 && rows > 0 ? one_packing_kernel(rows, In, H) : "";
  FreeFloats input_rows(dkernel, static_cast<long>(In) * G);
  std::unique_ptr<gemm::bf16::PackedA> written;
  if (!written_kernel.empty())
    written.reset(new gemm::bf16::PackedA(
        written_kernel, static_cast<int>(rows), G,
        input_rows.take(gemm::bf16::PackedA::words_for(written_kernel, static_cast<int>(rows), G))));
  const std::unique_ptr<float[]> d_gates_buffer(new float[static_cast<size_t>(written ? 2 * B : rows) * G]);
  float* const d_gates = d_gates_buffer.get();
  // dc, dh: gradient flowing into c_t and h_t from step t+1 (then from the final state).
  std::vector<float> dc(state, 0.0f), dh(state, 0.0f);
  // copy_n, not memcpy: with B == 0 the vectors' data() is null, which memcpy may not be passed.
  if (d_c_T) std::copy_n(d_c_T, state, dc.data());
  if (d_h_T) std::copy_n(d_h_T, state, dh.data());
  // bf16: dbias sums each step's gate gradients in the time loop, before they are rounded.
  if (bf16) std::fill_n(dbias, G, 0.0f);
  // bf16: the rounded kernel lives in dkernel until the weight gradients overwrite it: Wh in its
  // rows [In, In+H) during the time loop (each thread rounds the rows it packs), then Wx in rows
  // [0, In) for dx. So bf16 needs no scratch that fp32 does not have.
  float* const wh_rounded = dkernel + static_cast<long>(In) * G;

  const double loop_start = profile::now();
  double recurrent_seconds = 0.0;  // thread 0's, when profiling
  const std::string recurrent_kernel = bf16 ? blas::bf16_recurrent_kernel(B) : "";  // (as in the forward)
  const bool own_recurrent = !recurrent_kernel.empty();
  const int threads = time_loop_threads(B, H, own_recurrent);
  // bf16 on ptbfast's kernel: each thread's rows of Wh packed in dkernel's rows [In, In + H) where they fit.
  FreeFloats hidden_rows(wh_rounded, static_cast<long>(H) * G);
  std::vector<uint32_t*> recurrent_storage(threads, nullptr);
  for (int part = 0; own_recurrent && rows > 0 && part < threads; ++part)
    recurrent_storage[part] = hidden_rows.take(gemm::bf16::PackedB::words_for(G, units_of(part, threads, H).size()));
  if (rows > 0) run_time_loop(threads, T, [&](int part, int parts, TimeLoopTeam::Member& team) {
    const bool timing = part == 0 && profile::enabled();
    const UnitRange own = units_of(part, parts, H);
    // dh of this thread's units = d_gates_t [B, 4H] @ (rows k0..k1 of Wh)^T, packed once.
    const float* own_rows = w_hidden + static_cast<long>(own.k0) * G;
    if (bf16 && !own_recurrent) {  // (ptbfast's kernels round them as they pack them)
      float* own_rounded = wh_rounded + static_cast<long>(own.k0) * G;
      copy_or_round(own_rounded, own_rows, own.size() * G, true);  // (own rows are contiguous)
      own_rows = own_rounded;
    }
    std::unique_ptr<gemm::bf16::PackedB> recurrent_bf16;  // (bf16 on ptbfast's kernel, as in the forward)
    if (own_recurrent && own.size() > 0)
      recurrent_bf16.reset(parts == threads
                               ? new gemm::bf16::PackedB(own_rows, G, own.size(), 1, G, recurrent_storage[part])
                               : new gemm::bf16::PackedB(own_rows, G, own.size(), 1, G));
    const blas::PackedB recurrent_transposed(true, B, own.size(), G, own_rows, G, recurrent_bf16 ? 0 : T);
    for (int t = T - 1; t >= 0; --t) {
      const float* c_prev = t == 0 ? c0 : c_all + static_cast<long>(t - 1) * state;
      const float* c_t = c_all + static_cast<long>(t) * state;
      const float* g = gates + static_cast<long>(t) * B * G;
      const float* dh_out = d_h_all + static_cast<long>(t) * state;
      float* dg = d_gates + static_cast<long>(written ? t % 2 : t) * B * G;
      // (Split only on the one-thread path, as in the forward.)
#pragma omp parallel for schedule(static) if (parts == 1 && static_cast<long>(B) * H >= kParallelGateElements)
      for (int b = 0; b < B; ++b) {
        const float* gi = g + static_cast<long>(b) * G;
        const float* gj = gi + H;
        const float* gf = gj + H;
        const float* go = gf + H;
        float* dgi = dg + static_cast<long>(b) * G;
        float* dgj = dgi + H;
        float* dgf = dgj + H;
        float* dgo = dgf + H;
        const long off = static_cast<long>(b) * H;
#pragma omp simd
        for (int k = own.k0; k < own.k1; ++k) {
          const float i = gi[k], j = gj[k], f = gf[k], o = go[k];
          const float tanh_c = tanh_approx(c_t[off + k]);
          const float d_h = dh_out[off + k] + dh[off + k];
          const float d_c = dc[off + k] + d_h * o * (1.0f - tanh_c * tanh_c);
          dgi[k] = d_c * j * i * (1.0f - i);
          dgj[k] = d_c * i * (1.0f - j * j);
          dgf[k] = d_c * c_prev[off + k] * f * (1.0f - f);
          dgo[k] = d_h * tanh_c * o * (1.0f - o);
          dc[off + k] = d_c * f;
        }
      }
      if (bf16) {  // this thread's columns: into dbias unrounded (t descending, b ascending), then rounded
        for (int q = 0; q < 4; ++q) {
          float* db = dbias + q * H;
          for (int b = 0; b < B; ++b) {
            float* row = dg + static_cast<long>(b) * G + q * H;
#pragma omp simd
            for (int k = own.k0; k < own.k1; ++k) {
              db[k] += row[k];
              row[k] = round_bf16(row[k]);
            }
            if (written) written->store(static_cast<long>(t) * B + b, q * H + own.k0, row + own.k0, own.size());
          }
        }
      }
      if (!team.wait()) return;  // the products below read every unit's d_gates_t
      // Gradient into h_{t-1} of this thread's units; step t-1 reads only these columns of dh
      // (and writes d_gates_{t-1}), so no second barrier is needed.
      const double product_start = timing ? omp_get_wtime() : 0.0;
      if (recurrent_bf16)
        gemm::bf16::multiply_packed(recurrent_kernel, dg, B, G, 1, *recurrent_bf16, dh.data() + own.k0, H, false);
      else
        recurrent_transposed.gemm(dg, G, 0.0f, dh.data() + own.k0, H);
      if (timing) recurrent_seconds += omp_get_wtime() - product_start;
    }
  });
  if (rows > 0) time_loop_profile(loop_start, recurrent_seconds);
  std::copy_n(dc.data(), state, dc0);
  std::copy_n(dh.data(), state, dh0);
  if (T == 0) {  // no step: no gradient for the weights
    std::memset(dkernel, 0, sizeof(float) * (In + H) * G);
    std::memset(dbias, 0, sizeof(float) * G);
    return;
  }

  // Weight gradients over all steps at once: rows [0, In) see x, rows [In, In+H) see h_{t-1}.
  const double products_start = profile::now();
  float* dw_input = dkernel;
  float* dw_hidden = dkernel + static_cast<long>(In) * G;
  if (written) {
    // dx = d_gates @ Wx^T from the written A, Wx^T packed a block of columns at a time; then d_gates
    // packed as B for both weight gradients (into this thread's B scratch: no second buffer of its
    // size), h_{t-1} where the written A was.
    gemm::bf16::multiply_packed_a(*written, w_input, In, 1, G, dx, In, false);
    gemm::bf16::PackedB d_gates_packed(
        static_cast<int>(rows), G,
        gemm::bf16::thread_scratch(0, gemm::bf16::PackedB::words_for(static_cast<int>(rows), G)),
        gemm::bf16::PackedB::WrittenByCaller{});
    gemm::bf16::pack_transposed(*written, d_gates_packed);
    written.reset();
    input_rows.clear();
    hidden_rows.clear();
    float* h_prev = reinterpret_cast<float*>(input_rows.take(static_cast<size_t>(rows) * H));
    weight_gradients_on_packed(written_kernel, d_gates_packed, x, h0, h_all, h_prev, rows, state, In, H, dw_input,
                               dw_hidden);
    profile::since(profile::kLstmInputProducts, products_start);
    return;  // (dbias was summed in the time loop)
  }
  const blas::Gemm gemm = blas::gemm_for(bf16);
  // dx first: in bf16 it multiplies Wx rounded into dw_input's rows, which the next product overwrites
  // (unless the kernel rounds its operands as it packs them).
  const bool round_wx = bf16 && !blas::gemm_bf16_rounds_operands(static_cast<int>(rows), In, G);
  if (round_wx) round_to_bf16(dw_input, w_input, static_cast<int64_t>(In) * G);
  gemm(false, true, static_cast<int>(rows), In, G, 1.0f, d_gates, G, round_wx ? dw_input : w_input, G, 0.0f, dx, In);
  // bf16 on a kernel that takes a packed B: d_gates packed once for both weight gradients.
  const std::string packed = bf16 ? blas::bf16_packed_b_kernel(In, G, static_cast<int>(rows)) : "";
  if (!packed.empty() && packed == blas::bf16_packed_b_kernel(H, G, static_cast<int>(rows))) {
    // (into this thread's B scratch, which held Wx^T for dx: no second buffer of its size)
    const gemm::bf16::PackedB d_gates_packed(
        d_gates, static_cast<int>(rows), G, G, 1,
        gemm::bf16::thread_scratch(0, gemm::bf16::PackedB::words_for(static_cast<int>(rows), G)));
    std::vector<float> h_prev(static_cast<size_t>(rows) * H);
    weight_gradients_on_packed(packed, d_gates_packed, x, h0, h_all, h_prev.data(), rows, state, In, H, dw_input,
                               dw_hidden);
  } else {
    gemm(true, false, In, G, static_cast<int>(rows), 1.0f, x, In, d_gates, G, 0.0f, dw_input, G);
    std::vector<float> h0_rounded(bf16 ? static_cast<size_t>(state) : 0);  // (h_all is rounded by the forward)
    if (bf16) round_to_bf16(h0_rounded.data(), h0, state);
    gemm(true, false, H, G, B, 1.0f, bf16 ? h0_rounded.data() : h0, H, d_gates, G, 0.0f, dw_hidden, G);
    gemm(true, false, H, G, static_cast<int>(rows - B), 1.0f, h_all, H, d_gates + static_cast<long>(B) * G, G, 1.0f,
         dw_hidden, G);
  }
  profile::since(profile::kLstmInputProducts, products_start);

  if (bf16) return;  // (dbias was summed in the time loop)
  const double bias_start = profile::now();
  std::memset(dbias, 0, sizeof(float) * G);
  for (long r = 0; r < rows; ++r) {
    const float* src = d_gates + r * G;
#pragma omp simd
    for (int k = 0; k < G; ++k) dbias[k] += src[k];
  }
  profile::since(profile::kGateMath, bias_start);
}

#include "isa_end.h"
