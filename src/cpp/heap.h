// How large buffers come from the kernel. Whether freed memory goes back to it at once: a training
// step allocates and frees the same large arrays every step, and taking them fresh from the kernel
// each time costs a page fault per 4 KB (heap.cpp). And the pages under a streamed buffer.
#pragma once

#include <cstddef>
#include <string>

namespace ptbfast::heap {

// Blocks below `bytes` come from glibc's heap and stay there when freed, for the next allocation to
// reuse (its mmap threshold; its trim threshold twice that). Returns the mmap threshold now in effect
// (glibc before 2.35 caps it at 32 MiB), or 0 where nothing was changed: a C library other than
// glibc, or another allocator (jemalloc, tcmalloc) interposed on malloc. Like mallopt, to be called
// before other threads allocate (ptbfast calls it at import).
size_t keep_freed_blocks(size_t bytes);

// Asks Linux to back the whole 2 MiB pages inside [p, p + bytes) with transparent huge pages where
// its policy allows them for advised memory ("madvise", a common default, as "always"). For buffers
// that a product streams every step: with 4 KB pages each MB of them is 256 TLB entries, and in a
// virtual machine each miss walks two page tables. Memory already touched keeps its pages until the
// kernel collapses them, so advise a buffer before writing it. A no-op where it cannot apply.
void advise_huge_pages(void* p, size_t bytes);

// What keep_freed_blocks set, for `ptbfast info`: "" until it has set something.
std::string policy();

}  // namespace ptbfast::heap
