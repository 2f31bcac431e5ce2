// CUDA graphs for the decode step: a one-token layer issues a dozen tiny kernels whose launch cost
// (a few microseconds each, on the host) is most of their time, so each distinct piece of work is
// captured once and replayed with one launch. Pointers and host-side arguments are baked into a graph,
// so the key must name every host value the issued work depends on; values in device memory (positions,
// lengths, the hidden state) are read at replay. MIXTILE_GPU_GRAPHS=0 turns graphs off (A/B timing).
#pragma once
#include <cstdint>
#include <functional>
#include <map>

#include "gpu/context.h"

namespace mixtile::gpu {

class GraphCache {
 public:
  explicit GraphCache(const CudaApi* api) : api_(api) {}
  ~GraphCache();
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;
  // Replays the graph stored under `key`, capturing `issue` (which queues work on g.stream) first if absent.
  void run(GpuContext& g, uint64_t key, const std::function<void()>& issue);
  size_t size() const { return graphs_.size(); }

 private:
  void clear();
  const CudaApi* api_;
  std::map<uint64_t, mxc_graph*> graphs_;
  uint64_t workspace_generation_ = 0;  // of the decode workspace the graphs baked in
};

// Whether decode steps replay graphs (default yes; MIXTILE_GPU_GRAPHS=0 turns it off).
bool graphs_enabled();

}  // namespace mixtile::gpu
