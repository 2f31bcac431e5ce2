// Standalone experts benchmark: the same measurement as src/engine/bench-op.ts --op experts, for
// machines without Node. Prints one line per (threads, tokens): wall ms (median), weight GB/s,
// GFLOP/s, and the DRAM floor for the touched experts' bytes measured in the same run.
//   --gap-us N: the caller spins N us between calls (the pool idles as in hybrid decode).
//   --file PATH: the experts' weights are copied into PATH and read through a shared file mapping
//     (4 KiB page-cache pages, as a model's mmapped GGUF), not the synth's anonymous memory.
//   --hot-gemv 1: one thread, the 1-token kernel over 64 cache-resident rows (compute bound).
//   --gemm ROWS,K,TOKENS: one thread, one GEMM call shape, packed vs padded activation rows.
//   --shape HIDDEN,FFN,N_EXPERT,TOP_K: expert shapes (default 2048,768,128,8); small ones stay in
//     cache, so a one-token call's fixed cost (pool jobs, grouping, conversions, the sum) dominates.
//     With --reps 2000+ the median is stable on a noisy box.
//   --profile 1: after each line, the op profile's split of the calls (experts.other = the calling
//     thread's serial part: grouping, conversions, sum), in us per call.
#include <sys/mman.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "cpu/experts/experts.h"
#include "cpu/isa.h"
#include "cpu/matmul/matmul.h"
#include "cpu/profile/op-profile.h"
#include "synth.h"
#include "threadpool.h"

using namespace mixtile;

static std::vector<int> parse_list(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

static GgmlType parse_type(const std::string& s) {
  if (s == "f32") return GgmlType::F32;
  if (s == "f16") return GgmlType::F16;
  if (s == "bf16") return GgmlType::BF16;
  if (s == "q8_0") return GgmlType::Q8_0;
  if (s == "q4_k") return GgmlType::Q4_K;
  if (s == "q5_k") return GgmlType::Q5_K;
  if (s == "q6_k") return GgmlType::Q6_K;
  std::fprintf(stderr, "unknown type %s\n", s.c_str());
  std::exit(2);
}

// One thread, the 1-token kernel of `wt` over 64 rows x 2048 (Q4_K 72 KiB) that stay in L2:
// bytes per ns with no DRAM in the way, i.e. the kernel's compute ceiling per core.
static void hot_gemv(GgmlType wt, const char* name) {
  const int64_t k = 2048, rows = 64, ne[4] = {k, rows, 1, 1};
  auto w = synth_weight(wt, ne, 7);
  std::vector<float> x(static_cast<size_t>(k)), y(static_cast<size_t>(rows));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(float(i) * 0.37f);
  std::vector<uint8_t> a(act_row_bytes(wt, k));
  convert_act_row(wt, x.data(), k, a.data());
  GemmArgs g{w->data, w->row_bytes, rows, a.data(), a.size(), 1, k, y.data(), rows};
  const GemmKernel* kern = gemm_select(wt, g);
  const int iters = 4000;
  std::vector<double> ns;
  for (int r = 0; r < 7; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) kern->fn(g);
    ns.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / iters);
  }
  std::sort(ns.begin(), ns.end());
  double bytes = double(w->bytes());
  std::printf("hot-gemv %s (%s) 1 token, %lld rows x %lld: %.0f ns per call, %.2f bytes/ns (best %.2f)\n", name,
              kern->name, (long long)rows, (long long)k, ns[ns.size() / 2], bytes / ns[ns.size() / 2], bytes / ns[0]);
}

