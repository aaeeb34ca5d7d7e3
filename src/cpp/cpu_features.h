// What this CPU can run, detected once from CPUID and XGETBV (cpu_features.cpp): the bf16
// instructions the bf16 GEMM chooses between (gemm/bf16/), the vendor, and the AMX permission.
#pragma once

#include <string>

namespace ptbfast {

// The process's AMX tile permission, asked of Linux once (at import): "granted", or why not.
const std::string& amx_permission();
// The CPU's bf16 instructions (CPUID, and for AVX512-BF16 the OS saving AVX-512 state), whether or
// not this build uses them.
bool cpu_has_amx_bf16();
bool cpu_has_avx512_bf16();
// The instruction-set levels of isa.h, with the OS saving the registers they use: "avx2" (AVX2,
// FMA, BMI1/2, F16C, LZCNT, MOVBE, POPCNT: x86-64-v3) and "avx512" (x86-64-v4: AVX-512 F/BW/DQ/VL/CD).
bool cpu_runs_avx2_level();
bool cpu_runs_avx512_level();
// CPUID's vendor string: "GenuineIntel", "AuthenticAMD", ... (MKL picks instruction-set code paths
// on Intel CPUs only, so its bf16 GEMM is used on Intel alone: blas_bf16.cpp).
std::string cpu_vendor();

}  // namespace ptbfast
