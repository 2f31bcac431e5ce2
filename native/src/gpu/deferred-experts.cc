// Expert deferral on decode steps; see deferred-experts.h.
#include "gpu/deferred-experts.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>

namespace mixtile::gpu {

void split_deferred(const int32_t* ids, const float* w, int64_t n, int top_k, int defer, int32_t* imm_ids,
                    float* imm_w, int32_t* def_ids, float* def_w) {
  if (defer < 0 || defer > top_k) throw std::invalid_argument("split_deferred: defer outside [0, top_k]");
  std::vector<char> held(static_cast<size_t>(top_k));
  for (int64_t t = 0; t < n; ++t) {
    const float* wt = w + t * top_k;
    std::fill(held.begin(), held.end(), 0);
    // The `defer` smallest weights; among equal weights the later slot goes first (top-k lists the
    // stronger expert first, so ties keep the router's order).
    for (int d = 0; d < defer; ++d) {
      int pick = -1;
      for (int s = top_k - 1; s >= 0; --s) {
        if (held[size_t(s)]) continue;
        if (pick < 0 || wt[s] < wt[pick]) pick = s;
      }
      held[size_t(pick)] = 1;
    }
    int i = 0, j = 0;
    for (int s = 0; s < top_k; ++s) {
      const int32_t id = ids[t * top_k + s];
      if (held[size_t(s)]) {
        def_ids[t * defer + j] = id;
        def_w[t * defer + j] = wt[s];
        ++j;
      } else {
        imm_ids[t * (top_k - defer) + i] = id;
        imm_w[t * (top_k - defer) + i] = wt[s];
        ++i;
      }
    }
  }
}

// Read at every hold (not cached), so one test process can run every schedule.
static bool env_on(const char* name) {
  const char* e = std::getenv(name);
  return e && *e == '1';
}

// One helper thread that runs one job at a time. It becomes the pool's caller for the job's parallel_for
// calls; the thread that posted the job must not run pool work until wait() returned (none does: it only
// issues GPU work meanwhile).
class DeferredRunner {
 public:
  DeferredRunner() : thread_([this] { loop(); }) {}
  ~DeferredRunner() {
    {
      std::lock_guard<std::mutex> lk(m_);
      quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void start(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = std::move(job);
      done_.store(false, std::memory_order_relaxed);
    }
    cv_.notify_one();
  }
  // Spins briefly, then yields its core to the pool until the job is done; rethrows its exception.
  void wait() {
    for (int i = 0; !done_.load(std::memory_order_acquire); ++i) {
      if (i < 200) _mm_pause();
      else std::this_thread::yield();
    }
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return quit_ || job_; });
        if (!job_) return;
        job = std::move(job_);
        job_ = nullptr;
      }
      try {
        job();
      } catch (...) {
        error_ = std::current_exception();
      }
      done_.store(true, std::memory_order_release);
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool quit_ = false;
  std::exception_ptr error_;
  std::atomic<bool> done_{true};
  std::thread thread_;  // last: starts after the members above exist
};

DeferredExperts::DeferredExperts() = default;
DeferredExperts::~DeferredExperts() {
  if (runner && running) runner->wait();
}

// The held-back experts' sum into y (on whichever thread runs it).
static uint64_t compute_into_y(DeferredExperts& d) {
  const uint64_t t0 = now_ns();
  moe_forward_routed(*d.experts, d.x.data(), d.n, d.ids.data(), d.w.data(), d.k, d.y.as<float>());
  return now_ns() - t0;
}

void deferred_experts_compute(GpuContext& g) {
  DeferredExperts* d = g.deferred.get();
  if (!d || !d->pending || d->computed) return;
  if (d->running) {
    const uint64_t t0 = now_ns();
    d->running = false;
    d->runner->wait();
    g.counters.experts_deferred_ns += now_ns() - t0;  // async: only the time this thread waited
  } else {
    d->y_fence.wait();  // the last join's upload may still read y
    g.counters.experts_deferred_ns += compute_into_y(*d);
  }
  d->computed = true;
}

void deferred_experts_hold(GpuContext& g, const ExpertsWeights& experts, DeferJoin join, const float* x, int64_t n,
                           const int32_t* ids, const float* w, int k) {
  if (!g.deferred) {
    auto d = std::make_shared<DeferredExperts>();
    d->y = PinnedBuffer(g.api, size_t(g.dims.ubatch * g.dims.hidden) * 4, "pinned deferred experts output");
    d->y_fence.init(g.api);
    g.deferred = std::move(d);
  }
  DeferredExperts& d = *g.deferred;
  if (d.pending) throw std::logic_error("deferred experts: a held-back part was not joined before the next one");
  d.experts = &experts;
  d.join = join;
  d.n = n;
  d.k = k;
  d.x.assign(x, x + n * experts.hidden);
  d.ids.assign(ids, ids + n * k);
  d.w.assign(w, w + n * k);
  d.pending = true;
  d.computed = false;
  g.counters.experts_deferred++;
  if (env_on("MIXTILE_DEFER_EAGER")) {
    deferred_experts_compute(g);
  } else if (env_on("MIXTILE_DEFER_ASYNC")) {
    if (!d.runner) d.runner = std::make_unique<DeferredRunner>();
    d.y_fence.wait();
    DeferredExperts* dp = &d;
    d.runner->start([dp] { compute_into_y(*dp); });
    d.running = true;
  }
}

void deferred_experts_add_to(GpuContext& g, float* y_host) {
  DeferredExperts* d = g.deferred.get();
  if (!d || !d->pending) return;
  deferred_experts_compute(g);
  const float* s = d->y.as<float>();
  const int64_t len = d->n * d->experts->hidden;
  for (int64_t i = 0; i < len; ++i) y_host[i] += s[i];
  d->pending = false;
}

void deferred_experts_join(GpuContext& g) {
  DeferredExperts* d = g.deferred.get();
  if (!d || !d->pending) return;
  deferred_experts_compute(g);
  const CudaApi& api = *g.api;
  const int64_t len = d->n * d->experts->hidden;
  // tmp is free between blocks: the MoE block rewrites it after this on the same stream.
  g.ok(api.mxc_memcpy_h2d(g.tmp.as(), d->y.as(), size_t(len) * 4, g.stream), "deferred experts output to the GPU");
  d->y_fence.record(g.stream);
  g.ok(api.mxc_add(g.x.as<float>(), g.tmp.as<float>(), g.x.as<float>(), len, g.stream), "deferred experts residual add");
  g.counters.h2d_bytes += uint64_t(len) * 4;
  d->pending = false;
}

void deferred_experts_drop(GpuContext& g) {
  DeferredExperts* d = g.deferred.get();
  if (!d) return;
  if (d->running) {  // its buffers are about to be reused
    d->running = false;
    d->runner->wait();
  }
  d->pending = false;
}

bool deferred_experts_pending(const GpuContext& g) { return g.deferred && g.deferred->pending; }

DeferJoin deferred_experts_join_kind(const GpuContext& g) { return g.deferred ? g.deferred->join : DeferJoin::moe; }

}  // namespace mixtile::gpu
