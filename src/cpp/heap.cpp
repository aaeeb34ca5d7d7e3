// heap.h. glibc serves a block at or above its mmap threshold with a fresh mapping and unmaps it when
// freed, and trims the heap's free top above its trim threshold. The mmap threshold starts at 128 KB
// and follows the largest mapped block freed so far, up to 32 MB: large's step (dw 60 MB, each LSTM
// layer's dkernel 72 MB) was mapped afresh every step, as was, after other arrays had moved the
// thresholds, much of small's and medium's. Each 4 KB of it was a page fault (zeroed by the kernel):
// large bf16 10,700 faults a step, 132 ms of system time in a 380 ms step; fp32 36,600, 248 of 994 ms;
// small bf16 after an fp32 model in the same process 6,700, 24 ms a step instead of 14 (Intel Xeon
// family 6 model 167, a Firecracker VM). Limits: a thread other than the main one allocates from an
// arena of heaps of at most 64 MiB, so its larger blocks are still mapped afresh; and the heap's free
// space below its top is never returned to the kernel (large fp32's peak RSS 614 -> 674 MB).
#include "heap.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <mutex>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__GLIBC__)
#include <dlfcn.h>
#include <malloc.h>
#endif

namespace ptbfast::heap {
namespace {
std::mutex mutex;
std::string current;  // (under mutex)

#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
// Whether malloc is glibc's own: an allocator loaded before it (LD_PRELOAD of jemalloc or tcmalloc)
// ignores glibc's thresholds.
bool malloc_is_glibcs() {
  void* libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
  if (libc == nullptr) return false;
  const bool same = dlsym(libc, "malloc") == dlsym(RTLD_DEFAULT, "malloc");
  dlclose(libc);
  return same;
}

std::string mebibytes(size_t bytes) {
  return bytes >= (1u << 20) ? std::to_string(bytes >> 20) + " MiB" : std::to_string(bytes) + " bytes";
}
#endif
}  // namespace

size_t keep_freed_blocks(size_t bytes) {
#if defined(__GLIBC__) && defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
  if (!malloc_is_glibcs()) return 0;
  const std::lock_guard<std::mutex> lock(mutex);
  const int wanted = static_cast<int>(std::min<size_t>(bytes, INT_MAX));
  int mapped_at = wanted;
  if (mallopt(M_MMAP_THRESHOLD, mapped_at) == 0) {  // glibc before 2.35: at most 32 MiB on 64-bit
    mapped_at = std::min(wanted, 32 << 20);
    if (mallopt(M_MMAP_THRESHOLD, mapped_at) == 0) return 0;
  }
  const int trimmed_above = static_cast<int>(std::min<long long>(2LL * mapped_at, INT_MAX));  // (glibc's own ratio)
  mallopt(M_TRIM_THRESHOLD, trimmed_above);
  current = "glibc: blocks below " + mebibytes(static_cast<size_t>(mapped_at)) +
            " from the heap and kept there when freed (its free top trimmed above " +
            mebibytes(static_cast<size_t>(trimmed_above)) + ")";
  return static_cast<size_t>(mapped_at);
#else
  (void)bytes;
  return 0;
#endif
}

void advise_huge_pages(void* p, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t{1} << 21;  // (x86-64's and arm64's with 4 KB pages)
  const uintptr_t start = (reinterpret_cast<uintptr_t>(p) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHugePage - 1);
  if (p != nullptr && end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);  // (a hint)
#else
  (void)p;
  (void)bytes;
#endif
}

std::string policy() {
  const std::lock_guard<std::mutex> lock(mutex);
  return current;
}

}  // namespace ptbfast::heap
