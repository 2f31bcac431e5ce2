// Micro-benchmarks of libmixtile-cuda on Qwen3-30B-A3B shapes (hidden 2048, 32 q / 4 kv heads, head_dim
// 128, 128 experts of 768): attention decode and prefill, cuBLAS BF16 GEMM, small operators, PCIe copies
// and streaming one layer's experts (Q4_K + GPU dequant vs BF16). Times are medians of CUDA-event timings;
// weights/KV rotate over several copies so the 50 MB L2 does not flatter them. Usage: mixtile-cuda-bench.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "host-util.h"

using namespace mxt;

// Median over `reps` of the mean time of `inner` calls of fn(i), in milliseconds.
static double time_ms(const std::function<void(int)>& fn, int inner = 20, int reps = 11) {
  mxc_event *a, *b;
  MXT_CHECK(mxc_event_create(&a, 1));
  MXT_CHECK(mxc_event_create(&b, 1));
  for (int i = 0; i < 3; ++i) fn(i);  // warm-up
  std::vector<double> v;
  int it = 0;
  for (int r = 0; r < reps; ++r) {
    MXT_CHECK(mxc_event_record(a, nullptr));
    for (int i = 0; i < inner; ++i) fn(it++);
    MXT_CHECK(mxc_event_record(b, nullptr));
    MXT_CHECK(mxc_event_sync(b));
    float ms;
    MXT_CHECK(mxc_event_elapsed_ms(a, b, &ms));
    v.push_back(double(ms) / inner);
  }
  mxc_event_destroy(a);
  mxc_event_destroy(b);
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

static void fill_random_bf16(void* dev, size_t n, Rng& rng) {
  // Random f32 on the host in slices, converted on the device (never time or test on zeros).
  const size_t slice = size_t(1) << 24;
  std::vector<float> h(std::min(n, slice));
  Dev tmp(h.size() * 4);
  for (size_t off = 0; off < n; off += slice) {
    size_t cnt = std::min(slice, n - off);
    for (size_t i = 0; i < cnt; ++i) h[i] = rng.normal() * 0.5f;
    MXT_CHECK(mxc_memcpy_h2d(tmp.p, h.data(), cnt * 4, nullptr));
    MXT_CHECK(mxc_convert(tmp.p, MXC_F32, static_cast<uint16_t*>(dev) + off, MXC_BF16, int64_t(cnt), nullptr));
    MXT_CHECK(mxc_stream_sync(nullptr));
  }
}

static int g_argc;
static char** g_argv;
// Sections to run: all without arguments, else those named (copy decode prefill gemm gemvq ops pcie step).
static bool want(const char* section) {
  if (g_argc < 2) return true;
  for (int i = 1; i < g_argc; ++i)
    if (std::strcmp(g_argv[i], section) == 0) return true;
  return false;
}

int main(int argc, char** argv) {
  g_argc = argc;
  g_argv = argv;
  Rng rng(7);
  int ndev = 0;
  if (mxc_device_count(&ndev) != MXC_OK) {
    std::printf("SKIP: %s\n", mxc_last_error());
    return 0;
  }
  mxc_device_info info;
  MXT_CHECK(mxc_device_info_get(0, &info));
  std::printf("device: %s, %d SMs, %.0f GiB\n\n", info.name, info.multiprocessors, info.vram_bytes / 1073741824.0);
  const int HID = 2048, NH = 32, NKV = 4, D = 128, NE = 128, FF = 768;
  const float scale = 1.f / std::sqrt(float(D));

  // ---- ceiling: device-to-device copy (bytes read + written)
  if (want("copy")) {
    const size_t bytes = size_t(1) << 30;
    Dev a(bytes), b(bytes);
    MXT_CHECK(mxc_memset(a.p, 1, bytes, nullptr));
    double ms = time_ms([&](int) { MXT_CHECK(mxc_memcpy_d2d(b.p, a.p, bytes, nullptr)); }, 5, 7);
    std::printf("d2d copy 1 GiB: %.3f ms, %.0f GB/s (read+write)\n", ms, 2.0 * bytes / ms / 1e6);
  }

  // ---- attention decode: one sequence (and 8), KV bf16, 32/4 heads; 8 layers' caches rotate
  if (want("decode")) std::printf("\n# attention decode (split-K), bf16 KV, 32 q / 4 kv heads, D=128; KV GB/s = K+V bytes read / time\n");
  if (want("decode")) for (int64_t ctx : {4096, 16384})
    for (int64_t nseq : {1, 8}) {
      const int layers = nseq == 1 ? 8 : 2;
      const size_t kv_elems = size_t(nseq) * ctx * NKV * D;
      std::vector<Dev*> ks, vs;
      std::vector<mxc_kv_layer> kvs;
      for (int l = 0; l < layers; ++l) {
        ks.push_back(new Dev(kv_elems * 2));
        vs.push_back(new Dev(kv_elems * 2));
        fill_random_bf16(ks.back()->p, kv_elems, rng);
        fill_random_bf16(vs.back()->p, kv_elems, rng);
        kvs.push_back({ks.back()->p, vs.back()->p, MXC_BF16, int(nseq), ctx, NKV, D});
      }
      std::vector<int32_t> sid(nseq), len(nseq, int32_t(ctx));
      for (int i = 0; i < nseq; ++i) sid[i] = i;
      Dev dsid(nseq * 4), dlen(nseq * 4), dq(nseq * NH * D * 4), dout(nseq * NH * D * 4);
      dsid.put(sid);
      dlen.put(len);
      dq.put(rng.normals(nseq * NH * D));
      size_t wsb = mxc_attention_decode_workspace_bytes(nseq, NH, D, ctx);
      Dev ws(wsb);
      double ms = time_ms([&](int i) {
        MXT_CHECK(mxc_attention_decode(&kvs[i % layers], dsid.as<int32_t>(), dlen.as<int32_t>(), ctx, dq.as<float>(),
                                       nseq, NH, scale, dout.as<float>(), ws.p, wsb, nullptr));
      }, 50);
      double bytes = 2.0 * kv_elems * 2;
      std::printf("decode ctx=%-6lld seqs=%lld: %.1f us/layer, KV %.0f GB/s\n", (long long)ctx, (long long)nseq,
                  ms * 1e3, bytes / ms / 1e6);
      for (auto* p : ks) delete p;
      for (auto* p : vs) delete p;
    }

  // ---- attention prefill: causal, one sequence, queries at positions [pos0, pos0 + T) over keys [0, pos0 + T):
  // pos0 = 0 is a whole prompt, pos0 > 0 a later chunk of a chunked prefill (the engine's ubatch is 512)
  if (want("prefill")) std::printf("\n# attention prefill (flash, mma.sync), 32 q / 4 kv heads, D=128; causal FLOPs = 4*D*heads*sum_t(pos0+t+1)\n");
  struct PrefillCase { int64_t T, pos0; };
  if (want("prefill")) for (mxc_dtype t : {MXC_BF16, MXC_F16})
    for (PrefillCase pc : {PrefillCase{512, 0}, PrefillCase{2048, 0}, PrefillCase{8192, 0}, PrefillCase{16384, 0},
                           PrefillCase{2048, 14336}, PrefillCase{512, 15872}}) {
      const int64_t T = pc.T, L = pc.pos0 + pc.T;
      const size_t kv_elems = size_t(L) * NKV * D;
      Dev k(kv_elems * 2), v(kv_elems * 2), q(T * NH * D * 4), out(T * NH * D * 4);
      fill_random_bf16(k.p, kv_elems, rng);  // bf16 bits read as f16 are finite random values too
      fill_random_bf16(v.p, kv_elems, rng);
      q.put(rng.normals(T * NH * D));
      mxc_kv_layer kv{k.p, v.p, t, 1, L, NKV, D};
      double ms = time_ms([&](int) {
        MXT_CHECK(mxc_attention_prefill(&kv, 0, q.as<float>(), T, NH, pc.pos0, scale, out.as<float>(), nullptr));
      }, T >= 8192 ? 2 : 5);
      double flops = 4.0 * D * NH * (double(T) * pc.pos0 + double(T) * (T + 1) / 2);
      std::printf("prefill %s T=%-5lld pos0=%-5lld: %.3f ms/layer, %.1f TFLOP/s\n", t == MXC_BF16 ? "bf16" : "f16 ",
                  (long long)T, (long long)pc.pos0, ms, flops / ms / 1e9);
    }

  // ---- GEMM through cuBLAS
  if (want("gemm")) {
    std::printf("\n# BF16 GEMM (cuBLAS), y[m][n] = x[m][k] w[n][k]^T, f32 out; 8 weight copies rotate\n");
    mxc_blas* blas;
    setenv("MIXTILE_CUDA_GEMV_MAX_M", "8", 1);  // our kernel for every m <= 8, to compare with cuBLAS there
    MXT_CHECK(mxc_blas_create(&blas, nullptr));
    setenv("MIXTILE_CUDA_GEMV_MAX_M", "0", 1);  // a second handle that sends every m to cuBLAS
    mxc_blas* cublas_only;
    MXT_CHECK(mxc_blas_create(&cublas_only, nullptr));
    unsetenv("MIXTILE_CUDA_GEMV_MAX_M");
    struct S { int64_t n, k; const char* what; };
    for (S s : {S{NH * D, HID, "q_proj"}, S{NKV * D, HID, "k/v_proj"}, S{HID, NH * D, "o_proj"},
                S{NE, HID, "router"}, S{151936, HID, "lm_head"}})
      for (int64_t m : {1, 8, 512, 2048}) {
        if (!mxc_has_cublas() && m > 8) continue;
        const int copies = s.n * s.k * 2 > (size_t(256) << 20) ? 1 : 8;
        std::vector<Dev*> ws;
        for (int c = 0; c < copies; ++c) {
          ws.push_back(new Dev(s.n * s.k * 2));
          fill_random_bf16(ws.back()->p, s.n * s.k, rng);
        }
        Dev x(m * s.k * 2), y(m * s.n * 4);
        fill_random_bf16(x.p, m * s.k, rng);
        for (mxc_blas* h : {blas, cublas_only}) {
          if (h == cublas_only && (m > 8 || !mxc_has_cublas())) continue;
          double ms = time_ms([&](int i) {
            MXT_CHECK(mxc_gemm_bf16(h, m, s.n, s.k, x.as<uint16_t>(), ws[i % copies]->as<uint16_t>(), y.p, MXC_F32,
                                    0.f));
          });
          double flops = 2.0 * m * s.n * s.k, wbytes = 2.0 * s.n * s.k;
          const char* path = m <= 8 ? (h == blas ? "own   " : "cuBLAS") : (mxc_has_cublas() ? "cuBLAS" : "own   ");
          std::printf("gemm %s %-8s m=%-5lld n=%-6lld k=%-5lld: %8.1f us, %6.1f TFLOP/s, weights %5.0f GB/s\n", path,
                      s.what, (long long)m, (long long)s.n, (long long)s.k, ms * 1e3, flops / ms / 1e9,
                      wbytes / ms / 1e6);
        }
        for (auto* p : ws) delete p;
      }
    MXT_CHECK(mxc_blas_destroy(blas));
    MXT_CHECK(mxc_blas_destroy(cublas_only));
  }

  // ---- quantized GEMV (weights kept as stored) and the batch path's dequantization into the BF16 scratch
  if (want("gemvq")) {
    std::printf("\n# quantized GEMV (mxc_gemv_quant), f32 out; weights GB/s = the blocks' bytes / time; 4 copies rotate."
                "\n# us = eager launches back to back (the host's launch rate can bound small ones); graph = per launch"
                "\n# inside a CUDA graph of 20 (how a decode step issues them)."
                "\n# dequant = mxc_dequant_bf16 of the whole weight (what a batch does before cuBLAS)\n");
    struct S { int64_t n, k; mxc_dtype t; const char* what; };
    // Microseconds a launch of fn(i, stream) inside one captured graph of 20, median of 11 x 10 graph launches.
    auto graph_us = [&](const std::function<void(int, mxc_stream*)>& fn) {
      mxc_stream* st;
      MXT_CHECK(mxc_stream_create(&st));
      MXT_CHECK(mxc_graph_begin(st));
      for (int i = 0; i < 20; ++i) fn(i, st);
      mxc_graph* gr;
      MXT_CHECK(mxc_graph_end(st, &gr));
      for (int i = 0; i < 3; ++i) MXT_CHECK(mxc_graph_launch(gr, st));
      MXT_CHECK(mxc_stream_sync(st));
      std::vector<double> v;
      for (int r = 0; r < 11; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 10; ++i) MXT_CHECK(mxc_graph_launch(gr, st));
        MXT_CHECK(mxc_stream_sync(st));
        v.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 200);
      }
      MXT_CHECK(mxc_graph_destroy(gr));
      MXT_CHECK(mxc_stream_destroy(st));
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    auto random_blocks = [&](mxc_dtype t, size_t bytes) {
      const int qk = t == MXC_Q8_0 ? 32 : 256;
      const size_t bb = mxc_dtype_bytes(t, qk);
      std::vector<uint8_t> h(bytes);
      for (auto& b : h) b = uint8_t(rng.u32());
      for (size_t b = 0; b < bytes / bb; ++b) {  // sane scales: f16 d (and dmin) of about 0.01
        const uint16_t d = f32_to_f16(0.01f);
        std::memcpy(&h[b * bb + (t == MXC_Q6_K ? 208 : 0)], &d, 2);
        if (t == MXC_Q4_K) std::memcpy(&h[b * bb + 2], &d, 2);
      }
      return h;
    };
    {  // a token's q, k and v (Q4_K_M: v_proj Q6_K) in one launch, 4 copies rotating
      const S qkv[3] = {{NH * D, HID, MXC_Q4_K, "q"}, {NKV * D, HID, MXC_Q4_K, "k"}, {NKV * D, HID, MXC_Q6_K, "v"}};
      const int copies = 4;
      std::vector<std::unique_ptr<Dev>> ws;
      size_t total = 0;
      for (int c = 0; c < copies; ++c)
        for (const S& s : qkv) {
          const size_t bytes = mxc_dtype_bytes(s.t, s.n * s.k);
          ws.push_back(std::make_unique<Dev>(bytes));
          ws.back()->put(random_blocks(s.t, bytes));
          if (c == 0) total += bytes;
        }
      for (int64_t m : {1, 8}) {
        Dev x(m * HID * 2), y(m * (NH * D + 2 * NKV * D) * 4);
        fill_random_bf16(x.p, m * HID, rng);
        auto launch = [&](int i, mxc_stream* st) {
          mxc_gemv_job jobs[3];
          int64_t col = 0;
          for (int j = 0; j < 3; ++j) {
            jobs[j] = mxc_gemv_job{ws[size_t((i % copies) * 3 + j)]->p, qkv[j].t, qkv[j].n, y.as<float>() + col,
                                   NH * D + 2 * NKV * D};
            col += qkv[j].n;
          }
          MXT_CHECK(mxc_gemv_quant_multi(m, HID, x.as<uint16_t>(), jobs, 3, MXC_F32, 0.f, st));
        };
        double ms = time_ms([&](int i) { launch(i, nullptr); });
        std::printf("gemvq multi q4_K q + q4_K k + q6_K v m=%-2lld n=%lld k=%lld: %8.1f us, weights %5.0f GB/s; graph %6.1f us\n",
                    (long long)m, (long long)(NH * D + 2 * NKV * D), (long long)HID, ms * 1e3, total / ms / 1e6,
                    graph_us(launch));
      }
    }
    for (S s : {S{NH * D, HID, MXC_Q4_K, "q_proj"}, S{NKV * D, HID, MXC_Q4_K, "k_proj"}, S{NKV * D, HID, MXC_Q6_K, "v_proj"},
                S{HID, NH * D, MXC_Q4_K, "o_proj"}, S{HID, NH * D, MXC_Q8_0, "o_proj"}, S{151936, HID, MXC_Q6_K, "lm_head"}}) {
      const size_t bytes = mxc_dtype_bytes(s.t, s.n * s.k);
      const std::vector<uint8_t> h = random_blocks(s.t, bytes);
      const int copies = bytes > (size_t(128) << 20) ? 1 : 4;
      std::vector<Dev*> ws;
      for (int c = 0; c < copies; ++c) {
        ws.push_back(new Dev(bytes));
        ws.back()->put(h);
      }
      const char* tn = s.t == MXC_Q4_K ? "q4_K" : s.t == MXC_Q6_K ? "q6_K" : "q8_0";
      for (int64_t m : {1, 8}) {
        Dev x(m * s.k * 2), y(m * s.n * 4);
        fill_random_bf16(x.p, m * s.k, rng);
        auto launch = [&](int i, mxc_stream* st) {
          MXT_CHECK(mxc_gemv_quant(m, s.n, s.k, x.as<uint16_t>(), ws[i % copies]->p, s.t, y.p, MXC_F32, s.n, 0.f, st));
        };
        double ms = time_ms([&](int i) { launch(i, nullptr); });
        const double gus = m == 1 ? graph_us(launch) : 0;
        std::printf("gemvq %-4s %-8s m=%-2lld n=%-6lld k=%-5lld: %8.1f us, weights %5.0f GB/s", tn, s.what, (long long)m,
                    (long long)s.n, (long long)s.k, ms * 1e3, bytes / ms / 1e6);
        if (m == 1) std::printf("; graph %6.1f us, %5.0f GB/s", gus, bytes / gus / 1e3);
        std::printf("\n");
      }
      if (s.n < 151936) {
        Dev out(size_t(s.n * s.k) * 2);
        double ms = time_ms([&](int i) {
          MXT_CHECK(mxc_dequant_bf16(ws[i % copies]->p, s.t, s.n * s.k, out.as<uint16_t>(), nullptr));
        });
        std::printf("dequant %-4s %-8s n=%-6lld k=%-5lld: %8.1f us, read + write %5.0f GB/s\n", tn, s.what, (long long)s.n,
                    (long long)s.k, ms * 1e3, (bytes + 2.0 * s.n * s.k) / ms / 1e6);
      }
      for (auto* p : ws) delete p;
    }
  }

  // ---- small operators at 512 tokens
  if (want("ops")) {
    std::printf("\n# small operators, 512 tokens\n");
    const int64_t T = 512;
    Dev x(T * HID * 4), w(HID * 4), o(T * HID * 4), qh(T * NH * D * 4), wd(D * 4), pos(T * 4), gu(T * 2 * FF * 8 * 4),
        act(T * FF * 8 * 4), logit(T * NE * 4), ids(T * 8 * 4), wts(T * 8 * 4);
    x.put(rng.normals(T * HID));
    w.put(rng.normals(HID));
    wd.put(rng.normals(D));
    qh.put(rng.normals(T * NH * D));
    gu.put(rng.normals(T * 2 * FF * 8));
    logit.put(rng.normals(T * NE));
    std::vector<int32_t> p(T);
    for (int i = 0; i < T; ++i) p[i] = i;
    pos.put(p);
    auto us = [&](const char* what, const std::function<void(int)>& f) {
      std::printf("%-44s %7.1f us\n", what, time_ms(f, 50) * 1e3);
    };
    us("rmsnorm [512][2048] -> bf16", [&](int) {
      MXT_CHECK(mxc_rmsnorm(x.as<float>(), w.as<float>(), o.p, MXC_BF16, T, HID, 1e-6f, nullptr));
    });
    us("q_norm per head [512*32][128] in place", [&](int) {
      MXT_CHECK(mxc_rmsnorm(qh.as<float>(), wd.as<float>(), qh.p, MXC_F32, T * NH, D, 1e-6f, nullptr));
    });
    us("rope_neox q [512][32][128]", [&](int) {
      MXT_CHECK(mxc_rope_neox(qh.as<float>(), pos.as<int32_t>(), T, NH, D, 1e6f, nullptr));
    });
    us("silu_mul [512*8][768] fused in -> bf16", [&](int) {
      MXT_CHECK(mxc_silu_mul(gu.as<float>(), gu.as<float>() + FF, 2 * FF, act.p, MXC_BF16, T * 8, FF, nullptr));
    });
    us("router top-8 of 128, 512 tokens", [&](int) {
      MXT_CHECK(mxc_router_topk(logit.as<float>(), T, NE, 8, 1, ids.as<int32_t>(), wts.as<float>(), nullptr));
    });
    us("residual add [512][2048]", [&](int) {
      MXT_CHECK(mxc_add(x.as<float>(), o.as<float>(), o.as<float>(), T * HID, nullptr));
    });
  }

  // ---- PCIe and expert streaming
  if (want("pcie")) {
    std::printf("\n# PCIe copies (pinned host memory unless said)\n");
    const size_t big = size_t(1) << 30;
    void* host;
    MXT_CHECK(mxc_host_alloc(&host, big));
    std::memset(host, 0x5a, big);
    Dev dbuf(big);
    for (size_t chunk : {size_t(1) << 20, size_t(4) << 20, size_t(64) << 20, big}) {
      double ms = time_ms([&](int) {
        for (size_t off = 0; off < big; off += chunk)
          MXT_CHECK(mxc_memcpy_h2d(static_cast<char*>(dbuf.p) + off, static_cast<char*>(host) + off, chunk, nullptr));
      }, 1, 5);
      std::printf("h2d 1 GiB in %4zu MiB copies: %.1f ms, %.1f GB/s\n", chunk >> 20, ms, big / ms / 1e6);
    }
    double ms = time_ms([&](int) { MXT_CHECK(mxc_memcpy_d2h(host, dbuf.p, big, nullptr)); }, 1, 5);
    std::printf("d2h 1 GiB: %.1f ms, %.1f GB/s\n", ms, big / ms / 1e6);
    {
      std::vector<char> pageable(size_t(256) << 20, 1);
      double pms = time_ms([&](int) {
        MXT_CHECK(mxc_memcpy_h2d(dbuf.p, pageable.data(), pageable.size(), nullptr));
        MXT_CHECK(mxc_stream_sync(nullptr));
      }, 1, 5);
      std::printf("h2d 256 MiB from pageable memory: %.1f GB/s\n", pageable.size() / pms / 1e6);
    }
    MXT_CHECK(mxc_host_free(host));

    // One layer's 128 experts (gate, up, down: 3 x [768 x 2048] each): BF16 streamed as is, or Q4_K
    // streamed and dequantized to BF16 on the GPU, per expert, copy of e+1 overlapping dequant of e.
    std::printf("\n# streaming one layer's 128 experts to the GPU (3 x 768 x 2048 each)\n");
    const int64_t elems = int64_t(3) * FF * HID;  // per expert
    const size_t q4_bytes = mxc_dtype_bytes(MXC_Q4_K, elems), bf_bytes = size_t(elems) * 2;
    void *hq, *hb;
    MXT_CHECK(mxc_host_alloc(&hq, q4_bytes * NE));
    MXT_CHECK(mxc_host_alloc(&hb, bf_bytes * NE));
    for (size_t i = 0; i < q4_bytes * NE; ++i) static_cast<uint8_t*>(hq)[i] = uint8_t(rng.u32());
    for (int64_t b = 0; b < elems / 256 * NE; ++b) {  // sane fp16 scales d, dmin
      uint16_t d = f32_to_f16(0.001f), dm = f32_to_f16(0.0005f);
      std::memcpy(static_cast<uint8_t*>(hq) + b * 144, &d, 2);
      std::memcpy(static_cast<uint8_t*>(hq) + b * 144 + 2, &dm, 2);
    }
    std::memset(hb, 0x3c, bf_bytes * NE);
    Dev dq4(q4_bytes * 2), dbf(bf_bytes * NE);
    mxc_stream *s0, *s1;
    MXT_CHECK(mxc_stream_create(&s0));
    MXT_CHECK(mxc_stream_create(&s1));
    mxc_event* copied[2];
    mxc_event* used[2];
    for (int i = 0; i < 2; ++i) {
      MXT_CHECK(mxc_event_create(&copied[i], 0));
      MXT_CHECK(mxc_event_create(&used[i], 0));
    }
    auto stream_q4 = [&](int) {
      for (int e = 0; e < NE; ++e) {
        int slot = e & 1;
        char* dst = static_cast<char*>(dq4.p) + slot * q4_bytes;
        MXT_CHECK(mxc_stream_wait_event(s0, used[slot]));
        MXT_CHECK(mxc_memcpy_h2d(dst, static_cast<char*>(hq) + e * q4_bytes, q4_bytes, s0));
        MXT_CHECK(mxc_event_record(copied[slot], s0));
        MXT_CHECK(mxc_stream_wait_event(s1, copied[slot]));
        MXT_CHECK(mxc_dequant_bf16(dst, MXC_Q4_K, elems, static_cast<uint16_t*>(dbf.p) + e * elems, s1));
        MXT_CHECK(mxc_event_record(used[slot], s1));
      }
      MXT_CHECK(mxc_stream_sync(s1));
    };
    auto stream_bf = [&](int) {
      MXT_CHECK(mxc_memcpy_h2d(dbf.p, hb, bf_bytes * NE, s0));
      MXT_CHECK(mxc_stream_sync(s0));
    };
    double dq_only = time_ms([&](int) {
      MXT_CHECK(mxc_dequant_bf16(dq4.p, MXC_Q4_K, elems, dbf.as<uint16_t>(), nullptr));
    }, 20, 5) * NE;
    double q4 = time_ms(stream_q4, 1, 5), bf = time_ms(stream_bf, 1, 5);
    std::printf("Q4_K: %.0f MB over PCIe + GPU dequant: %.2f ms/layer (%.1f GB/s of Q4_K; dequant alone %.2f ms)\n",
                q4_bytes * NE / 1e6, q4, q4_bytes * NE / q4 / 1e6, dq_only);
    std::printf("BF16: %.0f MB over PCIe:               %.2f ms/layer (%.1f GB/s)\n", bf_bytes * NE / 1e6, bf,
                bf_bytes * NE / bf / 1e6);
    std::printf("=> 48 layers: Q4_K %.0f ms, BF16 %.0f ms per full pass over all experts\n", q4 * 48, bf * 48);
    for (int i = 0; i < 2; ++i) {
      mxc_event_destroy(copied[i]);
      mxc_event_destroy(used[i]);
    }
    mxc_stream_destroy(s0);
    mxc_stream_destroy(s1);
    mxc_host_free(hq);
    mxc_host_free(hb);
  }
  // ---- one decode token through the GPU side of all 48 layers (everything but the experts):
  // norm, q/k/v GEMMs, q/k norm, RoPE, KV store, attention over 4096 positions, o GEMM, residual,
  // post-attention norm, router GEMM + top-8, and the copy of the normed hidden state + routing to
  // pinned host memory for the CPU experts. Eager launches vs one CUDA graph per layer.
  if (want("step")) {
    std::printf("\n# decode step, GPU side of 48 layers (no experts), 1 sequence at context 4096\n");
    const int L = 48;
    const int64_t ctx = 4096;
    mxc_stream* s;
    MXT_CHECK(mxc_stream_create(&s));
    mxc_blas* blas;
    MXT_CHECK(mxc_blas_create(&blas, s));
    struct Layer {
      Dev *wq, *wk, *wv, *wo, *wr, *kc, *vc;
      mxc_kv_layer kv;
    };
    std::vector<Layer> layers(L);
    for (auto& l : layers) {
      l.wq = new Dev(size_t(NH) * D * HID * 2);
      l.wk = new Dev(size_t(NKV) * D * HID * 2);
      l.wv = new Dev(size_t(NKV) * D * HID * 2);
      l.wo = new Dev(size_t(HID) * NH * D * 2);
      l.wr = new Dev(size_t(NE) * HID * 2);
      l.kc = new Dev(size_t(ctx + 1) * NKV * D * 2);
      l.vc = new Dev(size_t(ctx + 1) * NKV * D * 2);
      for (Dev* d : {l.wq, l.wk, l.wv, l.wo, l.wr, l.kc, l.vc}) fill_random_bf16(d->p, d->bytes / 2, rng);
      l.kv = {l.kc->p, l.vc->p, MXC_BF16, 1, ctx + 1, NKV, D};
    }
    Dev x(HID * 4), xb(HID * 2), q(NH * D * 4), k(NKV * D * 4), v(NKV * D * 4), att(NH * D * 4), attb(NH * D * 2),
        o(HID * 4), logits(NE * 4), ids(8 * 4), wts(8 * 4), nw(HID * 4), hw(D * 4), pos(4), sid(4), len(4);
    x.put(rng.normals(HID));
    nw.put(rng.normals(HID));
    hw.put(rng.normals(D));
    pos.put(std::vector<int32_t>{int32_t(ctx)});
    sid.put(std::vector<int32_t>{0});
    len.put(std::vector<int32_t>{int32_t(ctx + 1)});
    size_t wsb = mxc_attention_decode_workspace_bytes(1, NH, D, ctx + 1);
    Dev ws(wsb);
    void* host;  // normed hidden (bf16) + ids + weights for the CPU experts
    MXT_CHECK(mxc_host_alloc(&host, HID * 2 + 64));
    MXT_CHECK(mxc_stream_sync(nullptr));
    auto layer_step = [&](Layer& l) {
      MXT_CHECK(mxc_rmsnorm(x.as<float>(), nw.as<float>(), xb.p, MXC_BF16, 1, HID, 1e-6f, s));
      MXT_CHECK(mxc_gemm_bf16(blas, 1, NH * D, HID, xb.as<uint16_t>(), l.wq->as<uint16_t>(), q.p, MXC_F32, 0.f));
      MXT_CHECK(mxc_gemm_bf16(blas, 1, NKV * D, HID, xb.as<uint16_t>(), l.wk->as<uint16_t>(), k.p, MXC_F32, 0.f));
      MXT_CHECK(mxc_gemm_bf16(blas, 1, NKV * D, HID, xb.as<uint16_t>(), l.wv->as<uint16_t>(), v.p, MXC_F32, 0.f));
      MXT_CHECK(mxc_rmsnorm(q.as<float>(), hw.as<float>(), q.p, MXC_F32, NH, D, 1e-6f, s));
      MXT_CHECK(mxc_rmsnorm(k.as<float>(), hw.as<float>(), k.p, MXC_F32, NKV, D, 1e-6f, s));
      MXT_CHECK(mxc_rope_neox(q.as<float>(), pos.as<int32_t>(), 1, NH, D, 1e6f, s));
      MXT_CHECK(mxc_rope_neox(k.as<float>(), pos.as<int32_t>(), 1, NKV, D, 1e6f, s));
      MXT_CHECK(mxc_kv_store(&l.kv, 0, k.as<float>(), v.as<float>(), pos.as<int32_t>(), 1, s));
      MXT_CHECK(mxc_attention_decode(&l.kv, sid.as<int32_t>(), len.as<int32_t>(), ctx + 1, q.as<float>(), 1, NH, scale,
                                     att.as<float>(), ws.p, wsb, s));
      MXT_CHECK(mxc_convert(att.p, MXC_F32, attb.p, MXC_BF16, NH * D, s));
      MXT_CHECK(mxc_gemm_bf16(blas, 1, HID, NH * D, attb.as<uint16_t>(), l.wo->as<uint16_t>(), o.p, MXC_F32, 0.f));
      MXT_CHECK(mxc_add(x.as<float>(), o.as<float>(), x.as<float>(), HID, s));
      MXT_CHECK(mxc_rmsnorm(x.as<float>(), nw.as<float>(), xb.p, MXC_BF16, 1, HID, 1e-6f, s));
      MXT_CHECK(mxc_gemm_bf16(blas, 1, NE, HID, xb.as<uint16_t>(), l.wr->as<uint16_t>(), logits.p, MXC_F32, 0.f));
      MXT_CHECK(mxc_router_topk(logits.as<float>(), 1, NE, 8, 1, ids.as<int32_t>(), wts.as<float>(), s));
      MXT_CHECK(mxc_memcpy_d2h(host, xb.p, HID * 2, s));
      MXT_CHECK(mxc_memcpy_d2h(static_cast<char*>(host) + HID * 2, ids.p, 32, s));
      MXT_CHECK(mxc_memcpy_d2h(static_cast<char*>(host) + HID * 2 + 32, wts.p, 32, s));
    };
    auto token_eager = [&]() {
      for (auto& l : layers) layer_step(l);
      MXT_CHECK(mxc_stream_sync(s));
    };
    std::vector<mxc_graph*> graphs(L);
    for (int i = 0; i < L; ++i) {
      MXT_CHECK(mxc_graph_begin(s));
      layer_step(layers[i]);
      MXT_CHECK(mxc_graph_end(s, &graphs[i]));
    }
    auto token_graph = [&](bool sync_each_layer) {
      for (int i = 0; i < L; ++i) {
        MXT_CHECK(mxc_graph_launch(graphs[i], s));
        if (sync_each_layer) MXT_CHECK(mxc_stream_sync(s));  // the CPU experts wait for each layer's routing
      }
      MXT_CHECK(mxc_stream_sync(s));
    };
    auto wall = [&](const std::function<void()>& f) {  // host wall clock, median of 21
      for (int i = 0; i < 3; ++i) f();
      std::vector<double> v;
      for (int r = 0; r < 21; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        f();
        v.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    double eager = wall(token_eager), graph = wall([&] { token_graph(false); }),
           graph_sync = wall([&] { token_graph(true); });
    double wbytes = double(L) * 2 * (double(NH) * D * HID * 2 + 2.0 * NKV * D * HID + NE * HID);
    double kvbytes = double(L) * 2 * 2 * (ctx + 1) * NKV * D;
    std::printf("eager launches:              %.3f ms/token (%.0f GB/s of weights + KV)\n", eager,
                (wbytes + kvbytes) / eager / 1e6);
    std::printf("one graph per layer:         %.3f ms/token (%.0f GB/s)\n", graph, (wbytes + kvbytes) / graph / 1e6);
    std::printf("graph per layer + host sync: %.3f ms/token (what a hybrid step waits for, experts excluded)\n",
                graph_sync);
    std::printf("bytes read per token: weights %.0f MB, KV %.0f MB\n", wbytes / 1e6, kvbytes / 1e6);
    for (auto* g : graphs) mxc_graph_destroy(g);
    for (auto& l : layers)
      for (Dev* d : {l.wq, l.wk, l.wv, l.wo, l.wr, l.kc, l.vc}) delete d;
    MXT_CHECK(mxc_host_free(host));
    MXT_CHECK(mxc_blas_destroy(blas));
    MXT_CHECK(mxc_stream_destroy(s));
  }

  return 0;
}
