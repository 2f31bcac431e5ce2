// Checks of what only the CPU stand-in (libmixtile-cuda-host) does, beyond the kernel checks it shares
// with the GPU (cuda-kernels-test.cc): work runs at synchronisation points (deferred); graph capture
// records instead of running and replays with the values behind its pointers at launch; CUDA's capture
// rules; the VRAM capacity
// (run with MIXTILE_CUDA_HOST_VRAM=134217728, 128 MiB); "device" range checks; events; host registration.
// Exit code 0 = all pass. Run by test/cuda/host-stand-in.test.ts.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "host-util.h"

using namespace mxt;

static int g_fail = 0, g_pass = 0;

static void expect(const std::string& name, bool ok, const std::string& detail = "") {
  std::printf("%s %-62s %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
  (ok ? g_pass : g_fail)++;
}
// A call expected to fail: its status, and a message that contains `needle`.
static void expect_error(const std::string& name, mxc_status got, mxc_status want, const char* needle) {
  std::string msg = mxc_last_error();
  expect(name, got == want && msg.find(needle) != std::string::npos, "status " + std::to_string(int(got)) + ": " + msg);
}

static constexpr uint64_t MIB = 1 << 20;

static void test_capacity() {
  uint64_t fr = 0, total = 0;
  MXT_CHECK(mxc_mem_info(&fr, &total));
  expect("capacity: MIXTILE_CUDA_HOST_VRAM = 128 MiB", total == 128 * MIB && fr == total,
         std::to_string(total) + " total, " + std::to_string(fr) + " free");
  void* a = nullptr;
  void* b = nullptr;
  MXT_CHECK(mxc_malloc(&a, 80 * MIB));
  MXT_CHECK(mxc_mem_info(&fr, &total));
  expect("capacity: an 80 MiB allocation is counted", fr == 48 * MIB);
  expect_error("capacity: 80 MiB more is out of memory", mxc_malloc(&b, 80 * MIB), MXC_ERR_OUT_OF_MEMORY,
               "asked for 80.0 MiB, 48.0 MiB free of 128.0 MiB");
  expect("capacity: the failed allocation returns NULL", b == nullptr);
  const float* f = static_cast<const float*>(a);
  expect("fresh device memory reads as NaN (as uninitialised)", std::isnan(f[0]) && std::isnan(f[20 * MIB - 1]));
  MXT_CHECK(mxc_free(a));
  expect_error("free: twice is an error", mxc_free(a), MXC_ERR_CUDA, "not the start of a device allocation");
  mxc_blas* blas = nullptr;
  MXT_CHECK(mxc_blas_create(&blas, nullptr));
  MXT_CHECK(mxc_mem_info(&fr, &total));
  expect("capacity: a BLAS handle holds the 32 MiB cuBLAS workspace", fr == 96 * MIB);
  MXT_CHECK(mxc_blas_destroy(blas));
  MXT_CHECK(mxc_mem_info(&fr, &total));
  expect("capacity: destroying it gives the workspace back", fr == 128 * MIB);
}

static void test_ranges() {
  Dev a(100 * 4), y(100 * 4);
  expect_error("range: an operand past its allocation", mxc_add(a.as<float>(), a.as<float>(), y.as<float>(), 101, nullptr),
               MXC_ERR_CUDA, "run 4 bytes past the end of its device allocation of 400 bytes");
  std::vector<float> host(100);
  expect_error("range: a host pointer as a kernel operand", mxc_add(host.data(), a.as<float>(), y.as<float>(), 100, nullptr),
               MXC_ERR_CUDA, "is not device memory");
  expect_error("range: h2d into host memory", mxc_memcpy_h2d(host.data(), a.p, 16, nullptr), MXC_ERR_CUDA,
               "is not device memory");
  mxc_kv_layer kv{a.p, a.p, MXC_F16, 1, 16, 1, 64};  // needs 2 KiB per tensor, has 400 bytes
  expect_error("range: a KV layer larger than its buffer",
               mxc_kv_store(&kv, 0, a.as<float>(), a.as<float>(), a.as<int32_t>(), 1, nullptr), MXC_ERR_CUDA, "kv->k");
  // A registered host range (an mmapped weight file) is readable by kernels.
  MXT_CHECK(mxc_host_register(host.data(), 50 * 4));
  MXT_CHECK(mxc_memcpy_d2d(y.p, host.data(), 200, nullptr));
  expect_error("register: twice is an error", mxc_host_register(host.data() + 1, 4), MXC_ERR_CUDA, "AlreadyRegistered");
  MXT_CHECK(mxc_host_register(host.data() + 50, 50 * 4));  // a second registration right after the first
  expect_error("register: a copy spanning two registrations is refused (as the driver does)",
               mxc_memcpy_h2d(y.p, host.data() + 40, 20 * 4, nullptr), MXC_ERR_CUDA, "span two host registrations");
  MXT_CHECK(mxc_memcpy_h2d(y.p, host.data() + 40, 10 * 4, nullptr));  // one copy per registration is fine
  MXT_CHECK(mxc_memcpy_h2d(y.as<float>() + 10, host.data() + 50, 10 * 4, nullptr));
  MXT_CHECK(mxc_host_unregister(host.data() + 50));
  MXT_CHECK(mxc_host_register(host.data() + 50, 10 * 4));
  MXT_CHECK(mxc_memcpy_h2d(y.p, host.data() + 55, 20 * 4, nullptr));  // from a registration into plain memory: pageable
  MXT_CHECK(mxc_host_unregister(host.data() + 50));
  MXT_CHECK(mxc_host_unregister(host.data()));
  expect_error("unregister: twice is an error", mxc_host_unregister(host.data()), MXC_ERR_CUDA, "NotRegistered");
  void* pinned = nullptr;
  MXT_CHECK(mxc_host_alloc(&pinned, 400));
  MXT_CHECK(mxc_memcpy_d2d(pinned, y.p, 400, nullptr));  // pinned memory is device-accessible too
  MXT_CHECK(mxc_host_free(pinned));
  expect("range: registered and pinned host memory are accepted", true);
}

static void test_graph_semantics(Rng& rng) {
  const int n = 1000;
  Dev a(n * 4), b(n * 4), y(n * 4), pos(4), k(64 * 4), kc(8 * 64 * 2), vc(8 * 64 * 2);
  mxc_stream* s = nullptr;
  MXT_CHECK(mxc_stream_create(&s));
  mxc_graph* g = nullptr;
  MXT_CHECK(mxc_graph_begin(s));
  expect_error("graph: begin twice", mxc_graph_begin(s), MXC_ERR_CUDA, "already capturing");
  MXT_CHECK(mxc_add(a.as<float>(), b.as<float>(), y.as<float>(), n, s));
  mxc_kv_layer kv{kc.p, vc.p, MXC_BF16, 1, 8, 1, 64};
  MXT_CHECK(mxc_kv_store(&kv, 0, k.as<float>(), k.as<float>(), pos.as<int32_t>(), 1, s));
  kv.k = kv.v = nullptr;  // the captured call keeps the values the struct had, as a kernel's arguments
  MXT_CHECK(mxc_graph_end(s, &g));
  auto yv = y.get<float>(n);
  expect("graph: captured work does not run at capture", std::isnan(yv[0]) && std::isnan(yv[n - 1]));
  for (int rep = 0; rep < 2; ++rep) {  // new values behind the same pointers each launch
    auto av = rng.normals(n), bv = rng.normals(n), kv_row = rng.normals(64);
    const std::vector<int32_t> p = {rep * 5 + 2};
    a.put(av), b.put(bv), k.put(kv_row), pos.put(p);
    MXT_CHECK(mxc_stream_sync(nullptr));  // the uploads ran on the NULL stream, which s does not wait for
    MXT_CHECK(mxc_graph_launch(g, s));
    MXT_CHECK(mxc_stream_sync(s));
    yv = y.get<float>(n);
    auto kcv = kc.get<uint16_t>(8 * 64);
    bool ok = true;
    for (int i = 0; i < n; ++i) ok = ok && yv[i] == av[i] + bv[i];
    for (int i = 0; i < 64; ++i) ok = ok && kcv[p[0] * 64 + i] == f32_to_bf16(kv_row[i]);
    expect("graph: launch " + std::to_string(rep + 1) + " reads the values at launch (add, kv_store at pos " +
               std::to_string(p[0]) + ")", ok);
  }
  MXT_CHECK(mxc_graph_destroy(g));
  MXT_CHECK(mxc_graph_begin(s));
  expect_error("graph: syncing the capturing stream is refused", mxc_stream_sync(s), MXC_ERR_CUDA,
               "cudaErrorStreamCaptureUnsupported");
  expect_error("graph: ... and invalidates the capture", mxc_graph_end(s, &g), MXC_ERR_CUDA,
               "cudaErrorStreamCaptureInvalidated");
  expect_error("graph: end without begin", mxc_graph_end(s, &g), MXC_ERR_CUDA, "not capturing");
  std::vector<float> pageable(16);
  MXT_CHECK(mxc_graph_begin(s));
  expect_error("graph: a copy from pageable memory is refused in a capture",
               mxc_memcpy_h2d(a.p, pageable.data(), 64, s), MXC_ERR_CUDA, "cudaErrorStreamCaptureUnsupported");
  expect_error("graph: ... and invalidates it", mxc_graph_end(s, &g), MXC_ERR_CUDA, "cudaErrorStreamCaptureInvalidated");
  MXT_CHECK(mxc_graph_begin(s));
  expect_error("graph: a copy to pageable memory is refused in a capture",
               mxc_memcpy_d2h(pageable.data(), a.p, 64, s), MXC_ERR_CUDA, "cudaErrorStreamCaptureUnsupported");
  expect_error("graph: ... and invalidates it", mxc_graph_end(s, &g), MXC_ERR_CUDA, "cudaErrorStreamCaptureInvalidated");
  MXT_CHECK(mxc_graph_begin(s));
  void* p = nullptr;
  expect_error("graph: mxc_malloc on the capturing thread is refused", mxc_malloc(&p, 64), MXC_ERR_CUDA,
               "cudaMalloc: cudaErrorStreamCaptureUnsupported");
  expect_error("graph: ... and invalidates the capture", mxc_graph_end(s, &g), MXC_ERR_CUDA, "Invalidated");
  MXT_CHECK(mxc_malloc(&p, 64));  // fine again after the capture
  MXT_CHECK(mxc_free(p));
  MXT_CHECK(mxc_stream_destroy(s));
}

// Work runs at synchronisation points, not when issued: a result read early is stale, as it may be on a
// GPU; a stream that waits on another's event sees that stream's work.
static void test_deferred(Rng& rng) {
  const int n = 4096;
  Dev a(n * 4), y(n * 4);
  float* pinned = nullptr;
  MXT_CHECK(mxc_host_alloc(reinterpret_cast<void**>(&pinned), n * 4));
  auto av = rng.normals(n);
  a.put(av);
  mxc_stream *s1 = nullptr, *s2 = nullptr;
  MXT_CHECK(mxc_stream_create(&s1));
  MXT_CHECK(mxc_stream_create(&s2));
  mxc_event* e = nullptr;
  MXT_CHECK(mxc_event_create(&e, 0));
  MXT_CHECK(mxc_stream_sync(nullptr));
  pinned[0] = -1.f;
  MXT_CHECK(mxc_add(a.as<float>(), a.as<float>(), y.as<float>(), n, s1));
  MXT_CHECK(mxc_memcpy_d2h(pinned, y.p, n * 4, s1));
  expect("deferred: a pinned download read before syncing is stale", pinned[0] == -1.f);
  int done = 1;
  MXT_CHECK(mxc_event_record(e, s1));
  MXT_CHECK(mxc_event_query(e, &done));
  expect("deferred: an event of queued work is not done at first", done == 0);
  MXT_CHECK(mxc_event_sync(e));
  expect("deferred: ... and the work has run once it is synced", pinned[0] == 2 * av[0] && pinned[n - 1] == 2 * av[n - 1]);
  // s2 adds y to itself after s1 wrote y: with the wait it sees s1's result.
  MXT_CHECK(mxc_add(a.as<float>(), a.as<float>(), y.as<float>(), n, s1));
  MXT_CHECK(mxc_add(y.as<float>(), a.as<float>(), y.as<float>(), n, s1));  // y = 3a
  MXT_CHECK(mxc_event_record(e, s1));
  MXT_CHECK(mxc_stream_wait_event(s2, e));
  MXT_CHECK(mxc_add(y.as<float>(), a.as<float>(), y.as<float>(), n, s2));  // y = 4a
  MXT_CHECK(mxc_memcpy_d2h(pinned, y.p, n * 4, s2));
  MXT_CHECK(mxc_stream_sync(s2));
  expect("deferred: a wait on another stream's event runs that stream first",
         pinned[0] == 4 * av[0] && pinned[n - 1] == 4 * av[n - 1]);
  // A pageable download waits for its stream, as cudaMemcpyAsync to pageable memory does.
  MXT_CHECK(mxc_add(y.as<float>(), a.as<float>(), y.as<float>(), n, s1));  // y = 5a
  auto yv = std::vector<float>(n);
  MXT_CHECK(mxc_memcpy_d2h(yv.data(), y.p, n * 4, s1));
  expect("deferred: a pageable download returns the finished result", yv[0] == 5 * av[0] && yv[n - 1] == 5 * av[n - 1]);
  MXT_CHECK(mxc_event_destroy(e));
  MXT_CHECK(mxc_stream_destroy(s1));
  MXT_CHECK(mxc_stream_destroy(s2));
  MXT_CHECK(mxc_host_free(pinned));
}

static void test_events() {
  mxc_event *t0 = nullptr, *t1 = nullptr, *plain = nullptr;
  MXT_CHECK(mxc_event_create(&t0, 1));
  MXT_CHECK(mxc_event_create(&t1, 1));
  MXT_CHECK(mxc_event_create(&plain, 0));
  float ms = -1;
  expect_error("event: elapsed before recording", mxc_event_elapsed_ms(t0, t1, &ms), MXC_ERR_CUDA, "never recorded");
  // Between the records: a GEMM of 64 x 512 x 2048 (work that runs at the sync, where the time is taken).
  Dev x(64 * 2048 * 2), w(512 * 2048 * 2), y(64 * 512 * 4);
  MXT_CHECK(mxc_memset(x.p, 0, x.bytes, nullptr));
  MXT_CHECK(mxc_memset(w.p, 0, w.bytes, nullptr));
  mxc_blas* blas = nullptr;
  MXT_CHECK(mxc_blas_create(&blas, nullptr));
  MXT_CHECK(mxc_event_record(t0, nullptr));
  MXT_CHECK(mxc_gemm_bf16(blas, 64, 512, 2048, x.as<uint16_t>(), w.as<uint16_t>(), y.p, MXC_F32, 0.f));
  MXT_CHECK(mxc_event_record(t1, nullptr));
  MXT_CHECK(mxc_event_record(plain, nullptr));
  expect_error("event: elapsed before the events ran", mxc_event_elapsed_ms(t0, t1, &ms), MXC_ERR_CUDA, "NotReady");
  MXT_CHECK(mxc_event_sync(t1));
  int done = 0;
  MXT_CHECK(mxc_event_query(t1, &done));
  MXT_CHECK(mxc_event_elapsed_ms(t0, t1, &ms));
  expect("event: done after sync, elapsed spans the GEMM", done == 1 && ms > 0.f && ms < 60000.f, std::to_string(ms) + " ms");
  expect_error("event: elapsed of an event without timing", mxc_event_elapsed_ms(t0, plain, &ms), MXC_ERR_CUDA,
               "without timing");
  MXT_CHECK(mxc_blas_destroy(blas));
  MXT_CHECK(mxc_event_destroy(t0));
  MXT_CHECK(mxc_event_destroy(t1));
  MXT_CHECK(mxc_event_destroy(plain));
}

static void test_device() {
  expect_error("device: set_device(1) of one device", mxc_set_device(1), MXC_ERR_NO_DEVICE, "invalid device ordinal");
  mxc_device_info info;
  MXT_CHECK(mxc_device_info_get(0, &info));
  expect("device: name and compute capability",
         std::string(info.name) == "Mixtile host stand-in (CPU)" && info.cc_major == 9 && info.cc_minor == 0);
}

// mxc_gemm_f32 against float64 at an odd shape (not in cuda-kernels-test.cc); and the speed of an
// lm_head-shaped BF16 GEMV, which the engine's tests run once per token.
static void test_gemm_f32_and_speed(Rng& rng) {
  const int64_t m = 3, n = 37, k = 70;
  auto x = rng.normals(m * k), w = rng.normals(n * k);
  Dev dx(x.size() * 4), dw(w.size() * 4), dy(m * n * 4);
  dx.put(x), dw.put(w);
  MXT_CHECK(mxc_gemm_f32(m, n, k, dx.as<float>(), dw.as<float>(), dy.as<float>(), nullptr));
  auto y = dy.get<float>(m * n);
  double worst = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double ref = 0;
      for (int64_t l = 0; l < k; ++l) ref += double(x[i * k + l]) * w[j * k + l];
      worst = std::fmax(worst, std::fabs(y[i * n + j] - ref));
    }
  expect("gemm_f32 m=3 n=37 k=70 vs float64", worst < 1e-4, "max abs err " + std::to_string(worst));

  const int64_t vocab = 151669, hidden = 256;
  Dev lw(vocab * hidden * 2), lx(hidden * 2), ly(vocab * 4);
  MXT_CHECK(mxc_memset(lw.p, 0, vocab * hidden * 2, nullptr));
  MXT_CHECK(mxc_memset(lx.p, 0, hidden * 2, nullptr));
  mxc_blas* blas = nullptr;
  MXT_CHECK(mxc_blas_create(&blas, nullptr));
  const auto t0 = std::chrono::steady_clock::now();
  MXT_CHECK(mxc_gemm_bf16(blas, 1, vocab, hidden, lx.as<uint16_t>(), lw.as<uint16_t>(), ly.p, MXC_F32, 0.f));
  MXT_CHECK(mxc_stream_sync(nullptr));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  MXT_CHECK(mxc_blas_destroy(blas));
  std::printf("info: lm_head GEMV 1 x %lld x %lld (bf16): %.1f ms\n", (long long)vocab, (long long)hidden, ms);
}

