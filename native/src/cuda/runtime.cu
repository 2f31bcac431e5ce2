// Errors, device probe, streams, events and memory of libmixtile-cuda (mixtile-cuda.h).
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common.cuh"

namespace mixtile::cuda {

static thread_local std::string g_error;

mxc_status fail(mxc_status st, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  g_error = buf;
  return st;
}

mxc_status fail_cuda(cudaError_t err, const char* where) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  mxc_status st = MXC_ERR_CUDA;
  if (err == cudaErrorMemoryAllocation) st = MXC_ERR_OUT_OF_MEMORY;
  if (err == cudaErrorNoDevice || err == cudaErrorInvalidDevice) st = MXC_ERR_NO_DEVICE;
  if (err == cudaErrorInsufficientDriver || err == cudaErrorStubLibrary) st = MXC_ERR_NO_DRIVER;
  return fail(st, "%s: %s: %s", where, cudaGetErrorName(err), cudaGetErrorString(err));
}

mxc_status check_launch(const char* kernel) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return fail_cuda(e, kernel);
  return MXC_OK;
}

void clear_error() { g_error.clear(); }

// What mxc_malloc holds, for mxc_mem_usage: cudaFree is given only the pointer, so the sizes are kept here.
struct DeviceAllocations {
  std::mutex mu;
  std::unordered_map<void*, size_t> bytes;
  uint64_t live = 0;
  uint64_t peak = 0;
};
static DeviceAllocations& device_allocations() {
  static DeviceAllocations* a = new DeviceAllocations();  // never destroyed: frees may come from static destructors
  return *a;
}

const char* last_error() { return g_error.c_str(); }

}  // namespace mixtile::cuda

using namespace mixtile::cuda;

