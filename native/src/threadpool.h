// Persistent worker pool shared by every CPU kernel. Workers spin briefly after a job before
// sleeping, so decode's many small calls do not each pay a futex wake.
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

}  // namespace mixtile
