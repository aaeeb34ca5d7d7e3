// FreeFloats: 64-byte aligned buffers (AMX's tile rows) carved out of floats that nobody reads for
// now, each in storage of its own where no room is left there. A gradient the kernel has not yet
// written holds its packed operands: the LSTM backward's dkernel, the output layer's dw.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "gemm/bf16/gemm_bf16.h"

namespace ptbfast {

class FreeFloats {
 public:
  FreeFloats(float* begin, long floats) : begin_(begin), floats_(begin ? floats : 0) { clear(); }
  uint32_t* take(size_t words) {
    const long skip = (16 - static_cast<long>(reinterpret_cast<uintptr_t>(next_) / 4 % 16)) % 16;
    if (static_cast<long>(words) + skip <= left_) {
      uint32_t* out = reinterpret_cast<uint32_t*>(next_ + skip);
      next_ += skip + static_cast<long>(words);
      left_ -= skip + static_cast<long>(words);
      return out;
    }
    owned_.emplace_back();
    return gemm::bf16::aligned_words(owned_.back(), words);
  }
  // Everything taken is free again (and what was allocated, freed).
  void clear() {
    next_ = begin_;
    left_ = floats_;
    owned_.clear();
  }

 private:
  float* begin_;
  long floats_;
  float* next_;
  long left_;
  std::vector<std::unique_ptr<uint32_t[]>> owned_;
};

}  // namespace ptbfast
