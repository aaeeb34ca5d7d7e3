// The instruction-set level the kernels run at (isa.h): the levels this build compiled, which of
// them the CPU runs, and the active one.
#include "isa.h"

#include <atomic>
#include <stdexcept>

#include "cpu_features.h"

namespace ptbfast {

#if defined(PTBFAST_HAVE_ISA_NATIVE)
namespace isa_native { extern const KernelTable kernel_table; }
#endif
#if defined(PTBFAST_HAVE_ISA_BASELINE)
namespace isa_baseline { extern const KernelTable kernel_table; }
#endif
#if defined(PTBFAST_HAVE_ISA_AVX2)
namespace isa_avx2 { extern const KernelTable kernel_table; }
#endif
#if defined(PTBFAST_HAVE_ISA_AVX512)
namespace isa_avx512 { extern const KernelTable kernel_table; }
#endif

namespace {

struct Level {
  const char* name;
  const KernelTable* table;
  bool (*runs_here)();
};

bool anywhere() { return true; }

// Lowest first.
const std::vector<Level>& levels() {
  static const std::vector<Level> compiled = {
#if defined(PTBFAST_HAVE_ISA_NATIVE)
      {"native", &isa_native::kernel_table, &anywhere},  // (built for this machine's CPU)
#endif
#if defined(PTBFAST_HAVE_ISA_BASELINE)
      {"baseline", &isa_baseline::kernel_table, &anywhere},
#endif
#if defined(PTBFAST_HAVE_ISA_AVX2)
      {"avx2", &isa_avx2::kernel_table, &cpu_runs_avx2_level},
#endif
#if defined(PTBFAST_HAVE_ISA_AVX512)
      {"avx512", &isa_avx512::kernel_table, &cpu_runs_avx512_level},
#endif
  };
  return compiled;
}

const Level* highest_supported() {
  const Level* best = &levels().front();
  for (const Level& level : levels())
    if (level.runs_here()) best = &level;
  return best;
}

std::atomic<const Level*>& active() {
  static std::atomic<const Level*> level{highest_supported()};
  return level;
}

}  // namespace

const KernelTable& kernels() { return *active().load(std::memory_order_relaxed)->table; }

std::string kernels_isa() { return active().load()->name; }

std::vector<std::string> compiled_isas() {
  std::vector<std::string> out;
  for (const Level& level : levels()) out.push_back(level.name);
  return out;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (const Level& level : levels())
    if (level.runs_here()) out.push_back(level.name);
  return out;
}

void set_kernels_isa(const std::string& name) {
  std::string supported;
  for (const std::string& s : supported_isas()) supported += (supported.empty() ? "" : ", ") + s;
  for (const Level& level : levels()) {
    if (name != level.name) continue;
    if (!level.runs_here())
      throw std::invalid_argument("kernel instruction set \"" + name + "\" is beyond this CPU, which runs: " +
                                  supported);
    active().store(&level);
    return;
  }
  std::string compiled;
  for (const std::string& s : compiled_isas()) compiled += (compiled.empty() ? "" : ", ") + s;
  throw std::invalid_argument("kernel instruction set must be one of this build's " + compiled + " (this CPU runs " +
                              supported + "), got \"" + name + "\"");
}

}  // namespace ptbfast
