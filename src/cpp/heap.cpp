// heap.h. glibc serves a block above its mmap threshold with a fresh mapping and unmaps it when
// freed, and trims the heap's free top above its trim threshold. The mmap threshold starts at 128 KB
// and follows the largest mapped block freed so far, up to 32 MB: large's step (dw 60 MB, each LSTM
// layer's dkernel 72 MB) was mapped afresh every step, as was, after other arrays had moved the
// thresholds, much of small's and medium's. Each 4 KB of it was a page fault (zeroed by the kernel):
// large bf16 10,700 faults a step, 132 ms of system time in a 380 ms step; fp32 36,600, 248 of 994 ms;
// small bf16 after an fp32 model in the same process 6,700, 24 ms a step instead of 14 (Intel Xeon
// family 6 model 167, a Firecracker VM).
#include "heap.h"

#include <climits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ptbfast::heap {
namespace {
std::string current;
}

bool keep_freed_blocks(size_t bytes) {
#if defined(__GLIBC__)
  const int threshold = static_cast<int>(bytes > static_cast<size_t>(INT_MAX) ? INT_MAX : bytes);
  // (glibc before 2.35 refuses an mmap threshold above 32 MB on 64-bit: then 32 MB.)
  const int mapped_above = mallopt(M_MMAP_THRESHOLD, threshold) ? threshold : 32 << 20;
  if (mapped_above != threshold) mallopt(M_MMAP_THRESHOLD, mapped_above);
  mallopt(M_TRIM_THRESHOLD, threshold);
  current = "glibc: blocks up to " + std::to_string(mapped_above >> 20) + " MiB from the heap, kept when freed (up to " +
            std::to_string(threshold >> 20) + " MiB of free heap)";
  return true;
#else
  (void)bytes;
  return false;
#endif
}

std::string policy() { return current; }

}  // namespace ptbfast::heap