// One thread, the kernel gemm_select picks for `wt` on rows x k weights against `ntok` activation
// rows, with those rows act_row_bytes apart (packed) and act_row_stride apart (as the experts lay
// them out), alternated: GFLOP/s per thread CPU-second (a shared box's preemption does not count).
// "hot": the same rows every call (in L2); "stream": successive row slices of a 512 MiB weight.
static void gemm_stride_ab(GgmlType wt, const char* name, int64_t rows, int64_t k, int64_t ntok) {
  const size_t slice = row_bytes(wt, k) * size_t(rows);
  const int64_t n_slices = std::max<int64_t>(1, int64_t((size_t(512) << 20) / slice));
  const int64_t ne[4] = {k, rows * n_slices, 1, 1};
  auto w = synth_weight(wt, ne, 7);
  std::vector<float> x(size_t(ntok * k)), y(size_t(ntok * rows));
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(float(i) * 0.37f);
  const size_t strides[2] = {act_row_bytes(wt, k), act_row_stride(wt, k)};
  std::vector<uint8_t> a[2];
  for (int v = 0; v < 2; ++v) {
    a[v].resize(strides[v] * size_t(ntok));
    for (int64_t t = 0; t < ntok; ++t) convert_act_row(wt, x.data() + t * k, k, a[v].data() + size_t(t) * strides[v]);
  }
  auto cpu_s = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  };
  const double flops = 2.0 * double(rows * k * ntok);
  const int iters = int(std::max(8.0, 2e9 / flops));  // ~10 ms per sample at 200 GFLOP/s
  for (int stream = 0; stream < 2; ++stream) {
    std::vector<double> gf[2];
    const GemmKernel* kern = nullptr;
    for (int rep = 0; rep < 7; ++rep) {
      for (int v = 0; v < 2; ++v) {
        GemmArgs g{w->data, w->row_bytes, rows, a[v].data(), strides[v], ntok, k, y.data(), rows};
        kern = gemm_select(wt, g);
        double t0 = cpu_s();
        for (int i = 0; i < iters; ++i) {
          g.w = w->data + (stream ? size_t(i % n_slices) * slice : 0);
          kern->fn(g);
        }
        gf[v].push_back(flops * iters / (cpu_s() - t0) / 1e9);
      }
    }
    for (int v = 0; v < 2; ++v) {
      std::sort(gf[v].begin(), gf[v].end());
      std::printf("gemm %s (%s) %lld rows x k %lld x %lld tokens, %s, activation stride %zu B: %.1f GFLOP/s per core "
                  "(median of 7, range %.1f-%.1f)\n",
                  name, kern->name, (long long)rows, (long long)k, (long long)ntok, stream ? "stream" : "hot", strides[v],
                  gf[v][3], gf[v][0], gf[v][6]);
    }
  }
}

// Copies w into the file at fd (appending) and points it at a shared read-only mapping of those bytes.
static void to_file(Weight& w, const char* path) {
  int fd = ::open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) std::perror(path), std::exit(2);
  size_t n = w.bytes();
  if (::write(fd, w.data, n) != ssize_t(n)) std::perror("write"), std::exit(2);
  void* m = ::mmap(nullptr, n, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (m == MAP_FAILED) std::perror("mmap"), std::exit(2);
  ::close(fd);
  ::unlink(path);
  w.owner = std::shared_ptr<void>(m, [n](void* p) { ::munmap(p, n); });
  w.data = static_cast<const uint8_t*>(m);
}

