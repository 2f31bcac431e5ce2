// Persistent pool: workers spin on a generation counter for a short while after each job, then
// sleep on a condition variable. Tasks are handed out by an atomic counter (dynamic balance), and
// the caller waits for the tasks to be done, not for every worker to check in: a worker the
// scheduler has not run yet (an oversubscribed box) costs nothing unless it holds a task.
#include "threadpool.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
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
// MIXTILE_POOL_SPIN (pauses, default 4000) lengthens the spin: hybrid decode leaves the pool idle for the GPU's
// part of every layer (~50-90 us), and a worker that went to sleep costs a wake-up at the next experts call
// (hybrid decode opens a hot window instead, pool_keep_hot: bounded in time rather than in pauses).
constexpr int SPIN_PAUSES_DEFAULT = 4000;
constexpr int SPIN_YIELDS = 200;
int spin_pauses() {
  static const int n = [] {
    const char* e = std::getenv("MIXTILE_POOL_SPIN");
    const int v = e ? std::atoi(e) : 0;
    return v > 0 ? v : SPIN_PAUSES_DEFAULT;
  }();
  return n;
}
// Past its plain spin, a worker inside a hot window (pool_keep_hot) reads the clock this often (in pauses).
constexpr int HOT_CHECK_PAUSES = 64;
uint64_t steady_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}
// The caller waiting for claimed tasks to finish pauses this often before it yields instead.
constexpr int YIELD_AFTER = 200;
// Tasks per job are counted in 32 bits of the claim word; larger calls run as several jobs.
constexpr int64_t MAX_JOB_TASKS = int64_t(1) << 30;

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

using TaskFn = std::function<void(int64_t, int)>;

// How a job is handed out. claim_ = (job << 32) | next task index: a claim is one fetch_add, and
// its result says which job the index belongs to. meta_ = (job << 32) | task count of the current
// job. A claim counts only if its job is meta_'s job and its index is below the count. Why that is
// safe without a lock: the caller publishes fn_ and meta_ before it opens claim_ (release), so a
// claim of job J sees J's meta_ and fn_; and job J cannot end (nor meta_/fn_ change) while a
// claimed index below its count is not yet done. A late claim on an ended job either carries the
// old job number (meta_ moved on: ignored) or an index past the count (ignored).
class Pool {
 public:
  explicit Pool(int n) { start(n); }
  ~Pool() { stop(); }

  int size() const { return n_threads_; }

  void resize(int n) {
    stop();
    start(n);
  }

  void keep_hot(uint64_t us) { hot_until_.store(steady_ns() + us * 1000, std::memory_order_relaxed); }
  int sleeping() const { return sleepers_.load(std::memory_order_acquire); }

  void stall_for_test(int worker, int us) {
    stall_us_.store(us, std::memory_order_relaxed);
    stall_worker_.store(us > 0 ? worker : -1, std::memory_order_relaxed);
  }

