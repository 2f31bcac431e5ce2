// GpuExperts: expert weights streamed from host RAM to the GPU, one expert at a time through a ring
// of device slots (copy stream), dequantized and multiplied on the compute stream. See gpu-experts.h.
#include "gpu/gpu-experts.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

namespace mixtile {
namespace {

// ---- process-wide registry of pinned host page ranges ----
// Only whole pages inside a tensor are pinned: a page it shares with other data (a neighbouring tensor,
// or heap objects beside a native buffer) stays pageable, since the driver rejects a copy whose source is
// partly pinned, and those other bytes may be copied by others. Two objects over the same tensor (the
// bench's and the engine's) share the pieces, refcounted: cudaHostRegister refuses overlaps.
struct PinEntry {
  uintptr_t end;
  int refs;
};
std::mutex g_pin_mu;
std::map<uintptr_t, PinEntry> g_pins;  // begin -> entry; entries never overlap

uintptr_t page_size() {
  static const uintptr_t p = uintptr_t(sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096);
  return p;
}

void unpin_locked(const CudaApi& api, uintptr_t begin) {
  auto it = g_pins.find(begin);
  if (it == g_pins.end()) return;
  if (--it->second.refs == 0) {
    api.mxc_host_unregister(reinterpret_cast<void*>(begin));
    g_pins.erase(it);
  }
}

// Pins the whole pages inside [b, e); on success appends the pieces held to `held` and returns "".
std::string pin_range(const CudaApi& api, uintptr_t b, uintptr_t e, std::vector<std::pair<uintptr_t, uintptr_t>>& held) {
  const uintptr_t pg = page_size();
  b = (b + pg - 1) / pg * pg;
  e = e / pg * pg;
  std::lock_guard<std::mutex> lock(g_pin_mu);
  auto it = g_pins.upper_bound(b);
  if (it != g_pins.begin() && std::prev(it)->second.end > b) --it;
  for (uintptr_t cur = b; cur < e;) {
    if (it != g_pins.end() && it->first <= cur) {  // already pinned: share it
      ++it->second.refs;
      held.emplace_back(it->first, it->second.end);
      cur = it->second.end;
      ++it;
      continue;
    }
    const uintptr_t gap_end = it != g_pins.end() ? std::min(e, it->first) : e;
    if (api.mxc_host_register(reinterpret_cast<void*>(cur), size_t(gap_end - cur)) != MXC_OK) {
      return api.mxc_last_error();
    }
    g_pins.emplace(cur, PinEntry{gap_end, 1});
    held.emplace_back(cur, gap_end);
    cur = gap_end;
  }
  return "";
}

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

std::string shape_of(const Weight& w) {
  return "[" + std::to_string(w.ne[0]) + ", " + std::to_string(w.ne[1]) + ", " + std::to_string(w.ne[2]) + ", " +
         std::to_string(w.ne[3]) + "]";
}

}  // namespace

// ------------------------------------------------------------------ GpuExpertWeights

GpuExpertWeights::GpuExpertWeights(const CudaApi& api, const Weight& gate, const Weight& up, const Weight& down)
    : api_(api), gate_(gate), up_(up), down_(down), n_expert_(gate.ne[2]), hidden_(gate.ne[0]), ffn_(gate.ne[1]) {
  const bool shapes_ok = gate.ne[3] == 1 && up.ne[0] == hidden_ && up.ne[1] == ffn_ && up.ne[2] == n_expert_ &&
                         up.ne[3] == 1 && down.ne[0] == ffn_ && down.ne[1] == hidden_ && down.ne[2] == n_expert_ &&
                         down.ne[3] == 1 && n_expert_ > 0 && hidden_ > 0 && ffn_ > 0;
  if (!shapes_ok) {
    throw std::invalid_argument("gpu experts: expected gate/up [hidden, ffn, n_expert] and down [ffn, hidden, n_expert], got " +
                                shape_of(gate) + ", " + shape_of(up) + ", " + shape_of(down));
  }
  for (const Weight* w : {&gate_, &up_, &down_}) {
    if (!w->data || api.mxc_dtype_bytes(mxc_dtype(w->type), w->ne[0]) != w->row_bytes || w->row_bytes == 0) {
      throw std::invalid_argument("gpu experts: weight type " + std::to_string(int(w->type)) + " with rows of " +
                                  std::to_string(w->ne[0]) +
                                  " is not one the GPU dequantizes (F32 F16 BF16 Q8_0 Q4_K Q5_K Q6_K in whole blocks)");
    }
  }
  const char* env = std::getenv("MIXTILE_GPU_EXPERTS_PIN");
  if (env && std::string(env) == "0") {
    unpinned_reason_ = "MIXTILE_GPU_EXPERTS_PIN=0";
    return;
  }
  for (const Weight* w : {&gate_, &up_, &down_}) {
    const uintptr_t b = reinterpret_cast<uintptr_t>(w->data);
    std::string err = pin_range(api, b, b + w->bytes(), held_);
    if (!err.empty()) {
      unpinned_reason_ = "mxc_host_register refused the weights (" + err + "); staging through pinned buffers";
      std::lock_guard<std::mutex> lock(g_pin_mu);
      for (const auto& p : held_) unpin_locked(api, p.first);
      held_.clear();
      return;
    }
  }
  // Pieces shared by two tensors appear twice: keep one of each, sorted, for copy_weights.
  std::vector<std::pair<uintptr_t, uintptr_t>> pieces = held_;
  std::sort(pieces.begin(), pieces.end());
  pieces.erase(std::unique(pieces.begin(), pieces.end()), pieces.end());
  pieces_ = std::move(pieces);
  pinned_ = true;
  // The complement of the pieces inside each tensor, into one pinned buffer (a few KiB per layer).
  std::vector<std::pair<uintptr_t, uintptr_t>> gaps;
  for (const Weight* w : {&gate_, &up_, &down_}) {
    const uintptr_t b = reinterpret_cast<uintptr_t>(w->data), e = b + w->bytes();
    uintptr_t cur = b;
    for (const auto& pc : pieces_) {
      if (pc.second <= cur || pc.first >= e) continue;
      if (pc.first > cur) gaps.emplace_back(cur, pc.first);
      cur = std::max(cur, pc.second);
    }
    if (cur < e) gaps.emplace_back(cur, e);
  }
  size_t total = 0;
  for (const auto& g : gaps) total += g.second - g.first;
  if (total > 0 && api.mxc_host_alloc(&edge_mem_, total) == MXC_OK) {  // else: pageable copies, still correct
    auto* dst = static_cast<uint8_t*>(edge_mem_);
    for (const auto& g : gaps) {
      std::memcpy(dst, reinterpret_cast<const void*>(g.first), g.second - g.first);
      edges_.push_back(Edge{g.first, g.second, dst});
      dst += g.second - g.first;
    }
    std::sort(edges_.begin(), edges_.end(), [](const Edge& a, const Edge& b) { return a.begin < b.begin; });
  }
}

GpuExpertWeights::~GpuExpertWeights() {
  if (edge_mem_) api_.mxc_host_free(edge_mem_);
  std::lock_guard<std::mutex> lock(g_pin_mu);
  for (const auto& p : held_) unpin_locked(api_, p.first);
}

// ------------------------------------------------------------------ GpuExperts

GpuExperts::GpuExperts(const CudaApi& api, int device, mxc_stream* compute, mxc_blas* blas, int ring_slots)
    : api_(api), device_(device), compute_(compute), blas_(blas), slots_(std::max(2, ring_slots)) {
  check(api_.mxc_set_device(device_), "mxc_set_device");
  if (!compute_) {
    check(api_.mxc_stream_create(&compute_), "mxc_stream_create");
    own_compute_ = true;
  }
  check(api_.mxc_stream_create(&copy_), "mxc_stream_create");
  if (!blas_) {
    check(api_.mxc_blas_create(&blas_, compute_), "mxc_blas_create");
    own_blas_ = true;
  }
  ring_.resize(size_t(slots_));
  stage_.resize(size_t(slots_));
  copied_.resize(size_t(slots_));
  consumed_.resize(size_t(slots_));
  for (int i = 0; i < slots_; ++i) {
    check(api_.mxc_event_create(&copied_[size_t(i)], 0), "mxc_event_create");
    check(api_.mxc_event_create(&consumed_[size_t(i)], 0), "mxc_event_create");
  }
  check(api_.mxc_event_create(&meta_done_, 0), "mxc_event_create");
  check(api_.mxc_event_create(&t0_, 1), "mxc_event_create");
  check(api_.mxc_event_create(&t1_, 1), "mxc_event_create");
}

GpuExperts::~GpuExperts() {
  // Queued work may still read the buffers: finish it first. Errors are ignored (destructor).
  if (compute_) api_.mxc_stream_sync(compute_);
  if (copy_) api_.mxc_stream_sync(copy_);
  for (Buf* b : {&meta_dev_, &xg_, &o_, &gu_, &h_, &wgu_, &wd_}) api_.mxc_free(b->p);
  for (Buf& b : ring_) api_.mxc_free(b.p);
  for (Buf& b : stage_) api_.mxc_host_free(b.p);
  api_.mxc_host_free(meta_host_.p);
  for (mxc_event* e : copied_) api_.mxc_event_destroy(e);
  for (mxc_event* e : consumed_) api_.mxc_event_destroy(e);
  for (mxc_event* e : {meta_done_, t0_, t1_}) api_.mxc_event_destroy(e);
  if (own_blas_) api_.mxc_blas_destroy(blas_);
  api_.mxc_stream_destroy(copy_);
  if (own_compute_) api_.mxc_stream_destroy(compute_);
}

void GpuExperts::check(mxc_status st, const char* what) const {
  if (st != MXC_OK) throw std::runtime_error(std::string("gpu experts: ") + what + ": " + api_.mxc_last_error());
}

// Grow-only scratch. A buffer is replaced only after both streams have drained (queued work may read it).
void GpuExperts::grow(Buf& b, size_t bytes) {
  if (b.bytes >= bytes) return;
  check(api_.mxc_stream_sync(compute_), "mxc_stream_sync");
  check(api_.mxc_stream_sync(copy_), "mxc_stream_sync");
  check(api_.mxc_free(b.p), "mxc_free");
  b = Buf{};
  bytes = align_up(bytes + bytes / 4, 256);  // headroom: the next batch is often a little larger
  check(api_.mxc_malloc(&b.p, bytes), "mxc_malloc");
  b.bytes = bytes;
}

void GpuExperts::grow_host(Buf& b, size_t bytes) {
  if (b.bytes >= bytes) return;
  check(api_.mxc_stream_sync(compute_), "mxc_stream_sync");
  check(api_.mxc_stream_sync(copy_), "mxc_stream_sync");
  check(api_.mxc_host_free(b.p), "mxc_host_free");
  b = Buf{};
  bytes = align_up(bytes + bytes / 4, 4096);
  check(api_.mxc_host_alloc(&b.p, bytes), "mxc_host_alloc");
  b.bytes = bytes;
}

// A ring slot holds GROUP experts: gate slices, then up slices, then down slices, each block 256-aligned.
size_t GpuExperts::slot_bytes(const GpuExpertWeights& w) {
  return align_up(size_t(GROUP) * w.gate_.matrix_bytes(), 256) + align_up(size_t(GROUP) * w.up_.matrix_bytes(), 256) +
         align_up(size_t(GROUP) * w.down_.matrix_bytes(), 256);
}

// Copy stream: the gate, up and down slices of experts [e0, e0 + count) (adjacent in each stacked tensor:
// one copy per tensor) into ring slot `slot`, once the compute stream has dequantized what the slot held
// before. Unpinned weights go through the slot's pinned staging buffer, which the host refills only after
// its previous copy finished.
void GpuExperts::stream_group(const GpuExpertWeights& w, int64_t e0, int64_t count, int slot) {
  const Weight* parts[3] = {&w.gate_, &w.up_, &w.down_};
  Buf& dst = ring_[size_t(slot)];
  check(api_.mxc_stream_wait_event(copy_, consumed_[size_t(slot)]), "mxc_stream_wait_event");
  if (!w.pinned_) check(api_.mxc_event_sync(copied_[size_t(slot)]), "mxc_event_sync");
  size_t off = 0;
  for (const Weight* p : parts) {
    const uint8_t* src = p->data + p->matrix_bytes() * size_t(e0);
    const size_t bytes = p->matrix_bytes() * size_t(count);
    uint8_t* d = static_cast<uint8_t*>(dst.p) + off;
    if (w.pinned_) {
      copy_weights(w, d, src, bytes);
    } else {
      uint8_t* st = static_cast<uint8_t*>(stage_[size_t(slot)].p) + off;
      std::memcpy(st, src, bytes);
      check(api_.mxc_memcpy_h2d(d, st, bytes, copy_), "mxc_memcpy_h2d");
    }
    off += align_up(size_t(GROUP) * p->matrix_bytes(), 256);
  }
  check(api_.mxc_event_record(copied_[size_t(slot)], copy_), "mxc_event_record");
}

// One copy per pinned piece the source range touches, and one per stretch between pieces (the partly
// shared pages at a tensor's ends, a few KiB: from their pinned copy in w.edges_).
void GpuExperts::copy_weights(const GpuExpertWeights& w, uint8_t* dst, const uint8_t* src, size_t bytes) {
  if (!w.pinned_) throw std::logic_error("gpu experts: copy_weights needs pinned weights");
  const auto& pc = w.pieces_;
  uintptr_t cur = reinterpret_cast<uintptr_t>(src);
  const uintptr_t end = cur + bytes;
  auto it = std::upper_bound(pc.begin(), pc.end(), std::make_pair(cur, UINTPTR_MAX));  // first piece after cur
  while (cur < end) {
    uintptr_t stop;
    const void* from = reinterpret_cast<const void*>(cur);
    if (it != pc.begin() && std::prev(it)->second > cur) {  // inside a pinned piece
      stop = std::min(end, std::prev(it)->second);
    } else {  // between pieces: the pinned copy of this edge
      stop = it != pc.end() ? std::min(end, it->first) : end;
      auto e = std::upper_bound(w.edges_.begin(), w.edges_.end(), cur,
                                [](uintptr_t v, const GpuExpertWeights::Edge& x) { return v < x.begin; });
      if (e != w.edges_.begin() && std::prev(e)->end > cur) {
        stop = std::min(stop, std::prev(e)->end);
        from = std::prev(e)->pinned + (cur - std::prev(e)->begin);
      }
    }
    check(api_.mxc_memcpy_h2d(dst + (cur - reinterpret_cast<uintptr_t>(src)), from, size_t(stop - cur), copy_),
          "mxc_memcpy_h2d");
    cur = stop;
    while (it != pc.end() && it->first <= cur) ++it;
  }
}

const uint8_t* GpuExperts::ring_part(const GpuExpertWeights& w, int slot, int part, int64_t i) const {
  const size_t gb = w.gate_.matrix_bytes(), ub = w.up_.matrix_bytes(), db = w.down_.matrix_bytes();
  const size_t up_off = align_up(size_t(GROUP) * gb, 256), down_off = up_off + align_up(size_t(GROUP) * ub, 256);
  const uint8_t* raw = static_cast<const uint8_t*>(ring_[size_t(slot)].p);
  if (part == 0) return raw + size_t(i) * gb;
  if (part == 1) return raw + up_off + size_t(i) * ub;
  return raw + down_off + size_t(i) * db;
}

// Compute stream: dequantize one expert's raw slices to BF16 (gate and up stacked as one [2 ffn][hidden]
// matrix), record `release`, then rows [p0, p0 + rows) of xg through gate/up, SiLU*up and down into o.
void GpuExperts::compute_expert(const GpuExpertWeights& w, const uint8_t* gate, const uint8_t* up,
                                const uint8_t* down, mxc_event* release, int64_t p0, int64_t rows) {
  const int64_t H = w.hidden_, F = w.ffn_;
  auto* wgu = static_cast<uint16_t*>(wgu_.p);
  auto* wd = static_cast<uint16_t*>(wd_.p);
  check(api_.mxc_dequant_bf16(gate, mxc_dtype(w.gate_.type), F * H, wgu, compute_), "mxc_dequant_bf16 (gate)");
  check(api_.mxc_dequant_bf16(up, mxc_dtype(w.up_.type), F * H, wgu + F * H, compute_), "mxc_dequant_bf16 (up)");
  check(api_.mxc_dequant_bf16(down, mxc_dtype(w.down_.type), H * F, wd, compute_), "mxc_dequant_bf16 (down)");
  if (release) check(api_.mxc_event_record(release, compute_), "mxc_event_record");
  auto* xg = static_cast<const uint16_t*>(xg_.p) + p0 * H;
  auto* gu = static_cast<float*>(gu_.p);
  auto* h = static_cast<uint16_t*>(h_.p);
  auto* o = static_cast<float*>(o_.p) + p0 * H;
  check(api_.mxc_gemm_bf16(blas_, rows, 2 * F, H, xg, wgu, gu, MXC_F32, 0.f), "mxc_gemm_bf16 (gate/up)");
  check(api_.mxc_silu_mul(gu, gu + F, 2 * F, h, MXC_BF16, rows, int(F), compute_), "mxc_silu_mul");
  check(api_.mxc_gemm_bf16(blas_, rows, H, F, h, wd, o, MXC_F32, 0.f), "mxc_gemm_bf16 (down)");
}

GpuExpertsRun GpuExperts::forward(const GpuExpertWeights& w, const float* x_dev, int64_t n, const int32_t* ids,
                                  const float* weights, int top_k, const uint8_t* gpu_mask, float* y_dev,
                                  bool accumulate, const ResidentExperts* resident) {
  const int64_t E = w.n_expert_, H = w.hidden_, F = w.ffn_, K = top_k;
  if (top_k < 1 || top_k > 64) throw std::invalid_argument("gpu experts: top_k must be in [1, 64], got " + std::to_string(top_k));
  if (n < 0) throw std::invalid_argument("gpu experts: negative token count");
  if (n > 0 && (!x_dev || !ids || !weights || !y_dev)) throw std::invalid_argument("gpu experts: null pointer");
  for (int64_t i = 0; i < n * K; ++i) {
    if (ids[i] < 0 || ids[i] >= E) {
      throw std::invalid_argument("gpu experts: expert id " + std::to_string(ids[i]) + " at token " +
                                  std::to_string(i / K) + " slot " + std::to_string(i % K) + " is outside [0, " +
                                  std::to_string(E) + ")");
    }
  }
  check(api_.mxc_set_device(device_), "mxc_set_device");
  check(api_.mxc_blas_set_stream(blas_, compute_), "mxc_blas_set_stream");
  GpuExpertsRun run;

  // Plan: (token, slot) pairs of the GPU's experts grouped by expert, ascending expert id.
  std::vector<int64_t> count(size_t(E), 0), start(size_t(E), 0);
  for (int64_t i = 0; i < n * K; ++i)
    if (!gpu_mask || gpu_mask[ids[i]]) ++count[size_t(ids[i])];
  int64_t total = 0, max_rows = 0;
  std::vector<int64_t> order, held;  // experts with tokens to stream / already in a prefetch bank
  for (int64_t e = 0; e < E; ++e) {
    start[size_t(e)] = total;
    total += count[size_t(e)];
    max_rows = std::max(max_rows, count[size_t(e)]);
    if (count[size_t(e)] > 0) (resident && resident->has(w, e) ? held : order).push_back(e);
  }
  if (total == 0) {
    if (!accumulate && n > 0) check(api_.mxc_memset(y_dev, 0, size_t(n * H) * 4, compute_), "mxc_memset");
    return run;
  }

  // Scratch (grow-only), then the routing tables in pinned memory: perm [total] | pos [n][K] | w [n][K].
  const size_t meta_bytes = size_t(total + 2 * n * K) * 4;
  grow(meta_dev_, meta_bytes);
  grow(xg_, size_t(total * H) * 2);
  grow(o_, size_t(total * H) * 4);
  grow(gu_, size_t(max_rows * 2 * F) * 4);
  grow(h_, size_t(max_rows * F) * 2);
  grow(wgu_, size_t(2 * F * H) * 2);
  grow(wd_, size_t(H * F) * 2);
  for (Buf& b : ring_) grow(b, slot_bytes(w));
  if (!w.pinned_)
    for (Buf& b : stage_) grow_host(b, slot_bytes(w));
  check(api_.mxc_event_sync(meta_done_), "mxc_event_sync");  // the previous call's upload has left the buffer
  grow_host(meta_host_, meta_bytes);
  auto* perm = static_cast<int32_t*>(meta_host_.p);
  int32_t* pos = perm + total;
  auto* wts = reinterpret_cast<float*>(pos + n * K);
  std::vector<int64_t> fill = start;
  for (int64_t i = 0; i < n * K; ++i) {
    const int32_t e = ids[i];
    if (gpu_mask && !gpu_mask[e]) {
      pos[i] = -1;
      continue;
    }
    const int64_t p = fill[size_t(e)]++;
    perm[p] = int32_t(i / K);
    pos[i] = int32_t(p);
  }
  std::memcpy(wts, weights, size_t(n * K) * 4);

  check(api_.mxc_event_record(t0_, compute_), "mxc_event_record");
  timed_ = true;
  check(api_.mxc_memcpy_h2d(meta_dev_.p, meta_host_.p, meta_bytes, compute_), "mxc_memcpy_h2d (routing)");
  check(api_.mxc_event_record(meta_done_, compute_), "mxc_event_record");
  auto* perm_d = static_cast<const int32_t*>(meta_dev_.p);
  check(api_.mxc_gather_rows_bf16(x_dev, n, H, perm_d, total, static_cast<uint16_t*>(xg_.p), compute_),
        "mxc_gather_rows_bf16");

  // Groups of up to GROUP consecutive expert ids share a ring slot; the copy stream runs up to `slots_`
  // groups ahead of the compute stream. The first groups' copies are queued before anything else so that
  // they run while the compute stream works through the resident experts.
  std::vector<std::pair<size_t, size_t>> groups;  // [i, j) of order
  for (size_t i = 0; i < order.size();) {
    size_t j = i + 1;
    while (j < order.size() && j - i < size_t(GROUP) && order[j] == order[j - 1] + 1) ++j;
    groups.emplace_back(i, j);
    i = j;
  }
  auto stream = [&](size_t g) {
    stream_group(w, order[groups[g].first], int64_t(groups[g].second - groups[g].first), int(g % size_t(slots_)));
  };
  for (size_t g = 0; g < std::min(groups.size(), size_t(slots_)); ++g) stream(g);
  int64_t waited = -1;  // last chunk of the bank the compute stream has waited for (held is ascending)
  for (size_t k = 0; k < held.size(); ++k) {
    const int64_t e = held[k];
    const int64_t c = e / resident->chunk;
    if (c != waited) {
      check(api_.mxc_stream_wait_event(compute_, resident->ready[size_t(c)]), "mxc_stream_wait_event (prefetch)");
      waited = c;
    }
    compute_expert(w, resident->gate + size_t(e) * w.gate_.matrix_bytes(), resident->up + size_t(e) * w.up_.matrix_bytes(),
                   resident->down + size_t(e) * w.down_.matrix_bytes(), k + 1 == held.size() ? resident->done : nullptr,
                   start[size_t(e)], count[size_t(e)]);
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    const int slot = int(g % size_t(slots_));
    check(api_.mxc_stream_wait_event(compute_, copied_[size_t(slot)]), "mxc_stream_wait_event");
    for (size_t k = groups[g].first; k < groups[g].second; ++k) {
      const int64_t i = int64_t(k - groups[g].first), e = order[k];
      compute_expert(w, ring_part(w, slot, 0, i), ring_part(w, slot, 1, i), ring_part(w, slot, 2, i),
                     k + 1 == groups[g].second ? consumed_[size_t(slot)] : nullptr, start[size_t(e)], count[size_t(e)]);
    }
    if (g + size_t(slots_) < groups.size()) stream(g + size_t(slots_));
  }
  check(api_.mxc_moe_combine(static_cast<const float*>(o_.p), total, H, perm_d + total,
                             reinterpret_cast<const float*>(perm_d + total + n * K), n, top_k, y_dev, accumulate ? 1 : 0,
                             compute_),
        "mxc_moe_combine");
  check(api_.mxc_event_record(t1_, compute_), "mxc_event_record");
  run.experts = int(order.size() + held.size());
  run.resident = int(held.size());
  run.rows = total;
  run.bytes = double(w.expert_bytes()) * double(order.size());
  return run;
}

double GpuExperts::last_forward_ms() {
  if (!timed_) return 0;
  check(api_.mxc_event_sync(t1_), "mxc_event_sync");
  float ms = 0;
  check(api_.mxc_event_elapsed_ms(t0_, t1_, &ms), "mxc_event_elapsed_ms");
  return double(ms);
}

double GpuExperts::measure_h2d_gbps(const GpuExpertWeights& w, size_t bytes) {
  check(api_.mxc_set_device(device_), "mxc_set_device");
  for (Buf& b : ring_) grow(b, slot_bytes(w));
  if (!w.pinned_)
    for (Buf& b : stage_) grow_host(b, slot_bytes(w));
  const int64_t n_copy = std::max<int64_t>(1, std::min<int64_t>(w.n_expert_, int64_t(bytes / w.expert_bytes())));
  mxc_event *a = nullptr, *b = nullptr;
  check(api_.mxc_event_create(&a, 1), "mxc_event_create");
  check(api_.mxc_event_create(&b, 1), "mxc_event_create");
  float ms = 0;
  for (int rep = 0; rep < 2; ++rep) {  // the first pass faults pages in and warms the copy engine
    check(api_.mxc_stream_sync(compute_), "mxc_stream_sync");
    check(api_.mxc_event_record(a, copy_), "mxc_event_record");
    for (int64_t e = 0, g = 0; e < n_copy; e += GROUP, ++g) {  // as forward copies: groups of GROUP
      const int slot = int(g % slots_);
      stream_group(w, e, std::min<int64_t>(GROUP, n_copy - e), slot);
      check(api_.mxc_event_record(consumed_[size_t(slot)], copy_), "mxc_event_record");  // nothing consumes here
    }
    check(api_.mxc_event_record(b, copy_), "mxc_event_record");
    check(api_.mxc_event_sync(b), "mxc_event_sync");
    check(api_.mxc_event_elapsed_ms(a, b, &ms), "mxc_event_elapsed_ms");
  }
  api_.mxc_event_destroy(a);
  api_.mxc_event_destroy(b);
  return ms > 0 ? double(n_copy) * double(w.expert_bytes()) / (double(ms) * 1e6) : 0;
}

double GpuExperts::measure_expert_s(const GpuExpertWeights& w, int64_t rows) {
  check(api_.mxc_set_device(device_), "mxc_set_device");
  check(api_.mxc_blas_set_stream(blas_, compute_), "mxc_blas_set_stream");
  const int64_t H = w.hidden_, F = w.ffn_;
  rows = std::max<int64_t>(1, rows);
  grow(ring_[0], slot_bytes(w));
  if (!w.pinned_) grow_host(stage_[0], slot_bytes(w));
  grow(xg_, size_t(rows * H) * 2);
  grow(o_, size_t(rows * H) * 4);
  grow(gu_, size_t(rows * 2 * F) * 4);
  grow(h_, size_t(rows * F) * 2);
  grow(wgu_, size_t(2 * F * H) * 2);
  grow(wd_, size_t(H * F) * 2);
  check(api_.mxc_memset(xg_.p, 0, size_t(rows * H) * 2, compute_), "mxc_memset");
  stream_group(w, 0, 1, 0);
  mxc_event *a = nullptr, *b = nullptr;
  check(api_.mxc_event_create(&a, 1), "mxc_event_create");
  check(api_.mxc_event_create(&b, 1), "mxc_event_create");
  std::vector<double> t;
  for (int rep = 0; rep < 4; ++rep) {
    check(api_.mxc_event_record(a, compute_), "mxc_event_record");
    check(api_.mxc_stream_wait_event(compute_, copied_[0]), "mxc_stream_wait_event");
    compute_expert(w, ring_part(w, 0, 0, 0), ring_part(w, 0, 1, 0), ring_part(w, 0, 2, 0), consumed_[0], 0, rows);
    check(api_.mxc_event_record(b, compute_), "mxc_event_record");
    check(api_.mxc_event_sync(b), "mxc_event_sync");
    float ms = 0;
    check(api_.mxc_event_elapsed_ms(a, b, &ms), "mxc_event_elapsed_ms");
    if (rep > 0) t.push_back(double(ms) / 1e3);  // the first includes cuBLAS's heuristics
  }
  api_.mxc_event_destroy(a);
  api_.mxc_event_destroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace mixtile
