// Persistent worker pool shared by every CPU kernel. Workers spin briefly after a job before
// sleeping, so decode's many small calls do not each pay a futex wake. A job waits only for the
// tasks that were claimed: a worker that is descheduled (another process on its core) before it
// claims anything does not hold the job up; the caller and the others take its share.
#pragma once
#include <cstdint>
#include <functional>

namespace mixtile {

// Threads used by parallel_for (the caller counts as one). Default: physical cores, or
// MIXTILE_THREADS when set.
int pool_threads();
// Resizes the pool (n >= 1; clamped to 256). Not thread-safe against running jobs.
void set_threads(int n);

// Runs fn(task, thread) for task in [0, n_tasks), tasks handed out dynamically; `thread` is in
// [0, pool_threads()) and unique among concurrently running calls (index per-thread scratch with it).
// Returns when all tasks finished. A call made from inside a task runs serially on that thread.
// An exception thrown by fn is rethrown here (the first one) after the others finish.
void parallel_for(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn);

// A hot window: idle workers keep spinning (no sleep) until `us` microseconds from now, past their usual short
// spin. Hybrid decode opens one per MoE layer: the GPU's part of a layer and the output head leave the pool
// idle for 0.1-1 ms, and a worker that fell asleep costs a wake-up at the next experts call; a server at rest
// stops spinning once the window closes. 0 leaves the window as it is.
void pool_keep_hot(uint64_t us);

// Tests only: workers asleep on the condition variable now (0 .. pool_threads()-1).
int pool_sleeping_workers_for_test();

// Tests only: pool worker `worker` (1 .. pool_threads()-1) sleeps `us` microseconds each time it
// wakes for a job, before it claims a task, as a worker whose core another process holds; 0 ends it.
void pool_stall_worker_for_test(int worker, int us);

}  // namespace mixtile
