// Whether freed memory goes back to the kernel at once: a training step allocates and frees the
// same large arrays every step, and taking them fresh from the kernel each time costs a page fault
// per 4 KB (heap.cpp).
#pragma once

#include <cstddef>
#include <string>

namespace ptbfast::heap {

// Blocks up to `bytes` come from the C library's heap and stay there when freed, for the next
// allocation to reuse. Returns false (and changes nothing) where the C library is not glibc.
bool keep_freed_blocks(size_t bytes);

// What keep_freed_blocks set, for `ptbfast info`: "" until it is called.
std::string policy();

}  // namespace ptbfast::heap
