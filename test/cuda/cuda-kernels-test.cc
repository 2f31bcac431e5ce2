// Checks every libmixtile-cuda operator against a scalar CPU reference at awkward sizes (1, 7, 129
// tokens; contexts 1, 100, 4096). Runs on a GPU machine: see test/cuda/README.md. Exit code 0 = all pass.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "cpu/dequant/dequant.h"  // the addon's scalar ggml dequantize_row: the reference of the quantized GEMV
#include "host-util.h"

using namespace mxt;

static int g_fail = 0, g_pass = 0;

// ||out - ref|| / ||ref|| with NaN (an unwritten, poisoned element) counted as a failure.
static void expect_close(const std::string& name, const std::vector<float>& out, const std::vector<float>& ref,
                         double tol) {
  double num = 0, den = 0;
  size_t nan = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(out[i])) {
      ++nan;
      continue;
    }
    double d = double(out[i]) - ref[i];
    num += d * d;
    den += double(ref[i]) * ref[i];
  }
  double err = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  bool ok = nan == 0 && err <= tol;
  std::printf("%s %-58s rel_err %.2e (tol %.0e)%s\n", ok ? "PASS" : "FAIL", name.c_str(), err, tol,
              nan ? (" non-finite: " + std::to_string(nan)).c_str() : "");
  (ok ? g_pass : g_fail)++;
}
// For a call expected to fail: the status it returned and the message it left.
static void expect_status(const std::string& name, mxc_status got, mxc_status want) {
  std::string msg = mxc_last_error();
  bool ok = got == want && !msg.empty();
  std::printf("%s %-58s status %d: %s\n", ok ? "PASS" : "FAIL", name.c_str(), int(got), msg.c_str());
  (ok ? g_pass : g_fail)++;
}
static void expect(const std::string& name, bool ok, const std::string& detail = "") {
  std::printf("%s %-58s %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
  (ok ? g_pass : g_fail)++;
}

static std::vector<float> bf16_vec_to_f32(const std::vector<uint16_t>& v) {
  std::vector<float> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = bf16_to_f32(v[i]);
  return o;
}

// ---------------------------------------------------------------- probe and errors
static void test_probe() {
  int n = 0;
  mxc_status st = mxc_device_count(&n);
  int drv = 0, rt = 0;
  mxc_versions(&drv, &rt);
  std::printf("devices: %d (status %d %s), driver %d, runtime %d, cuBLAS %d, ABI %d\n", n, int(st), mxc_last_error(),
              drv, rt, mxc_has_cublas(), mxc_abi_version());
  expect("probe: at least one device", st == MXC_OK && n > 0);
  for (int d = 0; d < n; ++d) {
    mxc_device_info info;
    MXT_CHECK(mxc_device_info_get(d, &info));
    std::printf("device %d: %s, %.1f GiB (%.1f free), cc %d.%d, %d SMs, L2 %.0f MiB\n", d, info.name,
                info.vram_bytes / 1073741824.0, info.free_bytes / 1073741824.0, info.cc_major, info.cc_minor,
                info.multiprocessors, info.l2_bytes / 1048576.0);
  }
  mxc_device_info info;
  expect_status("errors: device out of range", mxc_device_info_get(n + 5, &info), MXC_ERR_INVALID_ARG);
  expect_status("errors: null pointer", mxc_rmsnorm(nullptr, nullptr, nullptr, MXC_F32, 1, 1, 1e-6f, nullptr),
                MXC_ERR_INVALID_ARG);
  void* p = nullptr;
  expect_status("errors: cudaMalloc of 1 PiB", mxc_malloc(&p, size_t(1) << 50), MXC_ERR_OUT_OF_MEMORY);
  int dummy = 0;
  mxc_kv_layer kv{&dummy, &dummy, MXC_F16, 1, 16, 1, 96};
  expect_status("errors: unsupported head_dim", mxc_attention_prefill(&kv, 0, nullptr, 1, 1, 0, 1.f, nullptr, nullptr),
                MXC_ERR_INVALID_ARG);
  expect_status("errors: graph capture on the NULL stream", mxc_graph_begin(nullptr), MXC_ERR_INVALID_ARG);
}

// ---------------------------------------------------------------- element-wise
static void test_rmsnorm(Rng& rng) {
  for (int n : {128, 2048, 4099})
    for (int rows : {1, 7, 129}) {
      auto x = rng.normals(size_t(rows) * n, 3.f);
      auto w = rng.normals(n);
      std::vector<float> ref(x.size());
      for (int r = 0; r < rows; ++r) {
        double ss = 0;
        for (int i = 0; i < n; ++i) ss += double(x[r * n + i]) * x[r * n + i];
        double inv = 1.0 / std::sqrt(ss / n + 1e-6);
        for (int i = 0; i < n; ++i) ref[r * n + i] = float(x[r * n + i] * inv * w[i]);
      }
      Dev dx(x.size() * 4), dw(n * 4), dout(x.size() * 4);
      dx.put(x);
      dw.put(w);
      dout.poison();
      MXT_CHECK(mxc_rmsnorm(dx.as<float>(), dw.as<float>(), dout.p, MXC_F32, rows, n, 1e-6f, nullptr));
      expect_close("rmsnorm f32 rows=" + std::to_string(rows) + " n=" + std::to_string(n), dout.get<float>(x.size()),
                   ref, 1e-5);
      dout.poison();
      MXT_CHECK(mxc_rmsnorm(dx.as<float>(), dw.as<float>(), dout.p, MXC_BF16, rows, n, 1e-6f, nullptr));
      expect_close("rmsnorm bf16 rows=" + std::to_string(rows) + " n=" + std::to_string(n),
                   bf16_vec_to_f32(dout.get<uint16_t>(x.size())), ref, 8e-3);
    }
}

static void test_rope(Rng& rng) {
  for (int D : {64, 128})
    for (int tokens : {1, 7, 129}) {
      const int heads = 5;
      const float theta = 1e6f;
      auto x = rng.normals(size_t(tokens) * heads * D);
      std::vector<int32_t> pos(tokens);
      for (int t = 0; t < tokens; ++t) pos[t] = t == 0 ? 0 : int32_t(rng.u32() % 40000);
      std::vector<float> ref(x);
      for (int t = 0; t < tokens; ++t)
        for (int h = 0; h < heads; ++h)
          for (int i = 0; i < D / 2; ++i) {
            float inv = float(1.0 / std::pow(double(theta), double(2 * i) / D));
            double a = double(float(pos[t]) * inv);
            float* p = &ref[(size_t(t) * heads + h) * D];
            double x0 = x[(size_t(t) * heads + h) * D + i], x1 = x[(size_t(t) * heads + h) * D + i + D / 2];
            p[i] = float(x0 * std::cos(a) - x1 * std::sin(a));
            p[i + D / 2] = float(x1 * std::cos(a) + x0 * std::sin(a));
          }
      Dev dx(x.size() * 4), dp(tokens * 4);
      dx.put(x);
      dp.put(pos);
      MXT_CHECK(mxc_rope_neox(dx.as<float>(), dp.as<int32_t>(), tokens, heads, D, theta, nullptr));
      expect_close("rope_neox tokens=" + std::to_string(tokens) + " D=" + std::to_string(D) + " pos<40000",
                   dx.get<float>(x.size()), ref, 2e-3);
    }
}

static void test_silu_add_convert(Rng& rng) {
  for (int rows : {1, 7, 129}) {
    const int n = 768;
    auto gu = rng.normals(size_t(rows) * 2 * n, 2.f);  // fused [rows][2n]
    std::vector<float> ref(size_t(rows) * n);
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < n; ++i) {
        double g = gu[size_t(r) * 2 * n + i], u = gu[size_t(r) * 2 * n + n + i];
        ref[size_t(r) * n + i] = float(g / (1 + std::exp(-g)) * u);
      }
    Dev dgu(gu.size() * 4), dout(ref.size() * 4);
    dgu.put(gu);
    dout.poison();
    MXT_CHECK(mxc_silu_mul(dgu.as<float>(), dgu.as<float>() + n, 2 * n, dout.p, MXC_F32, rows, n, nullptr));
    expect_close("silu_mul f32 fused rows=" + std::to_string(rows), dout.get<float>(ref.size()), ref, 1e-5);
    dout.poison();
    MXT_CHECK(mxc_silu_mul(dgu.as<float>(), dgu.as<float>() + n, 2 * n, dout.p, MXC_BF16, rows, n, nullptr));
    expect_close("silu_mul bf16 fused rows=" + std::to_string(rows), bf16_vec_to_f32(dout.get<uint16_t>(ref.size())),
                 ref, 8e-3);
  }
  for (int64_t n : {int64_t(1), int64_t(1000003)}) {
    auto a = rng.normals(n), b = rng.normals(n);
    std::vector<float> ref(n);
    for (int64_t i = 0; i < n; ++i) ref[i] = a[i] + b[i];
    Dev da(n * 4), db(n * 4);
    da.put(a);
    db.put(b);
    MXT_CHECK(mxc_add(da.as<float>(), db.as<float>(), da.as<float>(), n, nullptr));
    expect_close("add in place n=" + std::to_string(n), da.get<float>(n), ref, 0);
  }
  {
    const int64_t n = 100003;
    auto x = rng.normals(n, 100.f);
    Dev dx(n * 4), d16(n * 2), dback(n * 4);
    dx.put(x);
    size_t bad_bf = 0, bad_h = 0;
    MXT_CHECK(mxc_convert(dx.p, MXC_F32, d16.p, MXC_BF16, n, nullptr));
    auto bf = d16.get<uint16_t>(n);
    for (int64_t i = 0; i < n; ++i) bad_bf += bf[i] != f32_to_bf16(x[i]);
    MXT_CHECK(mxc_convert(dx.p, MXC_F32, d16.p, MXC_F16, n, nullptr));
    auto h = d16.get<uint16_t>(n);
    for (int64_t i = 0; i < n; ++i) bad_h += h[i] != f32_to_f16(x[i]);
    MXT_CHECK(mxc_convert(d16.p, MXC_F16, dback.p, MXC_F32, n, nullptr));
    auto back = dback.get<float>(n);
    size_t bad_back = 0;
    for (int64_t i = 0; i < n; ++i) bad_back += back[i] != f16_to_f32(h[i]);
    expect("convert f32->bf16 bit-exact (RNE)", bad_bf == 0, std::to_string(bad_bf) + " mismatches");
    expect("convert f32->f16 bit-exact (RNE)", bad_h == 0, std::to_string(bad_h) + " mismatches");
    expect("convert f16->f32 exact", bad_back == 0, std::to_string(bad_back) + " mismatches");
  }
}

