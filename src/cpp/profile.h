// Where a step's time goes inside the kernels (python -m ptbfast bench --profile): seconds per
// phase, summed over calls while profiling is on. Off (the default) it costs one relaxed atomic
// load per timed section. Sections are timed on the calling thread; inside the LSTM's threaded
// time loop, thread 0 times its own products and the rest of the loop's wall time counts as gate
// math (the threads meet at a barrier every step, so thread 0's split is the loop's).
#pragma once

#include <omp.h>

#include <atomic>
#include <cstdint>

namespace ptbfast::profile {

enum Phase : int {
  kLstmInputProducts,  // x @ Wx forward; dW, dx backward: the GEMMs over all T*B rows
  kRecurrentProducts,  // h_{t-1} @ Wh and its backward, inside the time loop
  kGateMath,           // the gate nonlinearities and their gradients (the rest of the time loop)
  kOutputProducts,     // logits = h @ w and the dw, dh GEMMs
  kSoftmaxPass,        // bias, max, exp, sum, loss and d_logits over each row; db
  kBf16Packing,        // of the products above: rounding and packing their operands for the bf16 kernels
                       // (outside parallel regions: the packing the LSTM's threads do is not counted)
  kPhases
};

// The phases' names in ptbfast.ops.profile_read() and the profile's rows.
inline constexpr const char* kPhaseNames[kPhases] = {"lstm_input_products", "recurrent_products", "gate_math",
                                                     "output_products", "softmax_pass", "bf16_packing"};

inline std::atomic<bool>& enabled() {
  static std::atomic<bool> on{false};
  return on;
}

inline std::atomic<int64_t>* nanoseconds() {
  static std::atomic<int64_t> ns[kPhases] = {};
  return ns;
}

// How many sections each phase timed: a phase that ran is told apart from one that did not by this
// count, not by its time, which can be 0 (a short section on a coarse clock, truncated to whole ns).
inline std::atomic<int64_t>* sections() {
  static std::atomic<int64_t> count[kPhases] = {};
  return count;
}

inline void add(Phase phase, double seconds) {
  nanoseconds()[phase].fetch_add(static_cast<int64_t>(seconds * 1e9), std::memory_order_relaxed);
  sections()[phase].fetch_add(1, std::memory_order_relaxed);
}

// 0 while profiling is off: a section started then is not timed even if profiling is switched on
// before it ends (since() would otherwise add the whole clock, seconds of uptime, to its phase).
inline double now() { return enabled().load(std::memory_order_relaxed) ? omp_get_wtime() : 0.0; }

// now() where no parallel region is open, else 0 (with since_outside: time only the calling thread's
// top-level work, not the same work in each thread of a region).
inline double now_outside() { return omp_in_parallel() ? 0.0 : now(); }
inline void since_outside(Phase phase, double start) {
  if (start > 0 && !omp_in_parallel() && enabled().load(std::memory_order_relaxed)) add(phase, omp_get_wtime() - start);
}

// Adds the time since `start` (from now()) to `phase` when profiling is on.
inline void since(Phase phase, double start) {
  if (start > 0 && enabled().load(std::memory_order_relaxed)) add(phase, omp_get_wtime() - start);
}

}  // namespace ptbfast::profile
