// JS exports for the thread pool's tests: poolRunCounts(nTasks) runs one parallel_for and returns
// how often each task ran (Int32Array) plus the highest thread index seen; poolStallWorker(worker,
// us) makes a pool worker sleep before claiming work, as one whose core another process holds;
// poolKeepHot(us) opens a hot window (pool_keep_hot), poolSleepingWorkers() counts workers asleep.
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>

#include "napi-registry.h"
#include "napi-util.h"
#include "threadpool.h"

namespace mixtile {
namespace {

Napi::Value pool_run_counts_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t n = int_arg(info[0], int64_t(1) << 24, "poolRunCounts");
  std::unique_ptr<std::atomic<int32_t>[]> counts(new std::atomic<int32_t>[size_t(n)]);
  for (int64_t i = 0; i < n; ++i) counts[size_t(i)].store(0);
  std::atomic<int> max_thread{0};
  parallel_for(n, [&](int64_t t, int thread) {
    counts[size_t(t)].fetch_add(1);
    int m = max_thread.load();
    while (thread > m && !max_thread.compare_exchange_weak(m, thread)) {
    }
  });
  Napi::Int32Array out = Napi::Int32Array::New(env, size_t(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = counts[size_t(i)].load();
  Napi::Object o = Napi::Object::New(env);
  o.Set("counts", out);
  o.Set("maxThread", max_thread.load());
  return o;
}

Napi::Value pool_stall_worker_js(const Napi::CallbackInfo& info) {
  const int worker = int(int_arg(info[0], 255, "poolStallWorker"));
  const int us = int(int_arg(info[1], 10'000'000, "poolStallWorker"));
  if (worker < 1 || worker >= pool_threads()) {
    throw Napi::RangeError::New(info.Env(), "poolStallWorker: worker must be in [1, " + std::to_string(pool_threads()) + ")");
  }
  pool_stall_worker_for_test(worker, us);
  return info.Env().Undefined();
}

Napi::Value pool_keep_hot_js(const Napi::CallbackInfo& info) {
  pool_keep_hot(uint64_t(int_arg(info[0], 60'000'000, "poolKeepHot")));
  return info.Env().Undefined();
}

Napi::Value pool_sleeping_workers_js(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), pool_sleeping_workers_for_test());
}

}  // namespace

MIXTILE_EXPORT("poolKeepHot", pool_keep_hot_js);
MIXTILE_EXPORT("poolSleepingWorkers", pool_sleeping_workers_js);
MIXTILE_EXPORT("poolRunCounts", pool_run_counts_js);
MIXTILE_EXPORT("poolStallWorker", pool_stall_worker_js);

}  // namespace mixtile
