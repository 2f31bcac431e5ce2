// Memory of libmixtile-cuda-host: "device" memory is 64-byte-aligned host memory counted against a
// capacity (MIXTILE_CUDA_HOST_VRAM bytes, default 8 GiB), so the engine's VRAM accounting and its
// out-of-memory paths run as on a GPU. Every allocation is registered, so a kernel argument or copy
// that runs past its buffer is reported (check_device_range) instead of corrupting memory. Fresh
// device memory is filled with 0xff bytes (NaN in f32/f16/bf16): cudaMalloc gives no zeros either, and
// this way a read of never-written memory shows up in tests.
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "host-common.h"

namespace mixtile::cuda_host {

namespace {

enum class Kind { device, pinned, registered };
const char* kind_name(Kind k) {
  return k == Kind::device ? "device allocation" : k == Kind::pinned ? "pinned host allocation" : "registered host range";
}

struct Region {
  size_t bytes;
  Kind kind;
};

struct Registry {
  std::mutex mu;
  std::map<uintptr_t, Region> regions;  // by start address; ranges never overlap
  uint64_t used = 0;                    // device bytes, cuBLAS workspaces included
  uint64_t peak = 0;
  ~Registry();
};

Registry& registry() {
  static Registry r;
  return r;
}

// MIXTILE_CUDA_HOST_REPORT=1: the peak at exit, to compare with a placement's VRAM estimate (cuda-fit.ts).
Registry::~Registry() {
  const char* e = std::getenv("MIXTILE_CUDA_HOST_REPORT");
  if (e && *e && *e != '0')
    std::fprintf(stderr, "libmixtile-cuda-host: peak device memory %" PRIu64 " bytes (%.1f MiB) of %.1f MiB\n", peak,
                 peak / 1048576.0, vram_capacity() / 1048576.0);
}

uint64_t read_capacity() {
  const char* e = std::getenv("MIXTILE_CUDA_HOST_VRAM");
  if (e && *e) {
    char* end = nullptr;
    unsigned long long v = std::strtoull(e, &end, 10);
    if (end && *end == '\0' && v > 0) return v;
  }
  return uint64_t(8) << 30;
}

// The region holding address p, or regions.end(). Caller holds the lock.
std::map<uintptr_t, Region>::iterator region_at(Registry& r, uintptr_t p) {
  auto it = r.regions.upper_bound(p);
  if (it == r.regions.begin()) return r.regions.end();
  --it;
  return p < it->first + it->second.bytes ? it : r.regions.end();
}

constexpr double MIB = 1048576.0;

void* aligned(size_t bytes) {
  void* p = nullptr;
  size_t rounded = (bytes + 63) / 64 * 64;
  return posix_memalign(&p, 64, rounded) == 0 ? p : nullptr;
}

mxc_status add_region(void* p, size_t bytes, Kind kind) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.regions[reinterpret_cast<uintptr_t>(p)] = Region{bytes, kind};
  return MXC_OK;
}

// Removes the region starting exactly at p of kind `kind`; false if there is none.
bool remove_region(void* p, Kind kind, size_t* bytes) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.regions.find(reinterpret_cast<uintptr_t>(p));
  if (it == r.regions.end() || it->second.kind != kind) return false;
  *bytes = it->second.bytes;
  if (kind == Kind::device) r.used -= it->second.bytes;
  r.regions.erase(it);
  return true;
}

}  // namespace

uint64_t vram_capacity() {
  static const uint64_t cap = read_capacity();
  return cap;
}

uint64_t vram_used() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  return r.used;
}

static mxc_status out_of_memory(const char* what, size_t bytes, uint64_t used) {
  return fail(MXC_ERR_OUT_OF_MEMORY, "%s: out of device memory: asked for %.1f MiB, %.1f MiB free of %.1f MiB "
              "(host stand-in; MIXTILE_CUDA_HOST_VRAM sets its size)",
              what, bytes / MIB, (vram_capacity() - used) / MIB, vram_capacity() / MIB);
}

mxc_status vram_reserve(size_t bytes, const char* what) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (bytes > vram_capacity() - r.used) return out_of_memory(what, bytes, r.used);
  r.used += bytes;
  if (r.used > r.peak) r.peak = r.used;
  return MXC_OK;
}

void vram_release(size_t bytes) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.used -= bytes;
}