static void test_router(Rng& rng) {
  struct C { int n, k; };
  for (C c : {C{128, 8}, C{64, 4}, C{256, 8}, C{160, 6}})
    for (int tokens : {1, 7, 129})
      for (int renorm : {1, 0}) {
        auto logits = rng.normals(size_t(tokens) * c.n, 2.f);
        std::vector<int32_t> rid(size_t(tokens) * c.k);
        std::vector<float> rw(rid.size());
        for (int t = 0; t < tokens; ++t) {
          const float* l = &logits[size_t(t) * c.n];
          double mx = *std::max_element(l, l + c.n), sum = 0;
          for (int e = 0; e < c.n; ++e) sum += std::exp(l[e] - mx);
          std::vector<int> idx(c.n);
          std::iota(idx.begin(), idx.end(), 0);
          std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return l[a] > l[b]; });
          double sel = 0;
          for (int r = 0; r < c.k; ++r) sel += std::exp(l[idx[r]] - mx) / sum;
          for (int r = 0; r < c.k; ++r) {
            double p = std::exp(l[idx[r]] - mx) / sum;
            rid[size_t(t) * c.k + r] = idx[r];
            rw[size_t(t) * c.k + r] = float(renorm ? p / sel : p);
          }
        }
        Dev dl(logits.size() * 4), di(rid.size() * 4), dw(rw.size() * 4);
        dl.put(logits);
        di.poison();
        dw.poison();
        MXT_CHECK(mxc_router_topk(dl.as<float>(), tokens, c.n, c.k, renorm, di.as<int32_t>(), dw.as<float>(), nullptr));
        auto gid = di.get<int32_t>(rid.size());
        std::string name = "router n=" + std::to_string(c.n) + " k=" + std::to_string(c.k) +
                           " tokens=" + std::to_string(tokens) + (renorm ? " renorm" : " softmax");
        expect(name + " ids", gid == rid);
        expect_close(name + " weights", dw.get<float>(rw.size()), rw, 1e-5);
      }
}

