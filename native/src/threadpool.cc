// Persistent pool: workers spin on a generation counter for a short while after each job, then
// sleep on a condition variable. Tasks are handed out by an atomic counter (dynamic balance).
#include "threadpool.h"

#include <immintrin.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace mixtile {
namespace {

// An idle worker first spins (pause, ~10-40 ns each: tens of microseconds, longer than the gap
// between decode's back-to-back phases), then yields its core a number of times (an
// oversubscribed box can run others meanwhile), then sleeps on the condition variable.
constexpr int SPIN_PAUSES = 4000;
constexpr int SPIN_YIELDS = 200;
// The caller waiting for workers to finish a job pauses this often before it yields instead.
constexpr int YIELD_AFTER = 200;

thread_local bool t_in_task = false;
thread_local int t_thread = 0;  // pool index of the thread running a task

int physical_cores() {
  std::set<std::pair<std::string, std::string>> cores;
  for (unsigned cpu = 0; cpu < 4096; ++cpu) {
    std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream core(base + "core_id"), pkg(base + "physical_package_id");
    if (!core) {
      if (cpu > 0) break;
      continue;
    }
    std::string c, p;
    core >> c;
    pkg >> p;
    cores.insert({p, c});
  }
  int n = int(cores.size());
  if (n <= 0) n = int(std::thread::hardware_concurrency());
  return n > 0 ? n : 1;
}

class Pool {
 public:
  explicit Pool(int n) { start(n); }
  ~Pool() { stop(); }

  int size() const { return n_threads_; }

  void resize(int n) {
    stop();
    start(n);
  }

  void run(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
    std::lock_guard<std::mutex> call_lock(call_mutex_);
    fn_ = &fn;
    n_tasks_ = n_tasks;
    next_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    pending_.store(int(workers_.size()), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(m_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    if (sleepers_.load(std::memory_order_acquire) > 0) cv_.notify_all();
    work(0);
    // Wait for the workers; past a short spin, yield so an oversubscribed box (more runnable
    // threads than cores) can run the worker we are waiting for instead of us.
    for (int spins = 0; pending_.load(std::memory_order_acquire) > 0; ++spins) {
      if (spins < YIELD_AFTER) _mm_pause();
      else std::this_thread::yield();
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void start(int n) {
    n_threads_ = n;
    quit_ = false;
    // Workers start from the generation current now: a job posted before a new thread first
    // runs must still count as new for it.
    uint64_t g0 = generation_.load(std::memory_order_acquire);
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, g0] { loop(i, g0); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      quit_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void work(int thread) {
    t_in_task = true;
    t_thread = thread;
    for (;;) {
      int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= n_tasks_) break;
      try {
        (*fn_)(t, thread);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
    t_in_task = false;
  }

  void loop(int thread, uint64_t seen) {
    for (;;) {
      int spins = 0;
      while (generation_.load(std::memory_order_acquire) == seen && spins < SPIN_PAUSES + SPIN_YIELDS) {
        if (spins < SPIN_PAUSES) _mm_pause();
        else std::this_thread::yield();
        ++spins;
      }
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lk(m_);
        sleepers_.fetch_add(1, std::memory_order_acq_rel);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_acq_rel);
      }
      seen = generation_.load(std::memory_order_acquire);
      if (quit_) return;
      work(thread);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  int n_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex call_mutex_, m_, err_mutex_;
  std::condition_variable cv_;
  // Each hot atomic on its own cache line: idle workers spin reading generation_, and every task
  // hand-out (next_) or completion (pending_) would otherwise invalidate the line they spin on.
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  alignas(64) std::atomic<int> pending_{0};
  alignas(64) std::atomic<int64_t> next_{0};
  int64_t n_tasks_ = 0;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  std::exception_ptr error_;
  bool quit_ = false;
};

int default_threads() {
  if (const char* env = std::getenv("MIXTILE_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1) return n > 256 ? 256 : n;
  }
  return physical_cores();
}

Pool& pool() {
  static Pool p(default_threads());
  return p;
}

}  // namespace

int pool_threads() { return pool().size(); }

void set_threads(int n) {
  if (n < 1) n = 1;
  if (n > 256) n = 256;
  if (n != pool().size()) pool().resize(n);
}

void parallel_for(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn) {
  if (n_tasks <= 0) return;
  if (t_in_task || n_tasks == 1 || pool().size() == 1) {
    // Serial: nested call (keeps the running task's thread index, so per-thread scratch stays
    // private), or nothing to share.
    int thread = t_in_task ? t_thread : 0;
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, thread);
    return;
  }
  pool().run(n_tasks, fn);
}

}  // namespace mixtile
