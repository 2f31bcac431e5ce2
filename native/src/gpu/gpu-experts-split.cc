// CPU + GPU experts of one layer at once, and the measurement of the cost model's constants.
#include "gpu/gpu-experts-split.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <thread>

#include "threadpool.h"

namespace mixtile {
namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void check(const CudaApi& api, mxc_status st, const char* what) {
  if (st != MXC_OK) throw std::runtime_error(std::string("gpu experts split: ") + what + ": " + api.mxc_last_error());
}

// Best of `reps` wall-clock seconds of the CPU experts kernel with token t routed (top_k 1) to expert
// ids[t]; x values do not change the time.
double time_cpu(const ExpertsWeights& ew, const std::vector<int32_t>& ids, int reps) {
  const int64_t n = int64_t(ids.size());
  std::vector<float> x(size_t(n * ew.hidden), 0.01f), y(x.size()), w(size_t(n), 1.f);
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_s();
    moe_forward_routed(ew, x.data(), n, ids.data(), w.data(), 1, y.data());
    best = std::min(best, now_s() - t0);
  }
  return best;
}

bool adapt() {
  static const bool on = [] {
    const char* e = std::getenv("MIXTILE_EXPERT_COST_ADAPT");
    return !(e && std::string(e) == "0");
  }();
  return on;
}

// Moving average of measured / predicted-alone (the prediction was made with `scale`); predictions under
// 0.2 ms are too noisy to learn from.
void update_scale(double& scale, double measured_ms, double predicted_ms) {
  if (predicted_ms < 0.2 || measured_ms <= 0) return;
  const double r = std::clamp(measured_ms / (predicted_ms / scale), 0.25, 4.0);
  scale = 0.75 * scale + 0.25 * r;
}

}  // namespace

ExpertCostParams calibrate_expert_cost(GpuExperts& gpu, const GpuExpertWeights& gw, const ExpertsWeights& ew) {
  ExpertCostParams p;
  const CudaApi& api = gpu.api();
  // CPU: 1 token on each of up to 16 experts (weights streamed once each), then 32 tokens on each of up to 64: the
  // shape of a prefill call (512 tokens x top-8 of 128 give ~32 an expert), with experts enough to keep every pool
  // thread busy as the real call does. 128 tokens on 4 experts measured 8.3 us a row on the H100 machine where the
  // 512-token call needs ~1.5 (bench/RESULTS.md "Last device call of session 4"): the split then gave the CPU 5% of
  // the experts, and pp512 went 1515 -> 1986 t/s with MIXTILE_EXPERT_COST=cpu_row_us=1.5.
  const int64_t E = ew.n_expert, few = std::min<int64_t>(16, E), many = std::min<int64_t>(64, E), R = 32;
  std::vector<int32_t> ids1(static_cast<size_t>(few)), ids2(static_cast<size_t>(many * R));
  for (int64_t i = 0; i < few; ++i) ids1[size_t(i)] = int32_t(i);
  for (int64_t i = 0; i < many * R; ++i) ids2[size_t(i)] = int32_t(i % many);
  time_cpu(ew, ids2, 1);  // warm the pool, the scratch and the AMX tile state
  p.cpu_base_us = time_cpu(ew, ids1, 3) / double(few) * 1e6;
  p.cpu_row_us = std::max(0.0, (time_cpu(ew, ids2, 3) * 1e6 - double(many) * p.cpu_base_us) / double(many * (R - 1)));
  // GPU: PCIe from these weights, one expert's compute at 1 and 256 tokens.
  p.pcie_gbps = gpu.measure_h2d_gbps(gw, size_t(256) << 20);
  const double g1 = gpu.measure_expert_s(gw, 1), g256 = gpu.measure_expert_s(gw, 256);
  p.gpu_base_us = g1 * 1e6;
  p.gpu_row_us = std::max(0.0, (g256 - g1) * 1e6 / 255.0);
  // Fixed cost of a whole call (1 token, 1 expert, waited for) beyond its expert.
  void *x = nullptr, *y = nullptr;
  check(api, api.mxc_malloc(&x, size_t(gw.hidden()) * 4), "mxc_malloc");
  check(api, api.mxc_malloc(&y, size_t(gw.hidden()) * 4), "mxc_malloc");
  check(api, api.mxc_memset(x, 0, size_t(gw.hidden()) * 4, gpu.compute_stream()), "mxc_memset");
  const int32_t id = 0;
  const float w = 1.f;
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    check(api, api.mxc_stream_sync(gpu.compute_stream()), "mxc_stream_sync");
    const double t0 = now_s();
    gpu.forward(gw, static_cast<float*>(x), 1, &id, &w, 1, nullptr, static_cast<float*>(y), false);
    check(api, api.mxc_stream_sync(gpu.compute_stream()), "mxc_stream_sync");
    best = std::min(best, now_s() - t0);
  }
  api.mxc_free(x);
  api.mxc_free(y);
  const double expert_us = double(gw.expert_bytes()) / (p.pcie_gbps * 1e3) + p.gpu_base_us;
  p.gpu_call_us = std::max(0.0, best * 1e6 - expert_us);
  p.source = "measured";
  return expert_cost_from_env(p);
}

