// runtime.h: set-up, threads and the build's facts.
#include "runtime.h"

#include <omp.h>

#include <stdexcept>

#include "blas.h"
#include "cpu_features.h"

#ifndef PTBFAST_ISA_FLAGS
#define PTBFAST_ISA_FLAGS ""
#endif
#ifndef PTBFAST_VERSION
#define PTBFAST_VERSION "unknown"
#endif

namespace ptbfast::runtime {

void init() {
  amx_permission();  // first: before MKL can look at the CPU or run a tile instruction
  blas::init();
}

void set_num_threads(int n) {
  if (n < 1 || n > kMaxThreads)
    throw std::invalid_argument("number of threads must be between 1 and " + std::to_string(kMaxThreads) +
                                ", got " + std::to_string(n));
  omp_set_num_threads(n);
  blas::set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

int thread_limit() {
  const int limit = omp_get_thread_limit();  // (INT_MAX where nothing sets one)
  return limit >= kMaxThreads ? 0 : limit;
}

bool dynamic_threads() { return omp_get_dynamic() != 0; }

BuildFacts build_facts() {
  BuildFacts facts;
  facts.version = PTBFAST_VERSION;
#if defined(__clang__)
  facts.compiler = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  facts.compiler = std::string("gcc ") + __VERSION__;
#else
  facts.compiler = "unknown";
#endif
  facts.isa_flags = PTBFAST_ISA_FLAGS;
  static const char* const kCompiledFor[] = {  // (the compiler's macros, highest level first)
#ifdef __AVX512F__
      "avx512f",
#endif
#ifdef __AVX2__
      "avx2",
#endif
#ifdef __FMA__
      "fma",
#endif
#ifdef __SSE4_1__
      "sse4.1",
#endif
#ifdef __SSE2__
      "sse2",
#endif
#ifdef __ARM_NEON
      "neon",
#endif
      nullptr};
  for (const char* const* name = kCompiledFor; *name; ++name) facts.isa.push_back(*name);
  facts.openmp_version = _OPENMP;
  return facts;
}

}  // namespace ptbfast::runtime
