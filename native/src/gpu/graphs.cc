// Graph cache of the decode step; see graphs.h.
#include "gpu/graphs.h"

#include <cstdlib>
#include <stdexcept>

namespace mixtile::gpu {

GraphCache::~GraphCache() { clear(); }

void GraphCache::clear() {
  for (auto& [key, graph] : graphs_) api_->mxc_graph_destroy(graph);
  graphs_.clear();
}

void GraphCache::run(GpuContext& g, uint64_t key, const std::function<void()>& issue) {
  if (g.decode_ws_generation != workspace_generation_) {
    clear();  // a graph may hold the old workspace
    workspace_generation_ = g.decode_ws_generation;
  }
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    g.ok(api_->mxc_graph_begin(g.stream), "mxc_graph_begin");
    try {
      issue();
    } catch (...) {
      mxc_graph* dropped = nullptr;  // end the capture so the stream works again, keep the first error
      if (api_->mxc_graph_end(g.stream, &dropped) == MXC_OK) api_->mxc_graph_destroy(dropped);
      throw;
    }
    mxc_graph* graph = nullptr;
    g.ok(api_->mxc_graph_end(g.stream, &graph), "mxc_graph_end");
    it = graphs_.emplace(key, graph).first;
    g.counters.graphs_captured++;
  }
  g.ok(api_->mxc_graph_launch(it->second, g.stream), "mxc_graph_launch");
  g.counters.graph_launches++;
}

bool graphs_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("MIXTILE_GPU_GRAPHS");
    return !(e && *e == '0');
  }();
  return on;
}

}  // namespace mixtile::gpu
