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

void GraphCache::run(GpuContext& g, const std::string& key, const std::function<void()>& issue) {
  if (g.decode_ws_generation != workspace_generation_) {
    clear();  // a graph may hold the old workspace
    workspace_generation_ = g.decode_ws_generation;
  }
  if (uncapturable_.count(key)) {
    issue();
    return;
  }
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    g.ok(api_->mxc_graph_begin(g.stream), "mxc_graph_begin");
    mxc_graph* graph = nullptr;
    bool issued = true;
    try {
      issue();
    } catch (...) {
      issued = false;
    }
    // Always end the capture so the stream works again. Work that cannot be captured (a library call that
    // synchronises, say) is then issued directly, for this key from now on; a real error repeats there.
    if (api_->mxc_graph_end(g.stream, &graph) != MXC_OK || !issued) {
      if (graph) api_->mxc_graph_destroy(graph);
      uncapturable_.insert(key);
      g.counters.graph_capture_failures++;
      issue();
      return;
    }
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