extern "C" {

const char* mxc_last_error(void) { return last_error(); }

int mxc_abi_version(void) { return MXC_ABI_VERSION; }

mxc_status mxc_versions(int* driver_version, int* runtime_version) {
  MXC_CHECK_ARG(driver_version && runtime_version, "mxc_versions: null output pointer");
  *driver_version = 0;
  *runtime_version = 0;
  cudaDriverGetVersion(driver_version);  // 0 when no driver is installed
  MXC_CUDA(cudaRuntimeGetVersion(runtime_version), "cudaRuntimeGetVersion");
  return MXC_OK;
}

mxc_status mxc_device_count(int* count) {
  MXC_CHECK_ARG(count, "mxc_device_count: null output pointer");
  *count = 0;
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  if (drv == 0) {
    return fail(MXC_ERR_NO_DRIVER,
                "no NVIDIA driver: libcuda.so.1 could not be loaded (install the NVIDIA driver; "
                "this library needs one for CUDA %d.%d or newer)",
                rt / 1000, (rt % 1000) / 10);
  }
  cudaError_t e = cudaGetDeviceCount(count);
  if (e == cudaErrorInsufficientDriver) {
    *count = 0;
    cudaGetLastError();
    return fail(MXC_ERR_NO_DRIVER, "the NVIDIA driver supports CUDA %d.%d but this library needs CUDA %d.%d; update the driver",
                drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
  }
  if (e == cudaErrorNoDevice || (e == cudaSuccess && *count == 0)) {
    *count = 0;
    cudaGetLastError();
    return fail(MXC_ERR_NO_DEVICE, "an NVIDIA driver (CUDA %d.%d) is installed but no CUDA device is visible "
                "(check nvidia-smi and CUDA_VISIBLE_DEVICES)", drv / 1000, (drv % 1000) / 10);
  }
  if (e != cudaSuccess) {
    *count = 0;
    return fail_cuda(e, "cudaGetDeviceCount");
  }
  return MXC_OK;
}

mxc_status mxc_device_info_get(int device, mxc_device_info* out) {
  MXC_CHECK_ARG(out, "mxc_device_info_get: null output pointer");
  int n = 0;
  mxc_status st = mxc_device_count(&n);
  if (st != MXC_OK) return st;
  MXC_CHECK_ARG(device >= 0 && device < n, "mxc_device_info_get: device %d out of range (%d devices)", device, n);
  cudaDeviceProp p;
  MXC_CUDA(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  std::memset(out, 0, sizeof *out);
  std::snprintf(out->name, sizeof out->name, "%s", p.name);
  out->vram_bytes = p.totalGlobalMem;
  out->cc_major = p.major;
  out->cc_minor = p.minor;
  out->multiprocessors = p.multiProcessorCount;
  out->l2_bytes = uint64_t(p.l2CacheSize);
  out->pci_bus_id = p.pciBusID;
  int prev = 0;
  MXC_CUDA(cudaGetDevice(&prev), "cudaGetDevice");
  MXC_CUDA(cudaSetDevice(device), "cudaSetDevice");
  size_t fr = 0, tot = 0;
  cudaError_t e = cudaMemGetInfo(&fr, &tot);
  cudaSetDevice(prev);
  if (e != cudaSuccess) return fail_cuda(e, "cudaMemGetInfo");
  out->free_bytes = fr;
  return MXC_OK;
}

mxc_status mxc_set_device(int device) {
  MXC_CUDA(cudaSetDevice(device), "cudaSetDevice");
  return MXC_OK;
}

mxc_status mxc_stream_create(mxc_stream** out) {
  MXC_CHECK_ARG(out, "mxc_stream_create: null output pointer");
  cudaStream_t s;
  MXC_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  *out = reinterpret_cast<mxc_stream*>(s);
  return MXC_OK;
}
mxc_status mxc_stream_destroy(mxc_stream* s) {
  if (s) MXC_CUDA(cudaStreamDestroy(stream_of(s)), "cudaStreamDestroy");
  return MXC_OK;
}
mxc_status mxc_stream_sync(mxc_stream* s) {
  MXC_CUDA(cudaStreamSynchronize(stream_of(s)), "cudaStreamSynchronize");
  return MXC_OK;
}
mxc_status mxc_stream_wait_event(mxc_stream* s, mxc_event* e) {
  MXC_CHECK_ARG(e, "mxc_stream_wait_event: null event");
  MXC_CUDA(cudaStreamWaitEvent(stream_of(s), reinterpret_cast<cudaEvent_t>(e), 0), "cudaStreamWaitEvent");
  return MXC_OK;
}

mxc_status mxc_event_create(mxc_event** out, int timing) {
  MXC_CHECK_ARG(out, "mxc_event_create: null output pointer");
  cudaEvent_t e;
  MXC_CUDA(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming), "cudaEventCreate");
  *out = reinterpret_cast<mxc_event*>(e);
  return MXC_OK;
}
mxc_status mxc_event_destroy(mxc_event* e) {
  if (e) MXC_CUDA(cudaEventDestroy(reinterpret_cast<cudaEvent_t>(e)), "cudaEventDestroy");
  return MXC_OK;
}
mxc_status mxc_event_record(mxc_event* e, mxc_stream* s) {
  MXC_CHECK_ARG(e, "mxc_event_record: null event");
  MXC_CUDA(cudaEventRecord(reinterpret_cast<cudaEvent_t>(e), stream_of(s)), "cudaEventRecord");
  return MXC_OK;
}
mxc_status mxc_event_sync(mxc_event* e) {
  MXC_CHECK_ARG(e, "mxc_event_sync: null event");
  MXC_CUDA(cudaEventSynchronize(reinterpret_cast<cudaEvent_t>(e)), "cudaEventSynchronize");
  return MXC_OK;
}
mxc_status mxc_event_query(mxc_event* e, int* done) {
  MXC_CHECK_ARG(e && done, "mxc_event_query: null argument");
  cudaError_t r = cudaEventQuery(reinterpret_cast<cudaEvent_t>(e));
  if (r == cudaErrorNotReady) {
    cudaGetLastError();
    *done = 0;
    return MXC_OK;
  }
  MXC_CUDA(r, "cudaEventQuery");
  *done = 1;
  return MXC_OK;
}
mxc_status mxc_event_elapsed_ms(mxc_event* start, mxc_event* end, float* ms) {
  MXC_CHECK_ARG(start && end && ms, "mxc_event_elapsed_ms: null argument");
  MXC_CUDA(cudaEventElapsedTime(ms, reinterpret_cast<cudaEvent_t>(start), reinterpret_cast<cudaEvent_t>(end)),
           "cudaEventElapsedTime");
  return MXC_OK;
}

mxc_status mxc_graph_begin(mxc_stream* s) {
  MXC_CHECK_ARG(s, "mxc_graph_begin: capture needs a created stream, not the NULL stream");
  MXC_CUDA(cudaStreamBeginCapture(stream_of(s), cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  return MXC_OK;
}
mxc_status mxc_graph_end(mxc_stream* s, mxc_graph** out) {
  MXC_CHECK_ARG(s && out, "mxc_graph_end: null argument");
  *out = nullptr;
  cudaGraph_t g = nullptr;
  MXC_CUDA(cudaStreamEndCapture(stream_of(s), &g), "cudaStreamEndCapture (a call in the captured region failed?)");
  cudaGraphExec_t ex = nullptr;
  cudaError_t e = cudaGraphInstantiate(&ex, g, 0);
  cudaGraphDestroy(g);
  MXC_CUDA(e, "cudaGraphInstantiate");
  *out = reinterpret_cast<mxc_graph*>(ex);
  return MXC_OK;
}
mxc_status mxc_graph_launch(mxc_graph* g, mxc_stream* s) {
  MXC_CHECK_ARG(g, "mxc_graph_launch: null graph");
  MXC_CUDA(cudaGraphLaunch(reinterpret_cast<cudaGraphExec_t>(g), stream_of(s)), "cudaGraphLaunch");
  return MXC_OK;
}
mxc_status mxc_graph_destroy(mxc_graph* g) {
  if (g) MXC_CUDA(cudaGraphExecDestroy(reinterpret_cast<cudaGraphExec_t>(g)), "cudaGraphExecDestroy");
  return MXC_OK;
}

mxc_status mxc_malloc(void** ptr, size_t bytes) {
  MXC_CHECK_ARG(ptr, "mxc_malloc: null output pointer");
  *ptr = nullptr;
  if (bytes == 0) return MXC_OK;
  cudaError_t e = cudaMalloc(ptr, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return fail(MXC_ERR_OUT_OF_MEMORY, "cudaMalloc: out of device memory: asked for %.1f MiB, %.1f MiB free of %.1f MiB",
                bytes / 1048576.0, fr / 1048576.0, tot / 1048576.0);
  }
  MXC_CUDA(e, "cudaMalloc");
  DeviceAllocations& a = device_allocations();
  std::lock_guard<std::mutex> lock(a.mu);
  a.bytes[*ptr] = bytes;
  a.live += bytes;
  if (a.live > a.peak) a.peak = a.live;
  return MXC_OK;
}
mxc_status mxc_free(void* ptr) {
  if (!ptr) return MXC_OK;
  MXC_CUDA(cudaFree(ptr), "cudaFree");
  DeviceAllocations& a = device_allocations();
  std::lock_guard<std::mutex> lock(a.mu);
  auto it = a.bytes.find(ptr);
  if (it != a.bytes.end()) {
    a.live -= it->second;
    a.bytes.erase(it);
  }
  return MXC_OK;
}
mxc_status mxc_mem_usage(uint64_t* live_bytes, uint64_t* peak_bytes) {
  MXC_CHECK_ARG(live_bytes && peak_bytes, "mxc_mem_usage: null output pointer");
  DeviceAllocations& a = device_allocations();
  std::lock_guard<std::mutex> lock(a.mu);
  *live_bytes = a.live;
  *peak_bytes = a.peak;
  return MXC_OK;
}
mxc_status mxc_host_alloc(void** ptr, size_t bytes) {
  MXC_CHECK_ARG(ptr, "mxc_host_alloc: null output pointer");
  *ptr = nullptr;
  if (bytes == 0) return MXC_OK;
  cudaError_t e = cudaHostAlloc(ptr, bytes, cudaHostAllocPortable);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return fail(MXC_ERR_OUT_OF_MEMORY, "cudaHostAlloc: could not pin %.1f MiB of host memory (check ulimit -l and free RAM)",
                bytes / 1048576.0);
  }
  MXC_CUDA(e, "cudaHostAlloc");
  return MXC_OK;
}
mxc_status mxc_host_free(void* ptr) {
  if (ptr) MXC_CUDA(cudaFreeHost(ptr), "cudaFreeHost");
  return MXC_OK;
}
mxc_status mxc_host_register(void* ptr, size_t bytes) {
  MXC_CHECK_ARG(ptr && bytes, "mxc_host_register: null or empty range");
  MXC_CUDA(cudaHostRegister(ptr, bytes, cudaHostRegisterPortable | cudaHostRegisterReadOnly), "cudaHostRegister");
  return MXC_OK;
}
mxc_status mxc_host_unregister(void* ptr) {
  MXC_CHECK_ARG(ptr, "mxc_host_unregister: null pointer");
  MXC_CUDA(cudaHostUnregister(ptr), "cudaHostUnregister");
  return MXC_OK;
}
mxc_status mxc_mem_info(uint64_t* free_bytes, uint64_t* total_bytes) {
  MXC_CHECK_ARG(free_bytes && total_bytes, "mxc_mem_info: null output pointer");
  size_t fr = 0, tot = 0;
  MXC_CUDA(cudaMemGetInfo(&fr, &tot), "cudaMemGetInfo");
  *free_bytes = fr;
  *total_bytes = tot;
  return MXC_OK;
}

static mxc_status copy(void* dst, const void* src, size_t bytes, mxc_stream* s, cudaMemcpyKind kind, const char* what) {
  MXC_CHECK_ARG((dst && src) || bytes == 0, "%s: null pointer", what);
  if (bytes == 0) return MXC_OK;
  MXC_CUDA(cudaMemcpyAsync(dst, src, bytes, kind, stream_of(s)), what);
  return MXC_OK;
}
mxc_status mxc_memcpy_h2d(void* dst, const void* src, size_t bytes, mxc_stream* s) {
  return copy(dst, src, bytes, s, cudaMemcpyHostToDevice, "mxc_memcpy_h2d");
}
mxc_status mxc_memcpy_d2h(void* dst, const void* src, size_t bytes, mxc_stream* s) {
  return copy(dst, src, bytes, s, cudaMemcpyDeviceToHost, "mxc_memcpy_d2h");
}
mxc_status mxc_memcpy_d2d(void* dst, const void* src, size_t bytes, mxc_stream* s) {
  return copy(dst, src, bytes, s, cudaMemcpyDeviceToDevice, "mxc_memcpy_d2d");
}
mxc_status mxc_memset(void* dst, int value, size_t bytes, mxc_stream* s) {
  MXC_CHECK_ARG(dst || bytes == 0, "mxc_memset: null pointer");
  if (bytes) MXC_CUDA(cudaMemsetAsync(dst, value, bytes, stream_of(s)), "mxc_memset");
  return MXC_OK;
}

}  // extern "C"
