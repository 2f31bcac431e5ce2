// Where a one-token layer's GPU round trip goes (issue 9): with MIXTILE_GPU_PROFILE=1, timing events around
// each part of a decode step's MoE layer on the stream, read back at the experts' wait (when all are done):
//   issue gap   the GPU idle between the previous layer's residual add and this layer's attention (the host
//               returning to TS, the N-API calls, issuing the attention graph)
//   attention   the attention graph (norm, q/k/v, RoPE, KV store, attention, o_proj + residual)
//   route       post-attention norm + router + top-k (and a join of held-back experts before it)
//   d2h         the routing's copy to pinned memory
//   h2d + add   the experts' sum back up and the residual add (glue wait: from the host's release of the sum to
//               the end of the queued add, host-measured; that glue's add is then queued after the routing's wait)
// Sums in GpuCounters (profile_*), in gpuStats. Off by default: each mark is one event record (~2 us).
#pragma once
#include "gpu/context.h"

namespace mixtile::gpu {

enum class ProfileMark { attention_begin, attention_end, route_end, d2h_end, upload_begin, add_end, count };

bool gpu_profile_enabled();
// Records the mark's event on the stream (decode steps only, when enabled).
void profile_mark(GpuContext& g, ProfileMark m);
// After the wait for the routing: adds this layer's intervals to the counters.
void profile_collect(GpuContext& g);
// A new ubatch: the previous add is not this step's (no issue gap across steps).
void profile_reset(GpuContext& g);
// Glue wait (experts-bridge.h): the add was queued before the experts and has no GPU start mark, so its part is
// measured on the host: from the flag's release (released_ns) until the add's add_end mark completes.
void profile_add_latency(GpuContext& g, uint64_t released_ns);

}  // namespace mixtile::gpu
