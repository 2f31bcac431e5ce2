// Grow-only scratch memory for the operator calls of one thread (activations between the steps of an attention or
// FFN block). A std::vector per call zero-fills and page-faults its tens of MB on one thread before the pool starts:
// ~4 ms of a 512-token layer at 16 threads, 205 ms of a 48-layer step on the AMX machine (bench -v's "rest of
// model.forward"). Reused, a call pays that only when it outgrows the last one. New memory is filled with NaN so
// that a step reading what no earlier step wrote shows up in the outputs instead of reading zeros.
#pragma once
#include <algorithm>
#include <cstddef>
#include <limits>
#include <memory>

namespace mixtile {

class CallScratch {
 public:
  float* floats(size_t n) {
    if (n > cap_) {
      buf_.reset(new float[n]);
      cap_ = n;
      std::fill(buf_.get(), buf_.get() + n, std::numeric_limits<float>::quiet_NaN());
    }
    return buf_.get();
  }

 private:
  std::unique_ptr<float[]> buf_;
  size_t cap_ = 0;
};

}  // namespace mixtile
