// The AMX permission request. Linux keeps a process's AMX tile registers out of its saved state
// until the process asks for them (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), Linux
// 5.16+); a tile instruction before that kills the process with SIGILL. oneDNN asks by itself,
// MKL may not and then quietly runs slower kernels (issue 11's measurements on a Xeon with AMX), so
// ptbfast asks once, when the extension is imported, and `ptbfast info` reports the answer.
#include "kernels.h"

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

static bool cpu_has_amx_tile() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  return (edx >> 24) & 1u;  // CPUID.(EAX=7,ECX=0):EDX[24] = AMX-TILE
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
#endif

const std::string& amx_permission() {
  static const std::string answer = request();  // once per process (thread-safe static)
  return answer;
}

}  // namespace ptbfast