mxc_status check_device_range(const void* p, size_t bytes, const char* fn, const char* arg) {
  if (bytes == 0) return MXC_OK;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = region_at(r, a);
  if (it == r.regions.end()) {
    return fail(MXC_ERR_CUDA, "%s: %s = %p is not device memory (on a GPU: cudaErrorIllegalAddress; host stand-in "
                "check)", fn, arg, p);
  }
  const uint64_t end = uint64_t(it->first) + it->second.bytes;
  if (a + bytes > end) {
    return fail(MXC_ERR_CUDA, "%s: %s: %zu bytes from %p run %" PRIu64 " bytes past the end of its %s of %zu bytes "
                "(on a GPU: an out-of-bounds access; host stand-in check)",
                fn, arg, bytes, p, uint64_t(a + bytes - end), kind_name(it->second.kind), it->second.bytes);
  }
  return MXC_OK;
}

HostRange host_range(const void* p, size_t bytes) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = region_at(r, a);
  if (it == r.regions.end() || it->second.kind == Kind::device) return HostRange::pageable;
  if (a + bytes <= it->first + it->second.bytes) return HostRange::pinned;
  // Past the end of its registration: into another one is what the driver refuses (seen on the H100);
  // into plain memory (a registration rounded out to pages reaches into a neighbouring heap buffer) is
  // taken as pageable.
  auto next = std::next(it);
  return next != r.regions.end() && next->first < a + bytes && next->second.kind != Kind::device ? HostRange::spans
                                                                                                 : HostRange::pageable;
}

static mxc_status fail_span(const char* fn, const void* p, size_t bytes) {
  return fail(MXC_ERR_CUDA, "%s: cudaErrorInvalidValue: the host range [%p, +%zu) starts in pinned or registered "
              "memory and runs into another (a copy may not span two host registrations; copy per registration)",
              fn, p, bytes);
}

}  // namespace mixtile::cuda_host

using namespace mixtile::cuda_host;