static void test_embed(Rng& rng) {
  const int64_t rows = 1000;
  const int dim = 2048;
  std::vector<int32_t> ids = {0, 999, 17, -1, 1000, 500, 17};  // 7 tokens, two out of range
  auto table = rng.normals(size_t(rows) * dim);
  std::vector<float> ref(ids.size() * dim, 0.f);
  auto fill_ref = [&](auto value_of) {
    for (size_t t = 0; t < ids.size(); ++t)
      for (int i = 0; i < dim; ++i)
        ref[t * dim + i] = (ids[t] >= 0 && ids[t] < rows) ? value_of(int64_t(ids[t]) * dim + i) : 0.f;
  };
  Dev di(ids.size() * 4), dout(ref.size() * 4);
  di.put(ids);
  {
    std::vector<uint16_t> bf(table.size());
    for (size_t i = 0; i < bf.size(); ++i) bf[i] = f32_to_bf16(table[i]);
    Dev dt(bf.size() * 2);
    dt.put(bf);
    fill_ref([&](int64_t j) { return bf16_to_f32(bf[j]); });
    dout.poison();
    MXT_CHECK(mxc_embed_gather(dt.p, MXC_BF16, rows, dim, di.as<int32_t>(), ids.size(), dout.as<float>(), nullptr));
    expect_close("embed_gather bf16 (ids -1 and n_rows give zeros)", dout.get<float>(ref.size()), ref, 0);
  }
  {
    std::vector<uint16_t> h(table.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_f16(table[i]);
    Dev dt(h.size() * 2);
    dt.put(h);
    fill_ref([&](int64_t j) { return f16_to_f32(h[j]); });
    dout.poison();
    MXT_CHECK(mxc_embed_gather(dt.p, MXC_F16, rows, dim, di.as<int32_t>(), ids.size(), dout.as<float>(), nullptr));
    expect_close("embed_gather f16", dout.get<float>(ref.size()), ref, 0);
  }
  {
    Dev dt(table.size() * 4);
    dt.put(table);
    fill_ref([&](int64_t j) { return table[j]; });
    dout.poison();
    MXT_CHECK(mxc_embed_gather(dt.p, MXC_F32, rows, dim, di.as<int32_t>(), ids.size(), dout.as<float>(), nullptr));
    expect_close("embed_gather f32", dout.get<float>(ref.size()), ref, 0);
  }
  {
    // Q8_0: per block of 32, d = amax/127, q = round(x/d).
    const int nb = dim / 32;
    std::vector<uint8_t> q(size_t(rows) * nb * 34);
    for (int64_t r = 0; r < rows; ++r)
      for (int b = 0; b < nb; ++b) {
        const float* x = &table[r * dim + b * 32];
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
        float d = amax / 127.f;
        uint16_t dh = f32_to_f16(d);
        uint8_t* blk = &q[(size_t(r) * nb + b) * 34];
        std::memcpy(blk, &dh, 2);
        for (int j = 0; j < 32; ++j) blk[2 + j] = uint8_t(int8_t(d ? std::lround(x[j] / d) : 0));
      }
    Dev dt(q.size());
    dt.put(q);
    fill_ref([&](int64_t j) {
      int64_t r = j / dim;
      int i = int(j % dim);
      const uint8_t* blk = &q[(size_t(r) * nb + i / 32) * 34];
      uint16_t dh;
      std::memcpy(&dh, blk, 2);
      return f16_to_f32(dh) * float(int8_t(blk[2 + i % 32]));
    });
    dout.poison();
    MXT_CHECK(mxc_embed_gather(dt.p, MXC_Q8_0, rows, dim, di.as<int32_t>(), ids.size(), dout.as<float>(), nullptr));
    expect_close("embed_gather q8_0", dout.get<float>(ref.size()), ref, 0);
  }
}

// ---------------------------------------------------------------- dequant
static void test_dequant(Rng& rng) {
  const int64_t n = 256 * 37;
  auto rand_half = [&](float lo, float hi) { return f32_to_f16(rng.uniform(lo, hi)); };
  auto run = [&](const char* name, mxc_dtype t, const std::vector<uint8_t>& src, const std::vector<float>& ref) {
    Dev ds(src.size()), dout(n * 2 + 16);
    ds.put(src);
    for (int offset : {0, 1}) {  // an output 2 bytes off 8-byte alignment takes the scalar kernels
      dout.poison();
      MXT_CHECK(mxc_dequant_bf16(ds.p, t, n, dout.as<uint16_t>() + offset, nullptr));
      auto out = dout.get<uint16_t>(n + 1);
      size_t bad = 0;
      for (int64_t i = 0; i < n; ++i) bad += out[i + offset] != f32_to_bf16(ref[i]);
      expect(std::string("dequant ") + name + " -> bf16 bit-exact vs CPU (n=9472)" + (offset ? ", unaligned out" : ""),
             bad == 0, std::to_string(bad) + " mismatches");
    }
  };
  {  // Q8_0
    std::vector<uint8_t> src(n / 32 * 34);
    std::vector<float> ref(n);
    for (int64_t b = 0; b < n / 32; ++b) {
      uint8_t* blk = &src[b * 34];
      uint16_t d = rand_half(-0.05f, 0.05f);
      std::memcpy(blk, &d, 2);
      for (int j = 0; j < 32; ++j) {
        blk[2 + j] = uint8_t(rng.u32());
        ref[b * 32 + j] = f16_to_f32(d) * float(int8_t(blk[2 + j]));
      }
    }
    run("q8_0", MXC_Q8_0, src, ref);
  }
  {  // Q4_K, as ggml dequantize_row_q4_K
    std::vector<uint8_t> src(n / 256 * 144);
    for (auto& b : src) b = uint8_t(rng.u32());
    std::vector<float> ref(n);
    for (int64_t b = 0; b < n / 256; ++b) {
      uint8_t* blk = &src[b * 144];
      uint16_t d = rand_half(-0.01f, 0.01f), dmin = rand_half(-0.01f, 0.01f);
      std::memcpy(blk, &d, 2);
      std::memcpy(blk + 2, &dmin, 2);
      const uint8_t* scales = blk + 4;
      const uint8_t* qs = blk + 16;
      float* y = &ref[b * 256];
      int is = 0;
      for (int j = 0; j < 256; j += 64) {
        auto scale_min = [&](int k, uint8_t* s, uint8_t* m) {
          if (k < 4) {
            *s = scales[k] & 63;
            *m = scales[k + 4] & 63;
          } else {
            *s = (scales[k + 4] & 0xF) | ((scales[k - 4] >> 6) << 4);
            *m = (scales[k + 4] >> 4) | ((scales[k] >> 6) << 4);
          }
        };
        uint8_t s, m;
        scale_min(is, &s, &m);
        float d1 = f16_to_f32(d) * s, m1 = f16_to_f32(dmin) * m;
        scale_min(is + 1, &s, &m);
        float d2 = f16_to_f32(d) * s, m2 = f16_to_f32(dmin) * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * (qs[l] & 0xF) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * (qs[l] >> 4) - m2;
        qs += 32;
        is += 2;
      }
    }
    run("q4_K", MXC_Q4_K, src, ref);
  }
  {  // Q6_K, as ggml dequantize_row_q6_K
    std::vector<uint8_t> src(n / 256 * 210);
    for (auto& b : src) b = uint8_t(rng.u32());
    std::vector<float> ref(n);
    for (int64_t b = 0; b < n / 256; ++b) {
      uint8_t* blk = &src[b * 210];
      uint16_t dh = rand_half(-0.01f, 0.01f);
      std::memcpy(blk + 208, &dh, 2);
      const float d = f16_to_f32(dh);
      const uint8_t* ql = blk;
      const uint8_t* qh = blk + 128;
      const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
      float* y = &ref[b * 256];
      for (int h = 0; h < 256; h += 128) {
        for (int l = 0; l < 32; ++l) {
          int is = l / 16;
          int q1 = int8_t((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
          int q2 = int8_t((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
          int q3 = int8_t((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
          int q4 = int8_t((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
          y[l] = d * sc[is] * q1;
          y[l + 32] = d * sc[is + 2] * q2;
          y[l + 64] = d * sc[is + 4] * q3;
          y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
      }
    }
    run("q6_K", MXC_Q6_K, src, ref);
  }
  {  // F16
    std::vector<uint8_t> src(n * 2);
    std::vector<float> ref(n);
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h = rand_half(-100.f, 100.f);
      std::memcpy(&src[i * 2], &h, 2);
      ref[i] = f16_to_f32(h);
    }
    run("f16", MXC_F16, src, ref);
  }
  expect_status("dequant: n not whole blocks is refused",
                mxc_dequant_bf16((void*)16, MXC_Q4_K, 100, (uint16_t*)16, nullptr), MXC_ERR_INVALID_ARG);
}

// ---------------------------------------------------------------- GEMM
static void test_gemm(Rng& rng) {
  // Two handles: the default (our kernel for m = 1, cuBLAS above when built in) and one that never uses
  // cuBLAS, so our kernel is checked at every m, the 129-row case included.
  mxc_blas* blas = nullptr;
  MXT_CHECK(mxc_blas_create(&blas, nullptr));
  setenv("MIXTILE_CUDA_NO_CUBLAS", "1", 1);
  mxc_blas* own = nullptr;
  MXT_CHECK(mxc_blas_create(&own, nullptr));
  unsetenv("MIXTILE_CUDA_NO_CUBLAS");
  struct S { int64_t n, k; const char* what; };
  for (S s : {S{512, 2048, "k/v proj"}, S{4096, 2048, "q proj"}, S{2048, 4096, "o proj"}, S{100, 72, "odd n"}})
    for (int64_t m : {1, 7, 129}) {
      if (s.n == 4096 && m == 129) continue;  // keeps the CPU reference short
      std::vector<uint16_t> x(m * s.k), w(s.n * s.k);
      for (auto& v : x) v = f32_to_bf16(rng.normal());
      for (auto& v : w) v = f32_to_bf16(rng.normal() * 0.02f);
      std::vector<float> xf = bf16_vec_to_f32(x), wf = bf16_vec_to_f32(w), ref(m * s.n);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < s.n; ++j) {
          double acc = 0;
          for (int64_t l = 0; l < s.k; ++l) acc += double(xf[i * s.k + l]) * wf[j * s.k + l];
          ref[i * s.n + j] = float(acc);
        }
      Dev dx(x.size() * 2), dw(w.size() * 2), dy(ref.size() * 4);
      dx.put(x);
      dw.put(w);
      for (mxc_blas* h : {blas, own}) {
        const bool cublas_path = h == blas && mxc_has_cublas() && m > 1;
        std::string name = std::string("gemm bf16 ") + (cublas_path ? "cuBLAS " : "own    ") + s.what +
                           " m=" + std::to_string(m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k);
        dy.poison();
        MXT_CHECK(mxc_gemm_bf16(h, m, s.n, s.k, dx.as<uint16_t>(), dw.as<uint16_t>(), dy.p, MXC_F32, 0.f));
        expect_close(name + " ->f32", dy.get<float>(ref.size()), ref, 1e-4);
        // beta = 1 accumulates onto the previous result: 2 * ref.
        MXT_CHECK(mxc_gemm_bf16(h, m, s.n, s.k, dx.as<uint16_t>(), dw.as<uint16_t>(), dy.p, MXC_F32, 1.f));
        std::vector<float> ref2(ref);
        for (auto& v : ref2) v *= 2;
        expect_close(name + " ->f32 beta=1", dy.get<float>(ref.size()), ref2, 1e-4);
        dy.poison();
        MXT_CHECK(mxc_gemm_bf16(h, m, s.n, s.k, dx.as<uint16_t>(), dw.as<uint16_t>(), dy.p, MXC_BF16, 0.f));
        expect_close(name + " ->bf16", bf16_vec_to_f32(dy.get<uint16_t>(ref.size())), ref, 8e-3);
      }
    }
  expect_status("gemm: k not a multiple of 8 without cuBLAS is refused",
                mxc_gemm_bf16(own, 1, 16, 12, (const uint16_t*)256, (const uint16_t*)256, (void*)256, MXC_F32, 0.f),
                MXC_ERR_UNSUPPORTED);
  MXT_CHECK(mxc_blas_destroy(blas));
  MXT_CHECK(mxc_blas_destroy(own));
}

// ---------------------------------------------------------------- quantized GEMV
// mxc_gemv_quant on random blocks of each GGUF type (d / dmin set to sane halves, every other byte random)
// against a double dot with the addon's scalar dequantize_row (ggml-exact). Rows not a multiple of the 4 warps
// of a block (1, 7, 100, 513), K = 768 / 2048 / 4096 (a lane's units not a multiple of its 4 in flight) and, for
// Q8_0, 800 (25 blocks: lanes without a unit); m = 1, 3, 9 (9: a second pass over w), y with a row stride past n,
// f32 and bf16 outputs, beta = 1. Q6_K / Q8_0 blocks start at both 4-byte phases (odd blocks), as the GPU reads
// them in realigned 32-bit words. mxc_gemv_quant_multi: q/k/v-like jobs of mixed types in one launch.
static std::vector<uint8_t> rand_blocks(Rng& rng, mxc_dtype t, int64_t rows, int64_t k) {
  const size_t row_bytes = mxc_dtype_bytes(t, k);
  std::vector<uint8_t> w(size_t(rows) * row_bytes);
  for (auto& b : w) b = uint8_t(rng.u32());
  const int qk = t == MXC_Q8_0 ? 32 : 256;
  const size_t bb = mxc_dtype_bytes(t, qk);
  for (size_t b = 0; b < w.size() / bb; ++b) {
    uint8_t* blk = &w[b * bb];
    const uint16_t d = f32_to_f16(rng.uniform(-0.02f, 0.02f)), dmin = f32_to_f16(rng.uniform(-0.01f, 0.01f));
    const size_t d_at = t == MXC_Q6_K ? 208 : 0;
    std::memcpy(blk + d_at, &d, 2);
    if (t == MXC_Q4_K || t == MXC_Q5_K) std::memcpy(blk + 2, &dmin, 2);
  }
  return w;
}

static void test_gemv_quant(Rng& rng) {
  struct T { mxc_dtype t; const char* name; };
  for (T ty : {T{MXC_Q8_0, "q8_0"}, T{MXC_Q4_K, "q4_K"}, T{MXC_Q5_K, "q5_K"}, T{MXC_Q6_K, "q6_K"}})
    for (int64_t k : {int64_t(768), int64_t(2048), int64_t(4096), int64_t(800)}) {
      if (k == 800 && ty.t != MXC_Q8_0) continue;
      for (int64_t n : {int64_t(1), int64_t(7), int64_t(100), int64_t(513)}) {
        if (k == 4096 && n == 513 && ty.t != MXC_Q4_K) continue;  // keeps the CPU reference short
        const size_t row_bytes = mxc_dtype_bytes(ty.t, k);
        auto w = rand_blocks(rng, ty.t, n, k);
        std::vector<float> wf(size_t(n * k));
        for (int64_t r = 0; r < n; ++r) mixtile::dequantize_row(mixtile::GgmlType(ty.t), &w[size_t(r) * row_bytes], &wf[size_t(r * k)], k);
        Dev dw(w.size());
        dw.put(w);
        for (int64_t m : {int64_t(1), int64_t(3), int64_t(9)}) {
          if (m == 9 && n > 100) continue;
          const int64_t ldy = m == 1 ? n : n + 3;
          std::vector<uint16_t> x(size_t(m * k));
          for (auto& v : x) v = f32_to_bf16(rng.normal());
          std::vector<float> ref(size_t(m * ldy), 0.f);
          for (int64_t i = 0; i < m; ++i)
            for (int64_t r = 0; r < n; ++r) {
              double acc = 0;
              for (int64_t l = 0; l < k; ++l) acc += double(bf16_to_f32(x[size_t(i * k + l)])) * wf[size_t(r * k + l)];
              ref[size_t(i * ldy + r)] = float(acc);
            }
          auto pick = [&](const std::vector<float>& full) {  // the written elements only (the stride's gap stays poisoned)
            std::vector<float> o;
            for (int64_t i = 0; i < m; ++i)
              for (int64_t r = 0; r < n; ++r) o.push_back(full[size_t(i * ldy + r)]);
            return o;
          };
          Dev dx(x.size() * 2), dy(ref.size() * 4);
          dx.put(x);
          const std::string name = std::string("gemv ") + ty.name + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
                                   " k=" + std::to_string(k) + (ldy != n ? " ldy=n+3" : "");
          dy.poison();
          MXT_CHECK(mxc_gemv_quant(m, n, k, dx.as<uint16_t>(), dw.p, ty.t, dy.p, MXC_F32, ldy, 0.f, nullptr));
          auto out = dy.get<float>(ref.size());
          expect_close(name + " ->f32", pick(out), pick(ref), 1e-4);
          MXT_CHECK(mxc_gemv_quant(m, n, k, dx.as<uint16_t>(), dw.p, ty.t, dy.p, MXC_F32, ldy, 1.f, nullptr));
          std::vector<float> ref2(ref);
          for (auto& v : ref2) v *= 2;
          expect_close(name + " ->f32 beta=1", pick(dy.get<float>(ref.size())), pick(ref2), 1e-4);
          if (m == 3) {
            dy.poison();
            MXT_CHECK(mxc_gemv_quant(m, n, k, dx.as<uint16_t>(), dw.p, ty.t, dy.p, MXC_BF16, ldy, 0.f, nullptr));
            auto ob = dy.get<uint16_t>(ref.size());
            std::vector<float> of(ref.size());
            for (size_t i = 0; i < of.size(); ++i) of[i] = bf16_to_f32(ob[i]);
            expect_close(name + " ->bf16", pick(of), pick(ref), 8e-3);
          }
        }
      }
    }
  expect_status("gemv_quant: k not whole blocks is refused",
                mxc_gemv_quant(1, 4, 100, (const uint16_t*)256, (const void*)256, MXC_Q4_K, (void*)256, MXC_F32, 4, 0.f, nullptr),
                MXC_ERR_INVALID_ARG);
  expect_status("gemv_quant: F16 weights are refused (mxc_gemm_bf16 serves them)",
                mxc_gemv_quant(1, 4, 256, (const uint16_t*)256, (const void*)256, MXC_F16, (void*)256, MXC_F32, 4, 0.f, nullptr),
                MXC_ERR_INVALID_ARG);
  expect_status("gemv_quant: ldy < n is refused",
                mxc_gemv_quant(2, 4, 256, (const uint16_t*)256, (const void*)256, MXC_Q8_0, (void*)256, MXC_F32, 3, 0.f, nullptr),
                MXC_ERR_INVALID_ARG);
  expect_status("gemv_quant: Q4_K weights not 16-byte aligned are refused",
                mxc_gemv_quant(1, 4, 256, (const uint16_t*)256, (const void*)260, MXC_Q4_K, (void*)256, MXC_F32, 4, 0.f, nullptr),
                MXC_ERR_INVALID_ARG);
  expect_status("gemv_quant: Q6_K weights at an odd address are refused",
                mxc_gemv_quant(1, 4, 256, (const uint16_t*)256, (const void*)257, MXC_Q6_K, (void*)256, MXC_F32, 4, 0.f, nullptr),
                MXC_ERR_INVALID_ARG);
  expect_status("gemv_quant: x not 16-byte aligned is refused",
                mxc_gemv_quant(1, 4, 256, (const uint16_t*)264, (const void*)256, MXC_Q8_0, (void*)256, MXC_F32, 4, 0.f, nullptr),
                MXC_ERR_INVALID_ARG);
}

// mxc_gemv_quant_multi: q (Q4_K, 100 rows), k (Q4_K, 7), v (Q6_K, 33), o-like (Q8_0, 5) sharing x, each into its own
// y (strided past n for m = 3), against the same double reference as above; beta = 1 doubles every job's y.
// Then the refusals: no jobs, five jobs, one bad job among good ones.
static void test_gemv_quant_multi(Rng& rng) {
  const int64_t k = 2048;
  struct J { mxc_dtype t; int64_t n; };
  const J js[] = {{MXC_Q4_K, 100}, {MXC_Q4_K, 7}, {MXC_Q6_K, 33}, {MXC_Q8_0, 5}};
  for (int n_jobs : {3, 4})
    for (int64_t m : {int64_t(1), int64_t(3)}) {
      std::vector<uint16_t> x(size_t(m * k));
      for (auto& v : x) v = f32_to_bf16(rng.normal());
      Dev dx(x.size() * 2);
      dx.put(x);
      std::vector<std::unique_ptr<Dev>> dw, dy;
      std::vector<std::vector<float>> refs;
      std::vector<mxc_gemv_job> jobs;
      for (int j = 0; j < n_jobs; ++j) {
        const J& jb = js[j];
        const int64_t ldy = m == 1 ? jb.n : jb.n + 3;
        const size_t row_bytes = mxc_dtype_bytes(jb.t, k);
        auto w = rand_blocks(rng, jb.t, jb.n, k);
        std::vector<float> wf(size_t(jb.n * k)), ref(size_t(m * ldy), 0.f);
        for (int64_t r = 0; r < jb.n; ++r)
          mixtile::dequantize_row(mixtile::GgmlType(jb.t), &w[size_t(r) * row_bytes], &wf[size_t(r * k)], k);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t r = 0; r < jb.n; ++r) {
            double acc = 0;
            for (int64_t l = 0; l < k; ++l) acc += double(bf16_to_f32(x[size_t(i * k + l)])) * wf[size_t(r * k + l)];
            ref[size_t(i * ldy + r)] = float(acc);
          }
        dw.push_back(std::make_unique<Dev>(w.size()));
        dw.back()->put(w);
        dy.push_back(std::make_unique<Dev>(ref.size() * 4));
        dy.back()->poison();
        refs.push_back(ref);
        jobs.push_back(mxc_gemv_job{dw.back()->p, jb.t, jb.n, dy.back()->p, ldy});
      }
      auto check = [&](const std::string& what, float mult) {
        for (int j = 0; j < n_jobs; ++j) {
          std::vector<float> o, r;
          auto out = dy[size_t(j)]->get<float>(refs[size_t(j)].size());
          for (int64_t i = 0; i < m; ++i)
            for (int64_t c = 0; c < js[j].n; ++c) {
              o.push_back(out[size_t(i * jobs[size_t(j)].ldy + c)]);
              r.push_back(mult * refs[size_t(j)][size_t(i * jobs[size_t(j)].ldy + c)]);
            }
          expect_close("gemv multi " + std::to_string(n_jobs) + " jobs m=" + std::to_string(m) + " job " +
                           std::to_string(j) + " n=" + std::to_string(js[j].n) + what,
                       o, r, 1e-4);
        }
      };
      MXT_CHECK(mxc_gemv_quant_multi(m, k, dx.as<uint16_t>(), jobs.data(), n_jobs, MXC_F32, 0.f, nullptr));
      check("", 1.f);
      MXT_CHECK(mxc_gemv_quant_multi(m, k, dx.as<uint16_t>(), jobs.data(), n_jobs, MXC_F32, 1.f, nullptr));
      check(" beta=1", 2.f);
    }
  const mxc_gemv_job good{(const void*)256, MXC_Q4_K, 4, (void*)256, 4};
  const mxc_gemv_job five[5] = {good, good, good, good, good};
  expect_status("gemv multi: no jobs are refused",
                mxc_gemv_quant_multi(1, 256, (const uint16_t*)256, five, 0, MXC_F32, 0.f, nullptr), MXC_ERR_INVALID_ARG);
  expect_status("gemv multi: more than MXC_GEMV_MAX_JOBS jobs are refused",
                mxc_gemv_quant_multi(1, 256, (const uint16_t*)256, five, 5, MXC_F32, 0.f, nullptr), MXC_ERR_INVALID_ARG);
  const mxc_gemv_job bad[2] = {good, mxc_gemv_job{(const void*)256, MXC_F16, 4, (void*)256, 4}};
  expect_status("gemv multi: an F16 job among Q4_K ones is refused",
                mxc_gemv_quant_multi(1, 256, (const uint16_t*)256, bad, 2, MXC_F32, 0.f, nullptr), MXC_ERR_INVALID_ARG);
}

// f32 GEMM (the router): awkward m (1, 5, 130 rows: passes of 4 and a partial one), n not a multiple of
// the 8 warps of a block, k not a multiple of 32 lanes. Against a double-precision reference.
static void test_gemm_f32(Rng& rng) {
  struct S { int64_t n, k; };
  for (S s : {S{128, 2048}, S{13, 77}})
    for (int64_t m : {1, 5, 130}) {
      std::vector<float> x(m * s.k), w(s.n * s.k), ref(m * s.n);
      for (auto& v : x) v = rng.normal();
      for (auto& v : w) v = rng.normal() * 0.05f;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < s.n; ++j) {
          double acc = 0;
          for (int64_t l = 0; l < s.k; ++l) acc += double(x[i * s.k + l]) * w[j * s.k + l];
          ref[i * s.n + j] = float(acc);
        }
      Dev dx(x.size() * 4), dw(w.size() * 4), dy(ref.size() * 4);
      dx.put(x);
      dw.put(w);
      dy.poison();
      MXT_CHECK(mxc_gemm_f32(m, s.n, s.k, dx.as<float>(), dw.as<float>(), dy.as<float>(), nullptr));
      expect_close("gemm f32 m=" + std::to_string(m) + " n=" + std::to_string(s.n) + " k=" + std::to_string(s.k),
                   dy.get<float>(ref.size()), ref, 1e-6);
    }
  expect_status("gemm f32: a null pointer is refused", mxc_gemm_f32(1, 4, 4, nullptr, nullptr, nullptr, nullptr),
                MXC_ERR_INVALID_ARG);
}

// ---------------------------------------------------------------- attention
struct KvHost {
  int n_seq, kv_heads, D;
  int64_t cap;
  mxc_dtype type;
  std::vector<float> k, v;  // [n_seq][cap][kv_heads][D], as stored (rounded to the cache type)
};

static float round_to(mxc_dtype t, float x) {
  return t == MXC_F16 ? f16_to_f32(f32_to_f16(x)) : bf16_to_f32(f32_to_bf16(x));
}

// Fills positions [0, len) of sequence `seq` through mxc_kv_store (in two pieces, to test pos arrays).
static void fill_kv(Rng& rng, KvHost& h, const mxc_kv_layer& kv, int seq, int64_t len) {
  const int64_t row = int64_t(h.kv_heads) * h.D;
  for (int64_t start = 0; start < len;) {
    int64_t cnt = std::min<int64_t>(len - start, start == 0 ? std::max<int64_t>(1, len / 3) : len);
    auto k = rng.normals(cnt * row), v = rng.normals(cnt * row);
    std::vector<int32_t> pos(cnt);
    for (int64_t t = 0; t < cnt; ++t) pos[t] = int32_t(start + t);
    Dev dk(k.size() * 4), dv(v.size() * 4), dp(cnt * 4);
    dk.put(k);
    dv.put(v);
    dp.put(pos);
    MXT_CHECK(mxc_kv_store(&kv, seq, dk.as<float>(), dv.as<float>(), dp.as<int32_t>(), cnt, nullptr));
    for (int64_t t = 0; t < cnt; ++t)
      for (int64_t e = 0; e < row; ++e) {
        size_t dst = (size_t(seq) * h.cap + start + t) * row + e;
        h.k[dst] = round_to(h.type, k[t * row + e]);
        h.v[dst] = round_to(h.type, v[t * row + e]);
      }
    start += cnt;
  }
  MXT_CHECK(mxc_stream_sync(nullptr));
}

// out[h][:] for one query at position qpos seeing cache positions [0, qpos] of `seq`.
static void ref_attend(const KvHost& h, int seq, const float* q, int heads, int64_t nkeys, float scale, float* out) {
  const int G = heads / h.kv_heads;
  std::vector<double> s(nkeys);
  for (int hh = 0; hh < heads; ++hh) {
    int kvh = hh / G;
    double mx = -1e300;
    for (int64_t p = 0; p < nkeys; ++p) {
      const float* kr = &h.k[((size_t(seq) * h.cap + p) * h.kv_heads + kvh) * h.D];
      double d = 0;
      for (int i = 0; i < h.D; ++i) d += double(q[hh * h.D + i]) * kr[i];
      s[p] = d * scale;
      mx = std::max(mx, s[p]);
    }
    double sum = 0;
    for (int64_t p = 0; p < nkeys; ++p) sum += (s[p] = std::exp(s[p] - mx));
    for (int i = 0; i < h.D; ++i) {
      double o = 0;
      for (int64_t p = 0; p < nkeys; ++p) o += s[p] * h.v[((size_t(seq) * h.cap + p) * h.kv_heads + kvh) * h.D + i];
      out[hh * h.D + i] = nkeys ? float(o / sum) : 0.f;
    }
  }
}

static void test_attention(Rng& rng) {
  struct Cfg { int D, heads, kv_heads; mxc_dtype type; };
  for (Cfg c : {Cfg{128, 32, 4, MXC_BF16}, Cfg{128, 8, 8, MXC_F16}, Cfg{64, 16, 2, MXC_F16}, Cfg{64, 16, 1, MXC_BF16}}) {
    const char* tn = c.type == MXC_F16 ? "f16" : "bf16";
    const double tol = c.type == MXC_F16 ? 3e-3 : 1.5e-2;
    const float scale = 1.f / std::sqrt(float(c.D));
    KvHost h{3, c.kv_heads, c.D, 4200, c.type, {}, {}};
    h.k.assign(size_t(h.n_seq) * h.cap * c.kv_heads * c.D, 0.f);
    h.v = h.k;
    Dev dk(h.k.size() * 2), dv(h.v.size() * 2);
    dk.poison();  // NaN everywhere not written: reading past the visible keys shows up as NaN
    dv.poison();
    mxc_kv_layer kv{dk.p, dv.p, c.type, h.n_seq, h.cap, c.kv_heads, c.D};
    const int64_t lens[3] = {4096, 100, 1};
    for (int sq = 0; sq < 3; ++sq) fill_kv(rng, h, kv, sq, lens[sq]);

    // Prefill: queries at positions [pos0, pos0 + tokens) of a sequence whose cache holds [0, len). Token
    // counts off the 64-query tile and 16-row warp slices (1, 7, 17, 65, 100, 129), starts off the 64-key
    // tile (35, 1000, 2000, 3967), and chunks ending before the written length (the rest of the cache is NaN).
    struct P { int seq; int64_t tokens, pos0; };
    for (P p : {P{2, 1, 0}, P{1, 7, 0}, P{1, 100, 0}, P{0, 129, 4096 - 129}, P{0, 1, 4095}, P{0, 7, 1000},
                P{0, 17, 0}, P{0, 17, 2000}, P{1, 65, 35}}) {
      auto q = rng.normals(size_t(p.tokens) * c.heads * c.D);
      std::vector<float> ref(q.size());
      for (int64_t t = 0; t < p.tokens; ++t)
        ref_attend(h, p.seq, &q[t * c.heads * c.D], c.heads, p.pos0 + t + 1, scale, &ref[t * c.heads * c.D]);
      Dev dq(q.size() * 4), dout(q.size() * 4);
      dq.put(q);
      dout.poison();
      MXT_CHECK(mxc_attention_prefill(&kv, p.seq, dq.as<float>(), p.tokens, c.heads, p.pos0, scale, dout.as<float>(),
                                      nullptr));
      char name[160];
      std::snprintf(name, sizeof name, "prefill %s D=%d %d/%d heads tokens=%lld pos0=%lld", tn, c.D, c.heads,
                    c.kv_heads, (long long)p.tokens, (long long)p.pos0);
      expect_close(name, dout.get<float>(q.size()), ref, tol);
    }

    // Decode: 4 rows over cache sequences {0, 1, 2, invalid}, lengths 4096 / 100 / 1 / -.
    for (int64_t variant = 0; variant < 2; ++variant) {
      std::vector<int32_t> seq_ids = {0, 1, 2, 7}, lens_v = {4096, 100, 1, 50};
      if (variant == 1) seq_ids = {2, 0, 1, -1}, lens_v = {1, 4000, 37, 10};
      const int64_t n = 4, max_len = 4096;
      auto q = rng.normals(size_t(n) * c.heads * c.D);
      std::vector<float> ref(q.size(), 0.f);
      for (int64_t i = 0; i < n; ++i)
        if (seq_ids[i] >= 0 && seq_ids[i] < h.n_seq)
          ref_attend(h, seq_ids[i], &q[i * c.heads * c.D], c.heads, lens_v[i], scale, &ref[i * c.heads * c.D]);
      size_t ws_bytes = mxc_attention_decode_workspace_bytes(n, c.heads, c.D, max_len);
      Dev dq(q.size() * 4), dout(q.size() * 4), dsid(n * 4), dlen(n * 4), dws(ws_bytes);
      dq.put(q);
      dsid.put(seq_ids);
      dlen.put(lens_v);
      dout.poison();
      MXT_CHECK(mxc_attention_decode(&kv, dsid.as<int32_t>(), dlen.as<int32_t>(), max_len, dq.as<float>(), n,
                                     c.heads, scale, dout.as<float>(), dws.p, ws_bytes, nullptr));
      char name[160];
      std::snprintf(name, sizeof name, "decode %s D=%d %d/%d heads 4 seqs lens %d/%d/%d/%d%s", tn, c.D, c.heads,
                    c.kv_heads, lens_v[0], lens_v[1], lens_v[2], lens_v[3], " (one invalid)");
      expect_close(name, dout.get<float>(q.size()), ref, tol);
    }
  }
}

// A captured graph replays the same work: rmsnorm then add, launched twice on new inputs.
static void test_graph(Rng& rng) {
  const int rows = 7, n = 2048;
  Dev x(rows * n * 4), w(n * 4), y(rows * n * 4);
  w.put(rng.normals(n));
  mxc_stream* s;
  MXT_CHECK(mxc_stream_create(&s));
  mxc_graph* g;
  MXT_CHECK(mxc_graph_begin(s));
  MXT_CHECK(mxc_rmsnorm(x.as<float>(), w.as<float>(), y.p, MXC_F32, rows, n, 1e-6f, s));
  MXT_CHECK(mxc_add(y.as<float>(), x.as<float>(), y.as<float>(), rows * n, s));
  MXT_CHECK(mxc_graph_end(s, &g));
  for (int rep = 0; rep < 2; ++rep) {
    auto xv = rng.normals(rows * n);
    x.put(xv);
    MXT_CHECK(mxc_stream_sync(nullptr));
    Dev ref(rows * n * 4);
    MXT_CHECK(mxc_rmsnorm(x.as<float>(), w.as<float>(), ref.p, MXC_F32, rows, n, 1e-6f, nullptr));
    MXT_CHECK(mxc_add(ref.as<float>(), x.as<float>(), ref.as<float>(), rows * n, nullptr));
    MXT_CHECK(mxc_stream_sync(nullptr));
    y.poison();
    MXT_CHECK(mxc_stream_sync(nullptr));
    MXT_CHECK(mxc_graph_launch(g, s));
    MXT_CHECK(mxc_stream_sync(s));
    expect_close("graph: captured rmsnorm+add replay " + std::to_string(rep + 1), y.get<float>(rows * n),
                 ref.get<float>(rows * n), 0);
  }
  MXT_CHECK(mxc_graph_destroy(g));
  MXT_CHECK(mxc_stream_destroy(s));
}

// ---------------------------------------------------------------- routed experts (moe.cu)
// Q5_K dequant (bit-exact, as ggml dequantize_row_q5_K), row gather to bf16, the weighted combine,
// and one expert's whole path on raw Q5_K bytes: dequant -> gate/up GEMM -> SiLU*up -> down GEMM.
static std::vector<float> ref_dequant_q5_k(const std::vector<uint8_t>& src, int64_t n) {
  std::vector<float> ref(n);
  for (int64_t b = 0; b < n / 256; ++b) {
    const uint8_t* blk = &src[b * 176];
    uint16_t dh, mh;
    std::memcpy(&dh, blk, 2);
    std::memcpy(&mh, blk + 2, 2);
    const float d = f16_to_f32(dh), dmin = f16_to_f32(mh);
    const uint8_t* scales = blk + 4;
    const uint8_t* qh = blk + 16;
    const uint8_t* ql = blk + 48;
    float* y = &ref[b * 256];
    int is = 0;
    uint8_t u1 = 1, u2 = 2;
    auto scale_min = [&](int k, uint8_t* s, uint8_t* m) {
      if (k < 4) {
        *s = scales[k] & 63;
        *m = scales[k + 4] & 63;
      } else {
        *s = (scales[k + 4] & 0xF) | ((scales[k - 4] >> 6) << 4);
        *m = (scales[k + 4] >> 4) | ((scales[k] >> 6) << 4);
      }
    };
    for (int j = 0; j < 256; j += 64) {
      uint8_t sc, m;
      scale_min(is, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min(is + 1, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
  return ref;
}

static std::vector<uint8_t> rand_q5_k(Rng& rng, int64_t n, float scale) {
  std::vector<uint8_t> src(n / 256 * 176);
  for (auto& b : src) b = uint8_t(rng.u32());
  for (int64_t b = 0; b < n / 256; ++b) {
    uint16_t d = f32_to_f16(rng.uniform(-scale, scale)), dmin = f32_to_f16(rng.uniform(-scale, scale));
    std::memcpy(&src[b * 176], &d, 2);
    std::memcpy(&src[b * 176 + 2], &dmin, 2);
  }
  return src;
}

static void test_moe(Rng& rng) {
  {  // Q5_K dequant, aligned and unaligned output
    const int64_t n = 256 * 37;
    auto src = rand_q5_k(rng, n, 0.01f);
    auto ref = ref_dequant_q5_k(src, n);
    Dev ds(src.size()), dout(n * 2 + 16);
    ds.put(src);
    for (int offset : {0, 1}) {
      dout.poison();
      MXT_CHECK(mxc_dequant_bf16(ds.p, MXC_Q5_K, n, dout.as<uint16_t>() + offset, nullptr));
      auto out = dout.get<uint16_t>(n + 1);
      size_t bad = 0;
      for (int64_t i = 0; i < n; ++i) bad += out[i + offset] != f32_to_bf16(ref[i]);
      expect(std::string("dequant q5_K -> bf16 bit-exact vs CPU (n=9472)") + (offset ? ", unaligned out" : ""), bad == 0,
             std::to_string(bad) + " mismatches");
    }
    expect("dtype_bytes q5_K", mxc_dtype_bytes(MXC_Q5_K, 512) == 352 && mxc_dtype_bytes(MXC_Q5_K, 100) == 0);
  }
  for (int64_t hidden : {int64_t(2048), int64_t(130)}) {  // vectorised and scalar gather
    const int64_t n_x = 37, n_rows = 129;
    auto x = rng.normals(n_x * hidden, 3.f);
    std::vector<int32_t> rows(n_rows);
    for (auto& r : rows) r = int32_t(rng.u32() % (n_x + 2)) - 1;  // -1 and n_x: zero rows
    std::vector<float> ref(n_rows * hidden);
    for (int64_t r = 0; r < n_rows; ++r)
      for (int64_t c = 0; c < hidden; ++c)
        ref[r * hidden + c] = rows[r] >= 0 && rows[r] < n_x ? bf16_to_f32(f32_to_bf16(x[rows[r] * hidden + c])) : 0.f;
    Dev dx(x.size() * 4), dr(rows.size() * 4), dout(ref.size() * 2);
    dx.put(x);
    dr.put(rows);
    dout.poison();
    MXT_CHECK(mxc_gather_rows_bf16(dx.as<float>(), n_x, hidden, dr.as<int32_t>(), n_rows, dout.as<uint16_t>(), nullptr));
    expect_close("gather_rows_bf16 129 of 37 rows (out of range -> 0) hidden=" + std::to_string(hidden),
                 bf16_vec_to_f32(dout.get<uint16_t>(ref.size())), ref, 0);
  }
  for (int accumulate : {0, 1}) {  // combine, with slots computed elsewhere (pos -1)
    const int64_t n = 7, hidden = 130, n_o = 40;
    const int k = 8;
    auto o = rng.normals(n_o * hidden), y0 = rng.normals(n * hidden), w = rng.normals(n * k);
    std::vector<int32_t> pos(n * k);
    for (auto& p : pos) p = rng.u32() % 3 == 0 ? -1 : int32_t(rng.u32() % n_o);
    std::vector<float> ref(n * hidden);
    for (int64_t t = 0; t < n; ++t)
      for (int64_t c = 0; c < hidden; ++c) {
        float acc = accumulate ? y0[t * hidden + c] : 0.f;
        for (int j = 0; j < k; ++j)
          if (pos[t * k + j] >= 0) acc += w[t * k + j] * o[pos[t * k + j] * hidden + c];
        ref[t * hidden + c] = acc;
      }
    Dev dO(o.size() * 4), dy(y0.size() * 4), dp(pos.size() * 4), dw(w.size() * 4);
    dO.put(o);
    dy.put(y0);
    dp.put(pos);
    dw.put(w);
    MXT_CHECK(mxc_moe_combine(dO.as<float>(), n_o, hidden, dp.as<int32_t>(), dw.as<float>(), n, k, dy.as<float>(),
                              accumulate, nullptr));
    expect_close(std::string("moe_combine 7 tokens top-8, a third of slots elsewhere") + (accumulate ? ", accumulate" : ""),
                 dy.get<float>(ref.size()), ref, 1e-6);
  }
  {  // one expert on raw Q5_K bytes, 7 routed rows
    const int64_t H = 512, F = 256, m = 7;
    auto gq = rand_q5_k(rng, F * H, 0.004f), uq = rand_q5_k(rng, F * H, 0.004f), dq = rand_q5_k(rng, H * F, 0.004f);
    auto gf = ref_dequant_q5_k(gq, F * H), uf = ref_dequant_q5_k(uq, F * H), df = ref_dequant_q5_k(dq, H * F);
    auto x = rng.normals(m * H);
    auto rb = [](float v) { return bf16_to_f32(f32_to_bf16(v)); };
    std::vector<float> ref(m * H);
    for (int64_t t = 0; t < m; ++t) {
      std::vector<float> h(F);
      for (int64_t f = 0; f < F; ++f) {
        double g = 0, u = 0;
        for (int64_t i = 0; i < H; ++i) {
          g += double(rb(x[t * H + i])) * rb(gf[f * H + i]);
          u += double(rb(x[t * H + i])) * rb(uf[f * H + i]);
        }
        h[f] = rb(float(g / (1 + std::exp(-g)) * u));
      }
      for (int64_t c = 0; c < H; ++c) {
        double acc = 0;
        for (int64_t f = 0; f < F; ++f) acc += double(h[f]) * rb(df[c * F + f]);
        ref[t * H + c] = float(acc);
      }
    }
    std::vector<int32_t> rows(m);
    std::iota(rows.begin(), rows.end(), 0);
    Dev dg(gq.size()), du(uq.size()), dd(dq.size()), dwgu(2 * F * H * 2), dwd(H * F * 2), dx(x.size() * 4),
        drows(m * 4), dxg(m * H * 2), dgu(m * 2 * F * 4), dh(m * F * 2), dout(m * H * 4);
    dg.put(gq);
    du.put(uq);
    dd.put(dq);
    dx.put(x);
    drows.put(rows);
    mxc_blas* blas = nullptr;
    MXT_CHECK(mxc_blas_create(&blas, nullptr));
    MXT_CHECK(mxc_dequant_bf16(dg.p, MXC_Q5_K, F * H, dwgu.as<uint16_t>(), nullptr));
    MXT_CHECK(mxc_dequant_bf16(du.p, MXC_Q5_K, F * H, dwgu.as<uint16_t>() + F * H, nullptr));
    MXT_CHECK(mxc_dequant_bf16(dd.p, MXC_Q5_K, H * F, dwd.as<uint16_t>(), nullptr));
    MXT_CHECK(mxc_gather_rows_bf16(dx.as<float>(), m, H, drows.as<int32_t>(), m, dxg.as<uint16_t>(), nullptr));
    MXT_CHECK(mxc_gemm_bf16(blas, m, 2 * F, H, dxg.as<uint16_t>(), dwgu.as<uint16_t>(), dgu.p, MXC_F32, 0.f));
    MXT_CHECK(mxc_silu_mul(dgu.as<float>(), dgu.as<float>() + F, 2 * F, dh.p, MXC_BF16, m, int(F), nullptr));
    dout.poison();
    MXT_CHECK(mxc_gemm_bf16(blas, m, H, F, dh.as<uint16_t>(), dwd.as<uint16_t>(), dout.p, MXC_F32, 0.f));
    expect_close("expert on raw q5_K bytes: dequant, gate/up, silu*up, down (7 rows)", dout.get<float>(ref.size()), ref,
                 1e-2);
    MXT_CHECK(mxc_blas_destroy(blas));
  }
  expect_status("moe_combine: top_k 0 is refused",
                mxc_moe_combine(nullptr, 0, 16, (const int32_t*)16, (const float*)16, 1, 0, (float*)16, 0, nullptr),
                MXC_ERR_INVALID_ARG);
  expect_status("gather_rows_bf16: null rows is refused",
                mxc_gather_rows_bf16((const float*)16, 1, 16, nullptr, 1, (uint16_t*)16, nullptr), MXC_ERR_INVALID_ARG);
}

// ---------------------------------------------------------------- decode route
// mxc_moe_route against its definition, mxc_rmsnorm + mxc_gemm_f32 + mxc_router_topk on the same library: the
// same bits (xn, ids, weights), at awkward sizes (hidden not a multiple of the 512-float load batch, experts not
// a multiple of a block's 8, each top-k width 4 / 8 / 32), with outputs in device memory and in pinned host
// memory (mapped), and replayed from a graph with new inputs (the block counter must come back to zero).
static void test_moe_route(Rng& rng) {
  struct C { int hidden, experts, k; int64_t n; };
  for (C c : {C{2048, 128, 8, 1}, C{2048, 128, 8, 16}, C{100, 60, 4, 3}, C{4096, 200, 8, 2}, C{1000, 300, 6, 5},
              C{3000, 128, 8, 2}}) {
    const size_t xs = size_t(c.n) * c.hidden, rs = size_t(c.n) * c.k;
    Dev dx(xs * 4), dnw(size_t(c.hidden) * 4), dr(size_t(c.experts) * c.hidden * 4), dl(size_t(c.n) * c.experts * 4);
    Dev rxn(xs * 4), rl(size_t(c.n) * c.experts * 4), rid(rs * 4), rw(rs * 4), cnt(4);
    Dev oxn(xs * 4), oid(rs * 4), ow(rs * 4);
    dnw.put(rng.normals(c.hidden, 1.f));
    dr.put(rng.normals(size_t(c.experts) * c.hidden, 0.05f));
    MXT_CHECK(mxc_memset(cnt.p, 0, 4, nullptr));
    void* pinned = nullptr;
    MXT_CHECK(mxc_host_alloc(&pinned, (xs + 2 * rs) * 4));
    auto* hxn = static_cast<float*>(pinned);
    auto* hid = reinterpret_cast<int32_t*>(hxn + xs);
    auto* hw = reinterpret_cast<float*>(hid + rs);
    mxc_stream* st = nullptr;
    MXT_CHECK(mxc_stream_create(&st));
    const std::string name = "moe_route hidden=" + std::to_string(c.hidden) + " experts=" + std::to_string(c.experts) +
                             " k=" + std::to_string(c.k) + " n=" + std::to_string(c.n);
    auto reference = [&] {
      MXT_CHECK(mxc_rmsnorm(dx.as<float>(), dnw.as<float>(), rxn.p, MXC_F32, c.n, c.hidden, 1e-6f, nullptr));
      MXT_CHECK(mxc_gemm_f32(c.n, c.experts, c.hidden, rxn.as<float>(), dr.as<float>(), rl.as<float>(), nullptr));
      MXT_CHECK(mxc_router_topk(rl.as<float>(), c.n, c.experts, c.k, 1, rid.as<int32_t>(), rw.as<float>(), nullptr));
    };
    auto same = [&](const std::string& what, const float* xn, const int32_t* ids, const float* w) {
      auto exn = rxn.get<float>(xs);
      auto eid = rid.get<int32_t>(rs);
      auto ew = rw.get<float>(rs);
      expect(name + " " + what + ": xn bit-identical", std::memcmp(xn, exn.data(), xs * 4) == 0);
      expect(name + " " + what + ": ids identical", std::memcmp(ids, eid.data(), rs * 4) == 0);
      expect(name + " " + what + ": weights bit-identical", std::memcmp(w, ew.data(), rs * 4) == 0);
    };
    // Device outputs.
    dx.put(rng.normals(xs, 3.f));
    reference();
    oxn.poison();
    MXT_CHECK(mxc_moe_route(dx.as<float>(), dnw.as<float>(), 1e-6f, dr.as<float>(), c.n, c.hidden, c.experts, c.k, 1,
                            oxn.as<float>(), dl.as<float>(), oid.as<int32_t>(), ow.as<float>(), cnt.as<uint32_t>(),
                            nullptr));
    same("device", oxn.get<float>(xs).data(), oid.get<int32_t>(rs).data(), ow.get<float>(rs).data());
    // Pinned host outputs, from a graph replayed with two different inputs.
    mxc_graph* graph = nullptr;
    MXT_CHECK(mxc_graph_begin(st));
    MXT_CHECK(mxc_moe_route(dx.as<float>(), dnw.as<float>(), 1e-6f, dr.as<float>(), c.n, c.hidden, c.experts, c.k, 1,
                            hxn, dl.as<float>(), hid, hw, cnt.as<uint32_t>(), st));
    MXT_CHECK(mxc_graph_end(st, &graph));
    for (int rep = 0; rep < 2; ++rep) {
      dx.put(rng.normals(xs, 1.f + rep));
      reference();
      std::memset(pinned, 0xff, (xs + 2 * rs) * 4);
      MXT_CHECK(mxc_stream_sync(nullptr));  // st does not wait for the legacy stream's copy of x
      MXT_CHECK(mxc_graph_launch(graph, st));
      MXT_CHECK(mxc_stream_sync(st));
      same("pinned, graph launch " + std::to_string(rep + 1), hxn, hid, hw);
    }
    MXT_CHECK(mxc_graph_destroy(graph));
    MXT_CHECK(mxc_stream_destroy(st));
    MXT_CHECK(mxc_host_free(pinned));
  }
  expect_status("moe_route: hidden 8193 is refused",
                mxc_moe_route((const float*)16, (const float*)16, 1e-6f, (const float*)16, 1, 8193, 128, 8, 1,
                              (float*)16, (float*)16, (int32_t*)16, (float*)16, (uint32_t*)16, nullptr),
                MXC_ERR_INVALID_ARG);
}

// mxc_add_when_ready: queued before the host has the sum; the host writes it and sets the flag a little later
// (on a GPU the kernel polls meanwhile), then x == x0 + sum exactly and the flag is back to 0; twice with the
// same flag (its reuse by the next layer), at 1 element, one row and 16 rows + 5.
static void test_add_when_ready(Rng& rng) {
  for (int64_t n : {int64_t(1), int64_t(2048), int64_t(16 * 2048 + 5)}) {
    Dev dx(size_t(n) * 4);
    void* pinned = nullptr;
    MXT_CHECK(mxc_host_alloc(&pinned, size_t(n) * 4 + 64));
    auto* sum = static_cast<float*>(pinned);
    auto* flag = reinterpret_cast<volatile uint32_t*>(sum + n);
    *flag = 0;
    mxc_stream* st = nullptr;
    MXT_CHECK(mxc_stream_create(&st));
    for (int rep = 0; rep < 2; ++rep) {
      auto x0 = rng.normals(size_t(n));
      dx.put(x0);
      MXT_CHECK(mxc_stream_sync(nullptr));
      MXT_CHECK(mxc_add_when_ready(dx.as<float>(), sum, n, const_cast<uint32_t*>(flag), st));
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      auto add = rng.normals(size_t(n));
      std::memcpy(sum, add.data(), size_t(n) * 4);
      std::atomic_thread_fence(std::memory_order_release);
      *flag = 1u;
      MXT_CHECK(mxc_stream_sync(st));
      auto got = dx.get<float>(size_t(n));
      int64_t bad = 0;
      for (int64_t i = 0; i < n; ++i) bad += got[size_t(i)] != x0[size_t(i)] + add[size_t(i)];
      const std::string name = "add_when_ready n=" + std::to_string(n) + " pass " + std::to_string(rep + 1);
      expect(name + ": x + sum exact", bad == 0, std::to_string(bad) + " mismatches");
      expect(name + ": flag cleared", *flag == 0u, "flag " + std::to_string(*flag));
    }
    MXT_CHECK(mxc_stream_destroy(st));
    MXT_CHECK(mxc_host_free(pinned));
  }
}

int main() {
  Rng rng(20261125);
  test_probe();
  int n = 0;
  if (mxc_device_count(&n) != MXC_OK || n == 0) {
    std::printf("SKIP: no CUDA device: %s\n", mxc_last_error());
    return 0;
  }
  test_rmsnorm(rng);
  test_rope(rng);
  test_silu_add_convert(rng);
  test_router(rng);
  test_embed(rng);
  test_dequant(rng);
  test_gemm(rng);
  test_gemm_f32(rng);
  test_gemv_quant(rng);
  test_gemv_quant_multi(rng);
  test_attention(rng);
  test_graph(rng);
  test_moe(rng);
  test_moe_route(rng);
  test_add_when_ready(rng);
  std::printf("\n%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