static void spin_us(int us) {
  if (us <= 0) return;
  auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(us);
  while (std::chrono::steady_clock::now() < end) {
  }
}

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach a pipe as they are printed
  std::string type = "q4_k", down, file;
  std::vector<int> tokens = {1, 512}, threads = {2};
  int reps = 5, probe_mib = 2048, gap_us = 0;
  bool hot = false, profile = false;
  std::vector<int> gemm;
  int64_t hidden = 2048, ffn = 768, n_expert = 128, top_k = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--type") type = argv[i + 1];
    else if (k == "--down-type") down = argv[i + 1];
    else if (k == "--tokens") tokens = parse_list(argv[i + 1]);
    else if (k == "--threads") threads = parse_list(argv[i + 1]);
    else if (k == "--reps") reps = std::atoi(argv[i + 1]);
    else if (k == "--probe-mib") probe_mib = std::atoi(argv[i + 1]);
    else if (k == "--file") file = argv[i + 1];
    else if (k == "--gap-us") gap_us = std::atoi(argv[i + 1]);
    else if (k == "--hot-gemv") hot = std::atoi(argv[i + 1]) != 0;
    else if (k == "--profile") profile = std::atoi(argv[i + 1]) != 0;
    else if (k == "--gemm") gemm = parse_list(argv[i + 1]);
    else if (k == "--shape") {
      std::vector<int> v = parse_list(argv[i + 1]);
      if (v.size() != 4 || v[3] < 1 || v[3] > v[2]) return std::fprintf(stderr, "--shape HIDDEN,FFN,N_EXPERT,TOP_K\n"), 2;
      hidden = v[0], ffn = v[1], n_expert = v[2], top_k = v[3];
    }
    else if (k == "--isa") {
      Isa l;
      if (!parse_isa(argv[i + 1], &l) || !set_isa(l)) return std::fprintf(stderr, "bad --isa\n"), 2;
    } else return std::fprintf(stderr, "unknown flag %s\n", k.c_str()), 2;
  }
  if (down.empty()) down = type;
  GgmlType wt = parse_type(type), dt = parse_type(down);
  if (gemm.size() == 3) {
    gemm_stride_ab(wt, type.c_str(), gemm[0], gemm[1], gemm[2]);
    return 0;
  }
  if (hot) {
    set_threads(1);
    hot_gemv(wt, type.c_str());
    if (dt != wt) hot_gemv(dt, down.c_str());
    return 0;
  }
  const int64_t gne[4] = {hidden, ffn, n_expert, 1}, dne[4] = {ffn, hidden, n_expert, 1}, rne[4] = {hidden, n_expert, 1, 1};
  auto gate = synth_weight(wt, gne, 1), up = synth_weight(wt, gne, 2), dn = synth_weight(dt, dne, 3);
  auto router = synth_weight(GgmlType::F32, rne, 4);
  if (!file.empty()) {
    to_file(*gate, (file + ".gate").c_str());
    to_file(*up, (file + ".up").c_str());
    to_file(*dn, (file + ".down").c_str());
  }
  auto ew = experts_load(*gate, *up, *dn, *router);
  const double expert_bytes = double(2 * gate->matrix_bytes() + dn->matrix_bytes());
  std::printf("# %s, isa %s, types %s/%s, weights in %s\n", cpu_brand().c_str(), isa_name(active_isa()), type.c_str(),
              down.c_str(), file.empty() ? "anonymous memory" : "a file mapping");
  for (int th : threads) {
    set_threads(th);
    double bw = mem_read_bandwidth(size_t(probe_mib), 3);
    std::printf("# %d threads: DRAM read %.1f GB/s (%d MiB page-unique, best of 3)\n", th, bw, probe_mib);
    for (int n : tokens) {
      std::vector<float> x(size_t(n * hidden)), y(size_t(n * hidden));
      for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(float(i) * 0.37f);
      std::vector<double> ms;
      size_t touched = 0;
      op_profile_enable(profile);
      uint32_t s = 12345;
      for (int r = -1; r < reps; ++r) {
        std::vector<int32_t> ids(size_t(n * top_k));
        std::vector<float> w(size_t(n * top_k), 1.f / float(top_k));
        for (int t = 0; t < n; ++t) {
          std::set<int32_t> used;
          for (int j = 0; j < top_k; ++j) {
            s = s * 1664525u + 1013904223u;
            int32_t e = int32_t(s % uint32_t(n_expert));
            while (used.count(e)) e = (e + 1) % int32_t(n_expert);
            used.insert(e);
            ids[size_t(t * top_k + j)] = e;
          }
        }
        spin_us(gap_us);
        auto t0 = std::chrono::steady_clock::now();
        moe_forward_routed(*ew, x.data(), n, ids.data(), w.data(), int(top_k), y.data());
        double dt_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (r >= 0) ms.push_back(dt_ms);
        else op_profile_reset();  // the warm-up call (first-touch allocations) is not counted
        touched = std::set<int32_t>(ids.begin(), ids.end()).size();
      }
      std::sort(ms.begin(), ms.end());
      double med = ms[ms.size() / 2];
      double bytes = double(touched) * expert_bytes, flops = 6.0 * double(n) * double(top_k) * double(hidden * ffn);
      double floor_ms = bytes / (bw * 1e9) * 1e3;
      std::printf("experts %s/%s threads=%d n=%d gap=%dus: %.3f ms = %.1f us (best %.3f, p90 %.3f)  %.1f GB/s  %.1f GFLOP/s  floor %.3f ms (%.2fx)\n",
                  type.c_str(), down.c_str(), th, n, gap_us, med, med * 1e3, ms[0], ms[ms.size() * 9 / 10], bytes / (med * 1e6),
                  flops / (med * 1e6), floor_ms, med / floor_ms);
      for (int op = 0; profile && op < int(Op::count); ++op) {
        OpCounters c = op_profile_get(Op(op));
        if (c.calls) std::printf("  %-16s %8.2f us per call (%.2f calls per call)\n", op_info(Op(op)).name,
                                 double(c.ns) / 1e3 / reps, double(c.calls) / reps);
      }
    }
  }
  return 0;
}