  void run(int64_t n_tasks, const TaskFn& fn) {
    std::lock_guard<std::mutex> call_lock(call_mutex_);
    const uint64_t job = ++job_ & 0xffffffffu;
    error_ = nullptr;
    done_.store(0, std::memory_order_relaxed);
    fn_.store(&fn, std::memory_order_relaxed);
    meta_.store(job << 32 | uint64_t(n_tasks), std::memory_order_relaxed);
    claim_.store(job << 32, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lk(m_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    if (sleepers_.load(std::memory_order_acquire) > 0) cv_.notify_all();
    work(0);
    // Wait for tasks other threads claimed; past a short spin, yield so an oversubscribed box (more
    // runnable threads than cores) can run the worker we are waiting for instead of us.
    for (int spins = 0; done_.load(std::memory_order_acquire) < n_tasks; ++spins) {
      if (spins < YIELD_AFTER) _mm_pause();
      else std::this_thread::yield();
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void start(int n) {
    n_threads_ = n;
    quit_.store(false, std::memory_order_relaxed);
    // Workers start from the generation current now: a job posted before a new thread first
    // runs must still count as new for it.
    uint64_t g0 = generation_.load(std::memory_order_acquire);
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, g0] { loop(i, g0); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      quit_.store(true, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  // Claims and runs tasks of the current job until none is left.
  void work(int thread) {
    t_in_task = true;
    t_thread = thread;
    for (;;) {
      const uint64_t c = claim_.fetch_add(1, std::memory_order_acq_rel);
      const uint64_t m = meta_.load(std::memory_order_acquire);
      const uint64_t index = c & 0xffffffffu;
      if ((c >> 32) != (m >> 32) || index >= (m & 0xffffffffu)) break;
      try {
        (*fn_.load(std::memory_order_acquire))(int64_t(index), thread);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mutex_);
        if (!error_) error_ = std::current_exception();
      }
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
    t_in_task = false;
  }

  void loop(int thread, uint64_t seen) {
    for (;;) {
      int spins = 0, yields = 0;
      const int pauses = spin_pauses();
      bool hot = false;
      while (generation_.load(std::memory_order_acquire) == seen) {
        if (spins >= pauses && (spins - pauses) % HOT_CHECK_PAUSES == 0) {
          hot = steady_ns() < hot_until_.load(std::memory_order_relaxed);
        }
        if (spins < pauses || hot) {
          _mm_pause();
          ++spins;
        } else if (yields++ < SPIN_YIELDS) {
          std::this_thread::yield();
        } else {
          break;
        }
      }
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lk(m_);
        sleepers_.fetch_add(1, std::memory_order_acq_rel);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_acq_rel);
      }
      seen = generation_.load(std::memory_order_acquire);
      if (quit_.load(std::memory_order_acquire)) return;
      if (stall_worker_.load(std::memory_order_relaxed) == thread) {
        std::this_thread::sleep_for(std::chrono::microseconds(stall_us_.load(std::memory_order_relaxed)));
      }
      work(thread);
    }
  }

  int n_threads_ = 1;
  uint64_t job_ = 0;  // caller side only (under call_mutex_)
  std::vector<std::thread> workers_;
  std::mutex call_mutex_, m_, err_mutex_;
  std::condition_variable cv_;
  // Each hot atomic on its own cache line: idle workers spin reading generation_, and every task
  // claim (claim_) or completion (done_) would otherwise invalidate the line they spin on.
  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  alignas(64) std::atomic<uint64_t> claim_{0};
  alignas(64) std::atomic<int64_t> done_{0};
  alignas(64) std::atomic<uint64_t> meta_{0};  // written once per job, read by every claim
  alignas(64) std::atomic<uint64_t> hot_until_{0};  // steady_ns() deadline of the hot window
  std::atomic<const TaskFn*> fn_{nullptr};
  std::exception_ptr error_;
  std::atomic<bool> quit_{false};
  std::atomic<int> stall_worker_{-1}, stall_us_{0};
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

void pool_keep_hot(uint64_t us) {
  if (us > 0) pool().keep_hot(us);
}

int pool_sleeping_workers_for_test() { return pool().sleeping(); }

void pool_stall_worker_for_test(int worker, int us) { pool().stall_for_test(worker, us); }

void parallel_for(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn) {
  if (n_tasks <= 0) return;
  if (t_in_task || n_tasks == 1 || pool().size() == 1) {
    // Serial: nested call (keeps the running task's thread index, so per-thread scratch stays
    // private), or nothing to share.
    int thread = t_in_task ? t_thread : 0;
    for (int64_t t = 0; t < n_tasks; ++t) fn(t, thread);
    return;
  }
  if (n_tasks <= MAX_JOB_TASKS) {
    pool().run(n_tasks, fn);
    return;
  }
  for (int64_t t0 = 0; t0 < n_tasks; t0 += MAX_JOB_TASKS) {
    const int64_t count = std::min(MAX_JOB_TASKS, n_tasks - t0);
    pool().run(count, [&](int64_t t, int thread) { fn(t0 + t, thread); });
  }
}

}  // namespace mixtile
