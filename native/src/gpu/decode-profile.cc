// Decode-step GPU timestamps; see decode-profile.h.
#include "gpu/decode-profile.h"

#include <cstdlib>
#include <memory>

#include "gpu/graphs.h"

namespace mixtile::gpu {

struct DecodeProfile {
  const CudaApi* api = nullptr;
  mxc_event* ev[int(ProfileMark::count)] = {};
  bool recorded[int(ProfileMark::count)] = {};
  ~DecodeProfile() {
    for (mxc_event* e : ev) {
      if (e) api->mxc_event_destroy(e);
    }
  }
};

bool gpu_profile_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("MIXTILE_GPU_PROFILE");
    return e && *e == '1';
  }();
  return on;
}

static DecodeProfile& state(GpuContext& g) {
  if (!g.profile) {
    auto p = std::make_shared<DecodeProfile>();
    p->api = g.api;
    for (auto& e : p->ev) g.ok(g.api->mxc_event_create(&e, 1), "profile event");
    g.profile = std::move(p);
  }
  return *g.profile;
}

void profile_mark(GpuContext& g, ProfileMark m) {
  if (!gpu_profile_enabled() || !decode_step(g.plan)) return;
  DecodeProfile& p = state(g);
  g.ok(g.api->mxc_event_record(p.ev[int(m)], g.stream), "profile event record");
  p.recorded[int(m)] = true;
}

void profile_reset(GpuContext& g) {
  if (!g.profile) return;
  for (bool& r : g.profile->recorded) r = false;
}

void profile_add_latency(GpuContext& g, uint64_t released_ns) {
  if (!gpu_profile_enabled() || !g.profile || !decode_step(g.plan)) return;
  DecodeProfile& p = *g.profile;
  if (!p.recorded[int(ProfileMark::add_end)]) return;
  g.ok(g.api->mxc_event_sync(p.ev[int(ProfileMark::add_end)]), "profile event sync");
  g.counters.profile_h2d_add_us += double(now_ns() - released_ns) * 1e-3;
}

void profile_collect(GpuContext& g) {
  if (!gpu_profile_enabled() || !g.profile || !decode_step(g.plan)) return;
  DecodeProfile& p = *g.profile;
  auto us = [&](ProfileMark a, ProfileMark b) -> double {
    if (!p.recorded[int(a)] || !p.recorded[int(b)]) return -1;
    float ms = 0;
    if (g.api->mxc_event_elapsed_ms(p.ev[int(a)], p.ev[int(b)], &ms) != MXC_OK) return -1;
    return double(ms) * 1e3;
  };
  auto add = [](double v, double& sum) {
    if (v >= 0) sum += v;
  };
  GpuCounters& c = g.counters;
  add(us(ProfileMark::attention_begin, ProfileMark::attention_end), c.profile_attention_us);
  add(us(ProfileMark::attention_end, ProfileMark::route_end), c.profile_route_us);
  add(us(ProfileMark::route_end, ProfileMark::d2h_end), c.profile_d2h_us);
  // The previous layer's upload, add and the gap after it (none for a step's first layer).
  add(us(ProfileMark::upload_begin, ProfileMark::add_end), c.profile_h2d_add_us);
  add(us(ProfileMark::add_end, ProfileMark::attention_begin), c.profile_issue_gap_us);
  c.profile_layers++;
  for (ProfileMark m : {ProfileMark::upload_begin, ProfileMark::add_end, ProfileMark::attention_begin}) {
    p.recorded[int(m)] = false;
  }
}

}  // namespace mixtile::gpu
