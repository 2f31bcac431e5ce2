// Streams, events and graphs of libmixtile-cuda-host. Work runs synchronously when issued, so
// synchronising is a no-op and an event is done as soon as it is recorded; what CUDA forbids during a
// capture (synchronising the capturing stream) fails here too, so the engine's graph code is checked.
// A graph is the list of closures recorded between mxc_graph_begin and mxc_graph_end; launching it
// runs them in order with the values behind their pointers at that moment.
#include <chrono>

#include "host-common.h"

using Clock = std::chrono::steady_clock;

struct mxc_event {
  bool timing = false;
  bool recorded = false;
  Clock::time_point at;
};

struct mxc_graph {
  std::vector<std::function<void()>> ops;
};

using namespace mixtile::cuda_host;

static mxc_status capture_forbidden(mxc_stream* s, const char* what) {
  s->capture_failed = true;
  return fail(MXC_ERR_CUDA, "%s: cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing "
              "(the capture is now invalid)", what);
}

extern "C" {

mxc_status mxc_stream_create(mxc_stream** out) {
  MXH_CHECK_ARG(out, "mxc_stream_create: null output pointer");
  *out = new mxc_stream();
  return MXC_OK;
}

mxc_status mxc_stream_destroy(mxc_stream* s) {
  delete s;
  return MXC_OK;
}

mxc_status mxc_stream_sync(mxc_stream* s) {
  if (s && s->capturing) return capture_forbidden(s, "cudaStreamSynchronize");
  return MXC_OK;
}

mxc_status mxc_stream_wait_event(mxc_stream* s, mxc_event* e) {
  MXH_CHECK_ARG(e, "mxc_stream_wait_event: null event");
  (void)s;  // the event's work is already done, or (captured) ordered before this point
  return MXC_OK;
}

mxc_status mxc_event_create(mxc_event** out, int timing) {
  MXH_CHECK_ARG(out, "mxc_event_create: null output pointer");
  *out = new mxc_event();
  (*out)->timing = timing != 0;
  return MXC_OK;
}

mxc_status mxc_event_destroy(mxc_event* e) {
  delete e;
  return MXC_OK;
}

mxc_status mxc_event_record(mxc_event* e, mxc_stream* s) {
  MXH_CHECK_ARG(e, "mxc_event_record: null event");
  return submit(s, [e] {
    e->recorded = true;
    e->at = Clock::now();
  });
}

mxc_status mxc_event_sync(mxc_event* e) {
  MXH_CHECK_ARG(e, "mxc_event_sync: null event");
  return MXC_OK;
}

mxc_status mxc_event_query(mxc_event* e, int* done) {
  MXH_CHECK_ARG(e && done, "mxc_event_query: null argument");
  *done = 1;
  return MXC_OK;
}

mxc_status mxc_event_elapsed_ms(mxc_event* start, mxc_event* end, float* ms) {
  MXH_CHECK_ARG(start && end && ms, "mxc_event_elapsed_ms: null argument");
  if (!start->timing || !end->timing)
    return fail(MXC_ERR_CUDA, "cudaEventElapsedTime: cudaErrorInvalidResourceHandle: an event was created without "
                "timing (timing = 0)");
  if (!start->recorded || !end->recorded)
    return fail(MXC_ERR_CUDA, "cudaEventElapsedTime: cudaErrorInvalidResourceHandle: an event was never recorded");
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
  return MXC_OK;
}

mxc_status mxc_graph_end(mxc_stream* s, mxc_graph** out) {
  MXH_CHECK_ARG(s && out, "mxc_graph_end: null argument");
  *out = nullptr;
  if (!s->capturing)
    return fail(MXC_ERR_CUDA, "cudaStreamEndCapture (a call in the captured region failed?): cudaErrorIllegalState: "
                "the stream is not capturing");
  s->capturing = false;
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
  if (s && s->capturing) {  // a graph launched into a capture becomes part of it
    for (auto& op : g->ops) s->captured.push_back(op);
    return MXC_OK;
  }
  for (auto& op : g->ops) op();
  return MXC_OK;
}

mxc_status mxc_graph_destroy(mxc_graph* g) {
  delete g;
  return MXC_OK;
}

}  // extern "C"
