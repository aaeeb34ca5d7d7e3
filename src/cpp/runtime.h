// What the extension sets up once, the thread policy, and the facts `ptbfast info` reports about
// the build (the bindings only convert them to Python).
#pragma once

#include <string>
#include <vector>

namespace ptbfast::runtime {

// Once, at import, in this order: the AMX tile permission is asked of Linux before MKL can look at
// the CPU or a tile instruction run (cpu_features.cpp), then the BLAS libraries are set up.
void init();

// Threads for ptbfast's kernels: OpenMP regions started from the calling thread (other threads
// keep their own count) and the BLAS libraries (process-wide). Throws std::invalid_argument outside
// [1, kMaxThreads].
void set_num_threads(int n);
// More threads than any machine has cores, and far fewer than the counts at which libgomp ends the
// process (it cannot make 50,000 threads here, exits with "Thread creation failed", and crashes at
// 65,535 or more): an error is better than either.
inline constexpr int kMaxThreads = 4096;
int num_threads();
// What may give a region fewer threads than num_threads(): OMP_THREAD_LIMIT's cap (0: none, or none
// below kMaxThreads), and OMP_DYNAMIC (the runtime may shrink any team, by load).
int thread_limit();
bool dynamic_threads();

struct BuildFacts {
  std::string version, compiler, isa_flags;
  std::vector<std::string> isa;  // the instruction sets the whole build was compiled for
  int openmp_version;
};
BuildFacts build_facts();

}  // namespace ptbfast::runtime
