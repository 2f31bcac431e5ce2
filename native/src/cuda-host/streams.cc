// Streams, events and graphs of libmixtile-cuda-host.
// Execution: each stream (the NULL stream too) keeps a queue of issued operations. Work runs only where
// CUDA guarantees it has finished: mxc_stream_sync runs the stream's queue, mxc_event_sync runs the
// event's stream up to the event, a wait on an event runs the recording stream up to it first, and
// mxc_free / mxc_host_free / mxc_host_unregister run everything (cudaFree synchronises the device). So
// a missing synchronisation or cross-stream wait reads stale (or NaN-poisoned) data here, as it may on a
// GPU (which runs work as early as it can; here nothing runs early, so such a bug shows every time).
// MIXTILE_CUDA_HOST_SYNC=1 runs each operation when issued instead (for debugging the stand-in itself).
// CUDA's capture rules hold: synchronising a capturing stream, or mxc_malloc / mxc_free on the capturing
// thread, fails and invalidates the capture; so does a copy between it and pageable host memory (memory.cc).
// A graph is the list of closures recorded between mxc_graph_begin and mxc_graph_end; launching it
// queues them on the stream, to run with the values behind their pointers at that moment.
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <set>

#include "host-common.h"

using Clock = std::chrono::steady_clock;

struct mxc_event {
  bool timing = false;
  mxc_stream* stream = nullptr;  // of the latest record
  uint64_t recorded = 0;         // records issued
  uint64_t done = 0;             // records that ran
  Clock::time_point at;
};

struct mxc_graph {
  std::vector<std::function<void()>> ops;
};

namespace mixtile::cuda_host {

namespace {

bool run_each_when_issued() {
  static const bool sync = [] {
    const char* e = std::getenv("MIXTILE_CUDA_HOST_SYNC");
    return e && *e && *e != '0';
  }();
  return sync;
}

// One lock for all queues: operations may be issued from several threads, and running one may run
// another stream's queue (an event wait), so it is recursive.
std::recursive_mutex& exec_mutex() {
  static std::recursive_mutex m;
  return m;
}

mxc_stream& null_stream() {
  static mxc_stream s;
  return s;
}
mxc_stream* stream_or_null(mxc_stream* s) { return s ? s : &null_stream(); }

std::set<mxc_stream*>& live_streams() {
  static std::set<mxc_stream*> streams{&null_stream()};
  return streams;
}

// Runs the oldest queued operation of s; false if there is none. Caller holds exec_mutex.
bool run_one(mxc_stream* s) {
  if (s->queue.empty()) return false;
  std::function<void()> op = std::move(s->queue.front());
  s->queue.pop_front();  // before running: op may run other queues, never this one again
  op();
  return true;
}

// Runs `stream` (where e was recorded) until e's record number `target` has run.
void run_until(mxc_event* e, uint64_t target, mxc_stream* stream) {
  while (e->done < target && run_one(stream)) {
  }
}
void run_until(mxc_event* e) { run_until(e, e->recorded, e->stream); }

}  // namespace

mxc_status submit(mxc_stream* s, std::function<void()> op) {
  if (s && s->capturing) {
    s->captured.push_back(std::move(op));
    return MXC_OK;
  }
  if (run_each_when_issued()) {
    op();
    return MXC_OK;
  }
  std::lock_guard<std::recursive_mutex> lock(exec_mutex());
  stream_or_null(s)->queue.push_back(std::move(op));
  return MXC_OK;
}

void finish_stream(mxc_stream* s) {
  std::lock_guard<std::recursive_mutex> lock(exec_mutex());
  mxc_stream* q = stream_or_null(s);
  while (run_one(q)) {
  }
}

void finish_all() {
  std::lock_guard<std::recursive_mutex> lock(exec_mutex());
  for (mxc_stream* s : live_streams())
    while (run_one(s)) {
    }
}

static thread_local mxc_stream* t_capture = nullptr;
mxc_stream* capture_of_this_thread() { return t_capture; }

mxc_status fail_capture(mxc_stream* s, const char* what) {
  s->capture_failed = true;
  return fail(MXC_ERR_CUDA, "%s: cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing "
              "(the capture is now invalid)", what);
}

}  // namespace mixtile::cuda_host

using namespace mixtile::cuda_host;

