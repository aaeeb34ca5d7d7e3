// The CPU's vendor and bf16 features (CPUID + XGETBV, read once), and the AMX permission request.
//
// Linux keeps a process's AMX tile registers out of its saved state
// until the process asks for them (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), Linux
// 5.16+); a tile instruction before that kills the process with SIGILL. oneDNN asks by itself,
// MKL may not and then quietly runs slower kernels (issue 11's measurements on a Xeon with AMX), so
// ptbfast asks once, when the extension is imported, and `ptbfast info` reports the answer.
#include "cpu_features.h"

#include <cerrno>
#include <cstring>
#include <string>

#if defined(__linux__) && defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace ptbfast {

#if defined(__linux__) && defined(__x86_64__)
static constexpr int kArchGetXcompPerm = 0x1022;  // <asm/prctl.h>; spelled here for older headers
static constexpr int kArchReqXcompPerm = 0x1023;
static constexpr int kXfeatureXtiledata = 18;

// CPUID leaf 7: subleaf 0 EDX[22] AMX-BF16, EDX[24] AMX-TILE; subleaf 1 EAX[5] AVX512-BF16.
static bool cpuid_bit(unsigned subleaf, int reg, int bit) {
  unsigned r[4] = {0, 0, 0, 0};  // eax, ebx, ecx, edx
  if (!__get_cpuid_count(7, subleaf, &r[0], &r[1], &r[2], &r[3])) return false;
  return (r[reg] >> bit) & 1u;
}
// The OS saves a register set only if it enabled it in XCR0 (a VM or kernel may not, and then the
// instructions CPUID reports are unusable): bits 1-2 SSE and AVX state, 5-7 AVX-512's (opmask, ZMM
// upper halves, ZMM16-31), 17-18 AMX's (XTILECFG, XTILEDATA; Linux sets them and traps first use
// until the permission request below).
static constexpr unsigned kXcr0Avx = 0x6u, kXcr0Avx512 = 0xE6u, kXcr0Amx = 0x60000u;
static bool os_saves_state(unsigned xcr0_bits) {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !((ecx >> 27) & 1u)) return false;  // OSXSAVE
  unsigned xcr0_low = 0, xcr0_high = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
  return (xcr0_low & xcr0_bits) == xcr0_bits;
}
static bool cpu_has_amx_tile() { return cpuid_bit(0, 3, 24) && os_saves_state(kXcr0Amx); }
bool cpu_has_amx_bf16() { return cpuid_bit(0, 3, 22) && cpu_has_amx_tile(); }
bool cpu_has_avx512_bf16() { return cpuid_bit(1, 0, 5) && os_saves_state(kXcr0Avx512); }

bool cpu_runs_avx2_level() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  const bool leaf1 = ((ecx >> 12) & 1u) && ((ecx >> 22) & 1u) && ((ecx >> 23) & 1u) && ((ecx >> 29) & 1u);  // FMA MOVBE POPCNT F16C
  unsigned e80[4] = {0, 0, 0, 0};
  const bool lzcnt = __get_cpuid(0x80000001u, &e80[0], &e80[1], &e80[2], &e80[3]) && ((e80[2] >> 5) & 1u);
  // Leaf 7, EBX: BMI1 (3), AVX2 (5), BMI2 (8).
  return leaf1 && lzcnt && cpuid_bit(0, 1, 3) && cpuid_bit(0, 1, 5) && cpuid_bit(0, 1, 8) && os_saves_state(kXcr0Avx);
}
bool cpu_runs_avx512_level() {
  // Leaf 7, EBX: AVX512F (16), DQ (17), CD (28), BW (30), VL (31).
  return cpu_runs_avx2_level() && cpuid_bit(0, 1, 16) && cpuid_bit(0, 1, 17) && cpuid_bit(0, 1, 28) &&
         cpuid_bit(0, 1, 30) && cpuid_bit(0, 1, 31) && os_saves_state(kXcr0Avx512);
}

// CPUID leaf 0: the vendor string in EBX, EDX, ECX ("GenuineIntel", "AuthenticAMD", ...).
std::string cpu_vendor() {
  unsigned eax = 0, r[3] = {0, 0, 0};
  if (!__get_cpuid(0, &eax, &r[0], &r[2], &r[1])) return "unknown";  // (EBX, ECX, EDX) -> r[0], r[2], r[1]
  char name[13] = {};
  std::memcpy(name, r, 12);
  return name;
}

static std::string request() {
  if (!cpu_has_amx_tile()) return "not requested: the CPU has no AMX tiles";
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0)
    return std::string("refused by the kernel: ") + std::strerror(errno);
  unsigned long features = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &features) != 0 || !((features >> kXfeatureXtiledata) & 1ul))
    return "requested, but the kernel does not report it granted";
  return "granted";
}
#else
static std::string request() { return "not requested: AMX exists only on x86_64 Linux"; }
bool cpu_has_amx_bf16() { return false; }
bool cpu_has_avx512_bf16() { return false; }
bool cpu_runs_avx2_level() { return false; }
bool cpu_runs_avx512_level() { return false; }
std::string cpu_vendor() { return "not x86_64 Linux"; }
#endif

const std::string& amx_permission() {
  static const std::string answer = request();  // once per process (thread-safe static)
  return answer;
}

}  // namespace ptbfast
