// Keeps PCIe busy across layers in prefill: while layer L computes (its attention, router, experts),
// the copy stream fills a VRAM bank with layer L+1's raw expert bytes, so layer L+1's GPU experts
// start from VRAM instead of waiting for the link. Two banks (double buffer): the layer computing reads
// one while the next fills the other. The experts copied are a prefix [0, k) of the layer (three large
// copies, one per stacked tensor); the cost model (expert-cost.h, `resident`) then gives the GPU those
// first. Bytes of experts that end up on the CPU or without tokens are wasted link time, never wrong
// results.
//
// Order: a fill is queued on GpuExperts' copy stream after the current layer's ring copies, and first
// waits (on that stream) for the event the last forward reading the bank recorded after its last
// dequant; a forward reading the bank waits for the fill's per-chunk events on the compute stream.
// Memory: both banks together take at most `budget_bytes`; a bank holds as many experts of a layer as
// fit (capacity); when the device has not that much free the prefetch stays off (the ring alone).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "gpu/gpu-experts.h"

namespace mixtile {

class ExpertsPrefetch {
 public:
  // Experts per ready event: the next layer's compute may start on the first chunks while the rest copies.
  static constexpr int64_t CHUNK = 16;

  ExpertsPrefetch(GpuExperts& gpu, size_t budget_bytes);
  ~ExpertsPrefetch();
  ExpertsPrefetch(const ExpertsPrefetch&) = delete;
  ExpertsPrefetch& operator=(const ExpertsPrefetch&) = delete;

  // The prefetched (or in flight) experts of w, or nullptr.
  const ResidentExperts* resident(const GpuExpertWeights& w) const;
  // Queues experts [0, min(count, capacity)) of w into the bank that does not hold `in_use` (the layer
  // computing now; may be null) unless that bank holds them already. Returns the experts newly queued
  // (0: off, unpinned weights, no room, or already there). Call from the thread that drives `gpu`.
  int64_t start(const GpuExpertWeights& w, int64_t count, const GpuExpertWeights* in_use);
  // Experts of w one bank can hold under the budget (before any allocation).
  int64_t capacity(const GpuExpertWeights& w) const;
  size_t device_bytes() const { return banks_[0].bytes + banks_[1].bytes; }
  // Why nothing is prefetched ("" while it works).
  const std::string& off_reason() const { return off_reason_; }

  // Bytes of a bank holding `count` experts of w (each tensor's slices 256-aligned).
  static size_t bank_bytes(const GpuExpertWeights& w, int64_t count);

 private:
  struct Bank {
    void* p = nullptr;
    size_t bytes = 0;
    ResidentExperts r;
  };
  bool grow(Bank& b, size_t bytes);  // false: no room (the prefetch turns off)

  GpuExperts& gpu_;
  size_t budget_;
  Bank banks_[2];
  std::string off_reason_;
};

}  // namespace mixtile