// mxc_add_when_ready runs where the host synchronises: a host that synchronises before setting the flag (on a GPU,
// a wait on itself) finds flag 2 and x untouched instead of hanging; set first, the add runs and clears it.
static void test_add_when_ready_order(Rng& rng) {
  const int n = 300;
  Dev x(n * 4);
  auto xv = rng.normals(n);
  x.put(xv);
  void* pinned = nullptr;
  MXT_CHECK(mxc_host_alloc(&pinned, n * 4 + 64));
  auto* sum = static_cast<float*>(pinned);
  auto* flag = reinterpret_cast<uint32_t*>(sum + n);
  for (int i = 0; i < n; ++i) sum[i] = 1.f;
  *flag = 0;
  MXT_CHECK(mxc_stream_sync(nullptr));
  MXT_CHECK(mxc_add_when_ready(x.as<float>(), sum, n, flag, nullptr));
  auto got = x.get<float>(n);  // synchronises with the flag still 0
  expect("add_when_ready: synchronised before the flag -> flag 2", *flag == 2u, "flag " + std::to_string(*flag));
  expect("add_when_ready: ... and x untouched", got == xv);
  *flag = 0;
  MXT_CHECK(mxc_add_when_ready(x.as<float>(), sum, n, flag, nullptr));
  *flag = 1;
  got = x.get<float>(n);
  bool ok = true;
  for (int i = 0; i < n; ++i) ok = ok && got[i] == xv[i] + 1.f;
  expect("add_when_ready: flag set first -> x + sum, flag cleared", ok && *flag == 0u);
  MXT_CHECK(mxc_host_free(pinned));
}

int main() {
  Rng rng(20261125);
  test_capacity();
  test_ranges();
  test_graph_semantics(rng);
  test_deferred(rng);
  test_add_when_ready_order(rng);
  test_events();
  test_device();
  test_gemm_f32_and_speed(rng);
  std::printf("\n%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
