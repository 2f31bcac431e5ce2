// Shared helpers of libmixtile-cuda-host, the CPU stand-in for libmixtile-cuda (C ABI in
// ../cuda/mixtile-cuda.h): per-thread errors, f16/bf16 rounding as the GPU does it, the "device"
// memory registry (so a buffer overrun fails with a message instead of corrupting memory), and
// stream submission (run now, or record while the stream captures a graph). Internal.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <vector>

#include "cuda/mixtile-cuda.h"

// A stream queues each operation and runs it at the next point where CUDA would have to have finished
// it (mxc_stream_sync, mxc_event_sync, a copy to pageable memory, mxc_free, ...; streams.cc), so code that
// reads a result before synchronising sees stale data here as on a GPU. MIXTILE_CUDA_HOST_SYNC=1 runs
// each operation when it is issued instead. While the stream captures a graph (mxc_graph_begin ..
// mxc_graph_end), operations are recorded as closures over their arguments and run when the graph is
// launched, reading whatever the pointers hold at that moment.
struct mxc_stream {
  std::deque<std::function<void()>> queue;  // issued, not yet run
  bool capturing = false;
  bool capture_failed = false;  // a call that CUDA forbids during capture ran (stream sync, ...)
  std::vector<std::function<void()>> captured;
};

namespace mixtile::cuda_host {

// Records a message for mxc_last_error() (per thread) and returns `st`.
mxc_status fail(mxc_status st, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define MXH_CHECK_ARG(cond, ...) \
  do {                           \
    if (!(cond)) return ::mixtile::cuda_host::fail(MXC_ERR_INVALID_ARG, __VA_ARGS__); \
  } while (0)
#define MXH_TRY(call)                  \
  do {                                 \
    mxc_status mxh_st_ = (call);       \
    if (mxh_st_ != MXC_OK) return mxh_st_; \
  } while (0)

// Queues `op` on stream s (NULL: the legacy default stream), runs it now (MIXTILE_CUDA_HOST_SYNC=1), or
// appends it to the stream's capture. Arguments are validated before this, at issue time, as the real
// library does; `op` itself cannot fail.
mxc_status submit(mxc_stream* s, std::function<void()> op);
// Runs the queued work of stream s (and, through its event waits, what it depends on) / of every stream.
void finish_stream(mxc_stream* s);
void finish_all();
// A call CUDA forbids while s captures (a sync, a copy to or from pageable memory): fails it and
// invalidates the capture, so mxc_graph_end fails too.
mxc_status fail_capture(mxc_stream* s, const char* what);
// The stream this thread is capturing (the real library captures in cudaStreamCaptureModeThreadLocal,
// where cudaMalloc and cudaFree are refused on the capturing thread), or null.
mxc_stream* capture_of_this_thread();
// The host side of a copy: pinned or registered memory stays asynchronous; pageable memory is read at
// issue (host to device) or waits for the stream (device to host), as in CUDA. A range that spans two
// pinned allocations or registrations is refused, as the driver refuses it.
enum class HostRange { pageable, pinned, spans };
HostRange host_range(const void* p, size_t bytes);

// [p, p + bytes) must lie inside one device allocation, pinned host allocation or registered host range
// (what a kernel may read or write). On a GPU a stray pointer faults at the next sync or silently
// corrupts memory; here it is an MXC_ERR_CUDA naming the function and the argument, at issue time.
mxc_status check_device_range(const void* p, size_t bytes, const char* fn, const char* arg);
#define MXH_DEV(p, bytes, fn) MXH_TRY(::mixtile::cuda_host::check_device_range((p), (bytes), fn, #p))

// Bytes of device memory the stand-in offers (MIXTILE_CUDA_HOST_VRAM, default 8 GiB) and in use.
uint64_t vram_capacity();
uint64_t vram_used();
// Reserves bytes that are accounted but never touched (the real library's cuBLAS workspace).
mxc_status vram_reserve(size_t bytes, const char* what);
void vram_release(size_t bytes);

// ---- f16 / bf16, round to nearest even as __float2half_rn / __float2bfloat16_rn ----
inline float bits_to_f32(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }
inline uint16_t f32_to_bf16(float f) {
  uint32_t x = f32_to_bits(f);
  if ((x & 0x7fffffff) > 0x7f800000) return 0x7fff;  // NaN, as CUDA's canonical NaN
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Element type T in {float, F16, BF16} as a storage tag: load/store through f32.
struct F16 {
  uint16_t v;
};
struct BF16 {
  uint16_t v;
};
inline float to_f32(float x) { return x; }
inline float to_f32(F16 x) { return f16_to_f32(x.v); }
inline float to_f32(BF16 x) { return bf16_to_f32(x.v); }
template <class T>
T from_f32(float x);
template <>
inline float from_f32<float>(float x) { return x; }
template <>
inline F16 from_f32<F16>(float x) { return F16{f32_to_f16(x)}; }
template <>
inline BF16 from_f32<BF16>(float x) { return BF16{f32_to_bf16(x)}; }

}  // namespace mixtile::cuda_host