extern "C" {

mxc_status mxc_malloc(void** ptr, size_t bytes) {
  MXH_CHECK_ARG(ptr, "mxc_malloc: null output pointer");
  *ptr = nullptr;
  if (bytes == 0) return MXC_OK;
  if (mxc_stream* c = capture_of_this_thread()) return fail_capture(c, "cudaMalloc");
  MXH_TRY(vram_reserve(bytes, "cudaMalloc"));
  void* p = aligned(bytes);
  if (!p) {
    vram_release(bytes);
    return fail(MXC_ERR_OUT_OF_MEMORY, "cudaMalloc: out of device memory: asked for %.1f MiB (the host stand-in "
                "could not allocate it from RAM)", bytes / MIB);
  }
  std::memset(p, 0xff, bytes);
  add_region(p, bytes, Kind::device);
  *ptr = p;
  return MXC_OK;
}

mxc_status mxc_free(void* ptr) {
  if (!ptr) return MXC_OK;
  if (mxc_stream* c = capture_of_this_thread()) return fail_capture(c, "cudaFree");
  finish_all();  // cudaFree synchronises the device
  size_t bytes = 0;
  if (!remove_region(ptr, Kind::device, &bytes))
    return fail(MXC_ERR_CUDA, "cudaFree: cudaErrorInvalidValue: %p is not the start of a device allocation "
                "(freed twice?)", ptr);
  std::free(ptr);
  return MXC_OK;
}

mxc_status mxc_host_alloc(void** ptr, size_t bytes) {
  MXH_CHECK_ARG(ptr, "mxc_host_alloc: null output pointer");
  *ptr = nullptr;
  if (bytes == 0) return MXC_OK;
  void* p = aligned(bytes);
  if (!p)
    return fail(MXC_ERR_OUT_OF_MEMORY, "cudaHostAlloc: could not pin %.1f MiB of host memory (check ulimit -l and "
                "free RAM)", bytes / MIB);
  add_region(p, bytes, Kind::pinned);
  *ptr = p;
  return MXC_OK;
}

mxc_status mxc_host_free(void* ptr) {
  if (!ptr) return MXC_OK;
  finish_all();  // as cudaFreeHost: queued copies may still use it
  size_t bytes = 0;
  if (!remove_region(ptr, Kind::pinned, &bytes))
    return fail(MXC_ERR_CUDA, "cudaFreeHost: cudaErrorInvalidValue: %p is not the start of a pinned host "
                "allocation", ptr);
  std::free(ptr);
  return MXC_OK;
}

mxc_status mxc_host_register(void* ptr, size_t bytes) {
  MXH_CHECK_ARG(ptr && bytes, "mxc_host_register: null or empty range");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  const uintptr_t a = reinterpret_cast<uintptr_t>(ptr);
  auto next = r.regions.lower_bound(a);
  if (region_at(r, a) != r.regions.end() || (next != r.regions.end() && next->first < a + bytes))
    return fail(MXC_ERR_CUDA, "cudaHostRegister: cudaErrorHostMemoryAlreadyRegistered: [%p, +%zu) overlaps "
                "memory already registered or allocated", ptr, bytes);
  r.regions[a] = Region{bytes, Kind::registered};
  return MXC_OK;
}

mxc_status mxc_host_unregister(void* ptr) {
  MXH_CHECK_ARG(ptr, "mxc_host_unregister: null pointer");
  finish_all();  // queued copies may still read it
  size_t bytes = 0;
  if (!remove_region(ptr, Kind::registered, &bytes))
    return fail(MXC_ERR_CUDA, "cudaHostUnregister: cudaErrorHostMemoryNotRegistered: %p was not registered", ptr);
  return MXC_OK;
}

mxc_status mxc_mem_info(uint64_t* free_bytes, uint64_t* total_bytes) {
  MXH_CHECK_ARG(free_bytes && total_bytes, "mxc_mem_info: null output pointer");
  *total_bytes = vram_capacity();
  *free_bytes = vram_capacity() - vram_used();
  return MXC_OK;
}

mxc_status mxc_mem_usage(uint64_t* live_bytes, uint64_t* peak_bytes) {
  MXH_CHECK_ARG(live_bytes && peak_bytes, "mxc_mem_usage: null output pointer");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  *live_bytes = r.used;
  *peak_bytes = r.peak;
  return MXC_OK;
}

mxc_status mxc_memcpy_h2d(void* dst, const void* src, size_t bytes, mxc_stream* s) {
  MXH_CHECK_ARG((dst && src) || bytes == 0, "mxc_memcpy_h2d: null pointer");
  if (bytes == 0) return MXC_OK;
  MXH_DEV(dst, bytes, "mxc_memcpy_h2d");
  const HostRange hr = host_range(src, bytes);
  if (hr == HostRange::spans) return fail_span("mxc_memcpy_h2d", src, bytes);
  const bool pinned = hr == HostRange::pinned;
  // In a capture, pageable memory is refused: CUDA 11 invalidates the capture, and where a newer driver
  // records the copy nothing keeps that memory alive for the replays (PyTorch refuses it for that reason).
  if (s && s->capturing && !pinned) return fail_capture(s, "mxc_memcpy_h2d from pageable host memory (pin it)");
  if (pinned) return submit(s, [=] { std::memcpy(dst, src, bytes); });
  // Pageable source: CUDA stages it before returning, so the caller may reuse it at once.
  auto copy = std::make_shared<std::vector<uint8_t>>(static_cast<const uint8_t*>(src),
                                                     static_cast<const uint8_t*>(src) + bytes);
  return submit(s, [=] { std::memcpy(dst, copy->data(), bytes); });
}

mxc_status mxc_memcpy_d2h(void* dst, const void* src, size_t bytes, mxc_stream* s) {
  MXH_CHECK_ARG((dst && src) || bytes == 0, "mxc_memcpy_d2h: null pointer");
  if (bytes == 0) return MXC_OK;
  MXH_DEV(src, bytes, "mxc_memcpy_d2h");
  const HostRange hr = host_range(dst, bytes);
  if (hr == HostRange::spans) return fail_span("mxc_memcpy_d2h", dst, bytes);
  const bool pinned = hr == HostRange::pinned;
  if (s && s->capturing && !pinned) return fail_capture(s, "mxc_memcpy_d2h to pageable host memory (pin it)");
  MXH_TRY(submit(s, [=] { std::memcpy(dst, src, bytes); }));
  // Pageable destination: CUDA returns only once the copy (and the stream's work before it) is done.
  if (!pinned) finish_stream(s);
  return MXC_OK;
}

mxc_status mxc_memcpy_d2d(void* dst, const void* src, size_t bytes, mxc_stream* s) {
  MXH_CHECK_ARG((dst && src) || bytes == 0, "mxc_memcpy_d2d: null pointer");
  if (bytes == 0) return MXC_OK;
  MXH_DEV(dst, bytes, "mxc_memcpy_d2d");
  MXH_DEV(src, bytes, "mxc_memcpy_d2d");
  return submit(s, [=] { std::memmove(dst, src, bytes); });
}

mxc_status mxc_memset(void* dst, int value, size_t bytes, mxc_stream* s) {
  MXH_CHECK_ARG(dst || bytes == 0, "mxc_memset: null pointer");
  if (bytes == 0) return MXC_OK;
  MXH_DEV(dst, bytes, "mxc_memset");
  return submit(s, [=] { std::memset(dst, value, bytes); });
}

}  // extern "C"