ExpertsSplitRunner::~ExpertsSplitRunner() {
  const CudaApi& api = gpu_.api();
  api.mxc_stream_sync(gpu_.compute_stream());
  api.mxc_free(y_dev_tmp_);
  api.mxc_host_free(y_pinned_);
  api.mxc_event_destroy(y_up_done_);
}

ExpertsSplitTotals ExpertsSplitRunner::totals() {
  if (gpu_time_pending_) {
    totals_.gpu_ms += gpu_.last_forward_ms();
    gpu_time_pending_ = false;
  }
  return totals_;
}

const ExpertCostParams& ExpertsSplitRunner::cost(const GpuExpertWeights& gw, const ExpertsWeights& ew) {
  if (!calibrated_) {
    // Every constant given in the environment: nothing to measure.
    ExpertCostParams env = expert_cost_from_env(ExpertCostParams{});
    cost_ = env.complete() && env.gpu_row_us > 0 && env.cpu_row_us > 0 ? env : calibrate_expert_cost(gpu_, gw, ew);
    calibrated_ = true;
  }
  return cost_;
}

void ExpertsSplitRunner::grow_dev(size_t bytes) {
  if (y_dev_tmp_bytes_ >= bytes) return;
  const CudaApi& api = gpu_.api();
  check(api, api.mxc_stream_sync(gpu_.compute_stream()), "mxc_stream_sync");
  check(api, api.mxc_free(y_dev_tmp_), "mxc_free");
  y_dev_tmp_ = nullptr;
  y_dev_tmp_bytes_ = 0;
  check(api, api.mxc_malloc(&y_dev_tmp_, bytes), "mxc_malloc");
  y_dev_tmp_bytes_ = bytes;
}

void ExpertsSplitRunner::grow_pinned(size_t bytes) {
  const CudaApi& api = gpu_.api();
  if (!y_up_done_) check(api, api.mxc_event_create(&y_up_done_, 0), "mxc_event_create");
  check(api, api.mxc_event_sync(y_up_done_), "mxc_event_sync");  // the last upload has left the buffer
  if (y_pinned_bytes_ >= bytes) return;
  check(api, api.mxc_host_free(y_pinned_), "mxc_host_free");
  y_pinned_ = nullptr;
  y_pinned_bytes_ = 0;
  void* p = nullptr;
  check(api, api.mxc_host_alloc(&p, bytes), "mxc_host_alloc");
  y_pinned_ = static_cast<float*>(p);
  y_pinned_bytes_ = bytes;
}

