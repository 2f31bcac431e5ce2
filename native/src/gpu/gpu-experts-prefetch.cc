// Double-buffered prefetch of the next layer's expert bytes; see gpu-experts-prefetch.h.
#include "gpu/gpu-experts-prefetch.h"

#include <algorithm>
#include <stdexcept>

namespace mixtile {
namespace {

size_t align256(size_t v) { return (v + 255) / 256 * 256; }

void check_status(const CudaApi& api, mxc_status st, const char* what) {
  if (st != MXC_OK) throw std::runtime_error(std::string("gpu experts prefetch: ") + what + ": " + api.mxc_last_error());
}

// Free device memory left after a bank must stay above this (cuBLAS workspaces, the ring's growth).
constexpr size_t RESERVE = size_t(512) << 20;

}  // namespace

ExpertsPrefetch::ExpertsPrefetch(GpuExperts& gpu, size_t budget_bytes) : gpu_(gpu), budget_(budget_bytes) {
  if (budget_ == 0) off_reason_ = "no VRAM budget for the prefetch";
}

ExpertsPrefetch::~ExpertsPrefetch() {
  const CudaApi& api = gpu_.api();
  // Queued copies or reads may still use the banks (errors ignored: destructor).
  api.mxc_stream_sync(gpu_.copy_stream());
  api.mxc_stream_sync(gpu_.compute_stream());
  for (Bank& b : banks_) {
    api.mxc_free(b.p);
    for (mxc_event* e : b.r.ready) api.mxc_event_destroy(e);
    if (b.r.done) api.mxc_event_destroy(b.r.done);
  }
}

size_t ExpertsPrefetch::bank_bytes(const GpuExpertWeights& w, int64_t count) {
  const size_t n = size_t(std::max<int64_t>(0, count));
  return align256(n * w.gate().matrix_bytes()) + align256(n * w.up().matrix_bytes()) + align256(n * w.down().matrix_bytes());
}

int64_t ExpertsPrefetch::capacity(const GpuExpertWeights& w) const {
  const size_t per_bank = budget_ / 2;
  if (per_bank < 3 * 256) return 0;
  return std::min<int64_t>(w.n_expert(), int64_t((per_bank - 3 * 256) / w.expert_bytes()));
}

const ResidentExperts* ExpertsPrefetch::resident(const GpuExpertWeights& w) const {
  for (const Bank& b : banks_)
    if (b.r.w == &w && b.r.count > 0) return &b.r;
  return nullptr;
}

// Grow-only; the old bytes are freed after every queued copy into or read from them has finished.
bool ExpertsPrefetch::grow(Bank& b, size_t bytes) {
  if (b.bytes >= bytes) return true;
  const CudaApi& api = gpu_.api();
  check_status(api, api.mxc_stream_sync(gpu_.copy_stream()), "mxc_stream_sync");
  check_status(api, api.mxc_stream_sync(gpu_.compute_stream()), "mxc_stream_sync");
  check_status(api, api.mxc_free(b.p), "mxc_free");
  b.p = nullptr;
  b.bytes = 0;
  b.r.w = nullptr;
  b.r.count = 0;
  uint64_t free_b = 0, total_b = 0;
  if (api.mxc_mem_info(&free_b, &total_b) != MXC_OK || free_b < bytes + RESERVE) {
    off_reason_ = "the device has " + std::to_string(free_b >> 20) + " MiB free, under the " +
                  std::to_string((bytes + RESERVE) >> 20) + " MiB a prefetch bank needs with its reserve";
    return false;
  }
  if (api.mxc_malloc(&b.p, bytes) != MXC_OK) {
    b.p = nullptr;
    off_reason_ = std::string("mxc_malloc of a prefetch bank failed: ") + api.mxc_last_error();
    return false;
  }
  b.bytes = bytes;
  return true;
}

int64_t ExpertsPrefetch::start(const GpuExpertWeights& w, int64_t count, const GpuExpertWeights* in_use) {
  if (!off_reason_.empty() || !w.pinned()) return 0;  // staged weights need the host to copy: not here
  count = std::min(count, capacity(w));
  if (count <= 0) return 0;
  if (const ResidentExperts* r = resident(w); r && r->count >= count) return 0;
  // A bank holding fewer of w's experts is refilled in place; else the bank the computing layer does not read.
  Bank* b = nullptr;
  for (Bank& x : banks_)
    if (x.r.w == &w) b = &x;
  if (!b) b = in_use && banks_[0].r.w == in_use ? &banks_[1] : &banks_[0];
  if (in_use && b->r.w == in_use) return 0;
  const CudaApi& api = gpu_.api();
  // Sized for this layer's whole count of experts (grow-only): layers of one model differ by at most a
  // tensor type, so the first layer's size rarely moves.
  if (!grow(*b, std::min(budget_ / 2, bank_bytes(w, w.n_expert())))) return 0;
  ResidentExperts& r = b->r;
  if (!r.done) check_status(api, api.mxc_event_create(&r.done, 0), "mxc_event_create");
  const int64_t chunks = (count + CHUNK - 1) / CHUNK;
  while (int64_t(r.ready.size()) < chunks) {
    mxc_event* e = nullptr;
    check_status(api, api.mxc_event_create(&e, 0), "mxc_event_create");
    r.ready.push_back(e);
  }
  mxc_stream* copy = gpu_.copy_stream();
  // The last forward that read this bank has dequantized everything it needed from it.
  check_status(api, api.mxc_stream_wait_event(copy, r.done), "mxc_stream_wait_event");
  // Regions sized for every expert of w when the bank has room, else for capacity(w) of them (>= count).
  auto* base = static_cast<uint8_t*>(b->p);
  const size_t regions = size_t(bank_bytes(w, w.n_expert()) <= b->bytes ? w.n_expert() : capacity(w));
  r.w = &w;
  r.count = count;
  r.chunk = CHUNK;
  r.gate = base;
  r.up = base + align256(regions * w.gate().matrix_bytes());
  r.down = r.up + align256(regions * w.up().matrix_bytes());
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t e0 = c * CHUNK, n = std::min(CHUNK, count - e0);
    const Weight* parts[3] = {&w.gate(), &w.up(), &w.down()};
    const uint8_t* dst[3] = {r.gate, r.up, r.down};
    for (int i = 0; i < 3; ++i) {
      const size_t mb = parts[i]->matrix_bytes();
      gpu_.copy_weights(w, const_cast<uint8_t*>(dst[i]) + size_t(e0) * mb, parts[i]->data + size_t(e0) * mb,
                        size_t(n) * mb);
    }
    check_status(api, api.mxc_event_record(r.ready[size_t(c)], copy), "mxc_event_record");
  }
  return count;
}

}  // namespace mixtile
