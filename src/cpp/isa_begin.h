// Opens a kernel file's code for the instruction-set level it is being compiled for (isa.h).
//
// CMake compiles each kernel file once per level with PTBFAST_ISA_NS (the namespace: isa_baseline,
// isa_avx2, isa_avx512, or isa_native in a -march=native build) and PTBFAST_ISA_AVX2 /
// PTBFAST_ISA_AVX512 defined. The level's instructions are switched on here, by a target pragma
// after every include, not by compiler flags for the file: functions defined in headers (the
// standard library's templates, blas.h, vecmath.h) keep the build's baseline code, so a copy the
// linker keeps can never carry AVX-512 into another level's path, while they still inline into
// the code below (a subset of its instruction set, and the same arch and tuning, which GCC
// requires for inlining).
//
// Usage, after the includes:   #include "isa_begin.h"  ...the file's code...  #include "isa_end.h"
#ifndef PTBFAST_ISA_NS
#error "kernel files are compiled once per instruction-set level: CMake defines PTBFAST_ISA_NS"
#endif

#if defined(__x86_64__) && (defined(PTBFAST_ISA_AVX2) || defined(PTBFAST_ISA_AVX512))
#define PTBFAST_ISA_PRAGMA 1
#if defined(__clang__)
#if defined(PTBFAST_ISA_AVX512)
#pragma clang attribute push(__attribute__((target("avx2,fma,bmi,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512dq,avx512vl,avx512cd"))), apply_to = function)
#else
#pragma clang attribute push(__attribute__((target("avx2,fma,bmi,bmi2,f16c,lzcnt,movbe,popcnt"))), apply_to = function)
#endif
#else
#pragma GCC push_options
#if defined(PTBFAST_ISA_AVX512)
#pragma GCC target("avx2,fma,bmi,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512dq,avx512vl,avx512cd")
#else
#pragma GCC target("avx2,fma,bmi,bmi2,f16c,lzcnt,movbe,popcnt")
#endif
#endif
#endif

namespace ptbfast {
namespace PTBFAST_ISA_NS {
#include "kernel_declarations.inc"  // this level's kernels: calls between them stay in the level
