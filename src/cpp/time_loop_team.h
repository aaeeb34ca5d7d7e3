// TimeLoopTeam: the threads of an LSTM time loop (lstm.cpp's run_time_loop), each running its hidden
// units' part of every step and meeting the others at one barrier a step.
//
// An exception must not leave an OpenMP parallel region (the process ends: std::terminate), and a
// thread that stopped early would leave the others waiting at a barrier for ever. So a thread's
// exception (std::bad_alloc from packing its columns, or from a product's scratch) is caught and the
// first one kept; that thread then passes the barriers it has left; the others learn of it at their
// next barrier (wait() returns false), stop, and pass theirs too; and run_time_loop rethrows it after
// the region, so that the kernel raises (MemoryError in Python) instead of ending the process.
#pragma once

#include <omp.h>

#include <atomic>
#include <exception>
#include <mutex>
#include <new>

namespace ptbfast {

// Tests only (_core._fail_lstm_time_loop): the thread and barrier at which the next time loop throws
// std::bad_alloc, as time_loop_failure_code(thread, barrier); 0: none. One-shot.
inline std::atomic<long long> time_loop_failure_at{0};
inline long long time_loop_failure_code(int thread, int barrier) {
  return ((static_cast<long long>(thread) << 32) | barrier) + 1;
}

class TimeLoopTeam {
 public:
  // barriers: how many every thread passes (one a step); in_region: the team runs in a parallel region
  // (else one thread runs the loop on the caller's thread, where a barrier would bind to the caller's region).
  TimeLoopTeam(int barriers, bool in_region) : barriers_(barriers), in_region_(in_region) {}

  // One thread's place in the team: how many barriers it has passed.
  class Member {
   public:
    Member(TimeLoopTeam& team, int thread) : team_(team), thread_(thread) {}
    // The step's barrier. False once a thread of the team has failed: the caller stops its loop.
    bool wait() {
      throw_if_injected();
      pass();
      return !team_.failed_.load(std::memory_order_acquire);
    }
    // After the thread's loop (finished, stopped, or thrown out of): the barriers it has left.
    void pass_remaining() {
      while (passed_ < team_.barriers_) pass();
    }

   private:
    void pass() {
      if (team_.in_region_) {
#pragma omp barrier
      }
      ++passed_;
    }
    void throw_if_injected() const {
      long long at = time_loop_failure_at.load(std::memory_order_relaxed);
      if (at == time_loop_failure_code(thread_, passed_) && time_loop_failure_at.compare_exchange_strong(at, 0))
        throw std::bad_alloc();
    }

    TimeLoopTeam& team_;
    const int thread_;
    int passed_ = 0;
  };

  // Keeps a thread's exception (the first of the team's) and tells the others at their next barrier.
  void fail(std::exception_ptr error) {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (!first_error_) first_error_ = error;
    }
    failed_.store(true, std::memory_order_release);
  }
  // After the region: the first exception of the team, if any, on the calling thread.
  void rethrow_first_error() const {
    if (first_error_) std::rethrow_exception(first_error_);
  }

 private:
  const int barriers_;
  const bool in_region_;
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr first_error_;
};

}  // namespace ptbfast
