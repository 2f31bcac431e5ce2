// CUDA graphs for decode steps: a layer at a few tokens issues a dozen tiny kernels whose launch cost
// (a few microseconds each, on the host) is most of their time, so each distinct piece of work is
// captured once and replayed with one launch. Pointers and host-side arguments are baked into a graph,
// so the key must name every host value the issued work depends on; values in device memory (positions,
// lengths, the hidden state) are read at replay. MIXTILE_GPU_GRAPHS=0 turns graphs off (A/B timing).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "gpu/context.h"

namespace mixtile::gpu {

class GraphCache {
 public:
  explicit GraphCache(const CudaApi* api) : api_(api) {}
  ~GraphCache();
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;
  // Replays the graph stored under `key`, capturing `issue` (which queues work on g.stream) first if absent;
  // if the capture fails, `issue` runs directly (now and for this key later).
  void run(GpuContext& g, const std::string& key, const std::function<void()>& issue);
  size_t size() const { return graphs_.size(); }

 private:
  void clear();
  const CudaApi* api_;
  std::map<std::string, mxc_graph*> graphs_;
  std::set<std::string> uncapturable_;  // keys whose capture failed: issued directly
  uint64_t workspace_generation_ = 0;  // of the decode workspace the graphs baked in
};

// Whether decode steps replay graphs (default yes; MIXTILE_GPU_GRAPHS=0 turns it off).
bool graphs_enabled();

// A decode step: every sequence has one token in the ubatch, and few enough tokens that a graph per
// combination of slots pays off (serving runs a handful of slots).
constexpr int64_t GRAPH_MAX_TOKENS = 16;
inline bool decode_step(const BatchPlan& p) { return !p.prefill && p.n <= GRAPH_MAX_TOKENS; }

}  // namespace mixtile::gpu