ExpertsSplitResult ExpertsSplitRunner::forward(const GpuExpertWeights& gw, const ExpertsWeights& ew,
                                               const float* x_host, const float* x_dev, int64_t n, const int32_t* ids,
                                               const float* weights, int top_k, ExpertsPlacement mode,
                                               const uint8_t* on_gpu, float* y_dev, const ResidentExperts* resident,
                                               const std::function<void(int)>& after_gpu_enqueued) {
  const CudaApi& api = gpu_.api();
  const int64_t E = ew.n_expert, H = ew.hidden, K = top_k;
  if (gw.n_expert() != E || gw.hidden() != H || gw.ffn() != ew.ffn) {
    throw std::invalid_argument("gpu experts split: the GPU and CPU weights are of different shapes");
  }
  if (top_k < 1) throw std::invalid_argument("gpu experts split: top_k must be >= 1");
  for (int64_t i = 0; i < n * K; ++i) {
    if (ids[i] < 0 || ids[i] >= E) {
      throw std::invalid_argument("gpu experts split: expert id " + std::to_string(ids[i]) + " at token " +
                                  std::to_string(i / K) + " is outside [0, " + std::to_string(E) + ")");
    }
  }
  ExpertsSplitResult res;
  const int64_t held = resident && resident->w == &gw ? resident->count : 0;
  std::vector<int64_t> rows(size_t(E), 0);
  for (int64_t i = 0; i < n * K; ++i) ++rows[size_t(ids[i])];
  if (on_gpu) {
    res.plan.on_gpu.assign(on_gpu, on_gpu + E);
    for (int64_t e = 0; e < E; ++e)
      if (rows[size_t(e)] > 0) (on_gpu[e] ? res.plan.gpu_experts : res.plan.cpu_experts)++;
    if (calibrated_) {
      res.plan.cpu_ms = predict_cpu_ms(cost_, rows, res.plan.on_gpu, double(gw.expert_bytes()), held);
      res.plan.gpu_ms = predict_gpu_ms(cost_, rows, res.plan.on_gpu, double(gw.expert_bytes()), held);
    }
    res.gpu_alone = res.plan.gpu_experts;
  } else {
    if (pending_gpu_pred_ms_ > 0) {  // the last split's GPU part has finished by now (its y was used)
      update_scale(cost_.split_gpu_x, gpu_.last_forward_ms(), pending_gpu_pred_ms_);
      pending_gpu_pred_ms_ = 0;
    }
    totals();  // the last call's GPU time
    const ExpertCostParams p = mode == ExpertsPlacement::split || calibrated_ ? cost(gw, ew) : ExpertCostParams{};
    res.plan = choose_expert_split(p, rows, double(gw.expert_bytes()), mode, held);
    res.gpu_alone = held > 0 && after_gpu_enqueued ? choose_expert_split(p, rows, double(gw.expert_bytes()), mode).gpu_experts
                                                   : res.plan.gpu_experts;
  }
  const uint8_t* mask = res.plan.on_gpu.data();

  // GPU part: enqueued from a helper thread so the CPU kernel below starts at once.
  std::exception_ptr gpu_error;
  std::thread gpu_thread;
  if (res.plan.gpu_experts > 0) {
    gpu_thread = std::thread([&] {
      try {
        res.gpu = gpu_.forward(gw, x_dev, n, ids, weights, top_k, mask, y_dev, false, resident);
        if (after_gpu_enqueued) after_gpu_enqueued(res.gpu_alone);
      } catch (...) {
        gpu_error = std::current_exception();
      }
    });
  } else if (after_gpu_enqueued) {
    after_gpu_enqueued(res.gpu_alone);  // nothing of this layer on the GPU: the link is free now
  }

  // CPU part: its (token, slot) pairs as a batch of top_k 1 (the kernel then skips the GPU's experts
  // entirely), summed back per token in slot order.
  std::exception_ptr cpu_error;
  int64_t P = 0;
  const double t0 = now_s();
  try {
    first_.assign(size_t(n + 1), 0);
    for (int64_t t = 0; t < n; ++t) {
      first_[size_t(t)] = P;
      for (int64_t j = 0; j < K; ++j) P += mask[ids[t * K + j]] ? 0 : 1;
    }
    first_[size_t(n)] = P;
    if (P > 0 && res.plan.gpu_experts == 0) {  // all on the CPU: the kernel as the CPU path calls it
      grow_pinned(size_t(n * H) * 4);
      moe_forward_routed(ew, x_host, n, ids, weights, top_k, y_pinned_);
    } else if (P > 0) {
      xv_.resize(size_t(P * H));
      yv_.resize(size_t(P * H));
      idv_.resize(size_t(P));
      wv_.resize(size_t(P));
      for (int64_t t = 0, p = 0; t < n; ++t)
        for (int64_t j = 0; j < K; ++j)
          if (!mask[ids[t * K + j]]) {
            idv_[size_t(p)] = ids[t * K + j];
            wv_[size_t(p)] = weights[t * K + j];
            ++p;
          }
      parallel_for(n, [&](int64_t t, int) {
        for (int64_t p = first_[size_t(t)]; p < first_[size_t(t + 1)]; ++p)
          std::memcpy(&xv_[size_t(p * H)], x_host + t * H, size_t(H) * 4);
      });
      moe_forward_routed(ew, xv_.data(), P, idv_.data(), wv_.data(), 1, yv_.data());
      grow_pinned(size_t(n * H) * 4);
      parallel_for(n, [&](int64_t t, int) {
        float* y = y_pinned_ + t * H;
        std::fill(y, y + H, 0.f);
        for (int64_t p = first_[size_t(t)]; p < first_[size_t(t + 1)]; ++p)
          for (int64_t i = 0; i < H; ++i) y[i] += yv_[size_t(p * H + i)];
      });
    }
  } catch (...) {
    cpu_error = std::current_exception();
  }
  res.cpu_ms = (now_s() - t0) * 1e3;
  if (gpu_thread.joinable()) gpu_thread.join();
  if (gpu_error) std::rethrow_exception(gpu_error);
  if (cpu_error) std::rethrow_exception(cpu_error);

  if (!on_gpu) {
    ++totals_.calls;
    totals_.cpu_experts += uint64_t(res.plan.cpu_experts);
    totals_.gpu_experts += uint64_t(res.plan.gpu_experts);
    totals_.cpu_ms += res.cpu_ms;
    totals_.predicted_cpu_ms += res.plan.cpu_ms;
    totals_.predicted_gpu_ms += res.plan.gpu_ms;
    gpu_time_pending_ = res.plan.gpu_experts > 0;
  }
  if (!on_gpu && mode == ExpertsPlacement::split && res.plan.gpu_experts > 0 && res.plan.cpu_experts > 0 && adapt()) {
    update_scale(cost_.split_cpu_x, res.cpu_ms, res.plan.cpu_ms);
    // With prefetched experts the GPU's measured time includes waiting for the prefetch's copies, which
    // the prediction leaves out (they belong to the previous layer's time): not a slowdown to learn.
    if (held == 0) pending_gpu_pred_ms_ = res.plan.gpu_ms;
  }

  mxc_stream* s = gpu_.compute_stream();
  if (P > 0) {
    float* dst = y_dev;
    if (res.plan.gpu_experts > 0) {
      grow_dev(size_t(n * H) * 4);
      dst = static_cast<float*>(y_dev_tmp_);
    }
    check(api, api.mxc_memcpy_h2d(dst, y_pinned_, size_t(n * H) * 4, s), "mxc_memcpy_h2d");
    check(api, api.mxc_event_record(y_up_done_, s), "mxc_event_record");
    if (dst != y_dev) check(api, api.mxc_add(y_dev, dst, y_dev, n * H, s), "mxc_add");
  } else if (res.plan.gpu_experts == 0 && n > 0) {
    check(api, api.mxc_memset(y_dev, 0, size_t(n * H) * 4, s), "mxc_memset");
  }
  return res;
}

}  // namespace mixtile