extern "C" {

mxc_status mxc_stream_create(mxc_stream** out) {
  MXH_CHECK_ARG(out, "mxc_stream_create: null output pointer");
  *out = new mxc_stream();
  std::lock_guard<std::recursive_mutex> lock(exec_mutex());
  live_streams().insert(*out);
  return MXC_OK;
}

mxc_status mxc_stream_destroy(mxc_stream* s) {
  if (!s) return MXC_OK;
  finish_stream(s);  // CUDA lets queued work complete
  std::lock_guard<std::recursive_mutex> lock(exec_mutex());
  live_streams().erase(s);
  delete s;
  return MXC_OK;
}

mxc_status mxc_stream_sync(mxc_stream* s) {
  if (s && s->capturing) return fail_capture(s, "cudaStreamSynchronize");
  finish_stream(s);
  return MXC_OK;
}

mxc_status mxc_stream_wait_event(mxc_stream* s, mxc_event* e) {
  MXH_CHECK_ARG(e, "mxc_stream_wait_event: null event");
  std::lock_guard<std::recursive_mutex> lock(exec_mutex());
  if (e->recorded == 0) return MXC_OK;  // never recorded: nothing to wait for, as in CUDA
  const uint64_t target = e->recorded;  // the record issued before this call, not a later one
  if (s && s->capturing) return MXC_OK;  // issue order within the capture already holds
  mxc_stream* from = e->stream;
  return submit(s, [e, target, from] { run_until(e, target, from); });
}

mxc_status mxc_event_create(mxc_event** out, int timing) {
  MXH_CHECK_ARG(out, "mxc_event_create: null output pointer");
  *out = new mxc_event();
  (*out)->timing = timing != 0;
  return MXC_OK;
}

mxc_status mxc_event_destroy(mxc_event* e) {
  if (!e) return MXC_OK;
  {
    std::lock_guard<std::recursive_mutex> lock(exec_mutex());
    run_until(e);  // queued work must not touch a freed event
  }
  delete e;
  return MXC_OK;
}

mxc_status mxc_event_record(mxc_event* e, mxc_stream* s) {
  MXH_CHECK_ARG(e, "mxc_event_record: null event");
  std::lock_guard<std::recursive_mutex> lock(exec_mutex());
  if (s && s->capturing) {
    return submit(s, [e] {  // each replay records it again
      e->done = e->recorded = e->recorded + 1;
      e->at = Clock::now();
    });
  }
  e->stream = stream_or_null(s);
  const uint64_t target = ++e->recorded;
  return submit(s, [e, target] {
    e->done = target;
    e->at = Clock::now();
  });
}

mxc_status mxc_event_sync(mxc_event* e) {
  MXH_CHECK_ARG(e, "mxc_event_sync: null event");
  std::lock_guard<std::recursive_mutex> lock(exec_mutex());
  run_until(e);
  return MXC_OK;
}

// Not done yet: says so once and lets the work progress, so a polling loop ends as on a GPU.
mxc_status mxc_event_query(mxc_event* e, int* done) {
  MXH_CHECK_ARG(e && done, "mxc_event_query: null argument");
  std::lock_guard<std::recursive_mutex> lock(exec_mutex());
  *done = e->done >= e->recorded;
  if (!*done) run_until(e);
  return MXC_OK;
}

mxc_status mxc_event_elapsed_ms(mxc_event* start, mxc_event* end, float* ms) {
  MXH_CHECK_ARG(start && end && ms, "mxc_event_elapsed_ms: null argument");
  if (!start->timing || !end->timing)
    return fail(MXC_ERR_CUDA, "cudaEventElapsedTime: cudaErrorInvalidResourceHandle: an event was created without "
                "timing (timing = 0)");
  std::lock_guard<std::recursive_mutex> lock(exec_mutex());
  if (start->recorded == 0 || end->recorded == 0)
    return fail(MXC_ERR_CUDA, "cudaEventElapsedTime: cudaErrorInvalidResourceHandle: an event was never recorded");
  if (start->done < start->recorded || end->done < end->recorded)
    return fail(MXC_ERR_CUDA, "cudaEventElapsedTime: cudaErrorNotReady: an event has not completed (sync it first)");
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return MXC_OK;
}

mxc_status mxc_graph_begin(mxc_stream* s) {
  MXH_CHECK_ARG(s, "mxc_graph_begin: capture needs a created stream, not the NULL stream");
  if (s->capturing)
    return fail(MXC_ERR_CUDA, "cudaStreamBeginCapture: cudaErrorIllegalState: the stream is already capturing");
  s->capturing = true;
  s->capture_failed = false;
  s->captured.clear();
  t_capture = s;
  return MXC_OK;
}

mxc_status mxc_graph_end(mxc_stream* s, mxc_graph** out) {
  MXH_CHECK_ARG(s && out, "mxc_graph_end: null argument");
  *out = nullptr;
  if (!s->capturing)
    return fail(MXC_ERR_CUDA, "cudaStreamEndCapture (a call in the captured region failed?): cudaErrorIllegalState: "
                "the stream is not capturing");
  s->capturing = false;
  if (t_capture == s) t_capture = nullptr;
  auto ops = std::move(s->captured);
  s->captured.clear();
  if (s->capture_failed)
    return fail(MXC_ERR_CUDA, "cudaStreamEndCapture (a call in the captured region failed?): "
                "cudaErrorStreamCaptureInvalidated: the capture was invalidated by an earlier call");
  *out = new mxc_graph{std::move(ops)};
  return MXC_OK;
}

mxc_status mxc_graph_launch(mxc_graph* g, mxc_stream* s) {
  MXH_CHECK_ARG(g, "mxc_graph_launch: null graph");
  for (const auto& op : g->ops) submit(s, op);  // copies: the graph may be destroyed before they run
  return MXC_OK;
}

mxc_status mxc_graph_destroy(mxc_graph* g) {
  delete g;
  return MXC_OK;
}

}  // extern "C"
