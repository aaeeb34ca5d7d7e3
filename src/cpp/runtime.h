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
// keep their own count) and the BLAS libraries (process-wide). Throws std::invalid_argument if n < 1.
void set_num_threads(int n);
int num_threads();

struct BuildFacts {
  std::string version, compiler, isa_flags;
  std::vector<std::string> isa;  // the instruction sets the whole build was compiled for
  int openmp_version;
};
BuildFacts build_facts();

}  // namespace ptbfast::runtime
