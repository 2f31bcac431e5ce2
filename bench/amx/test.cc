// amx-test: every AMX path (BF16, INT8 g32/g64/g128, INT8 with BF16 down g64/g32) and the AVX-512 path over the same panels,
// against a float64 reference replaying the kernels' rounding, at awkward sizes: 1/3/17/129
// tokens on one expert, K and N off the tile sizes, an expert with no tokens. Also the INT8 and
// BF16 error against unquantized weights on 30B-A3B expert shapes (issue 8 item 4).
// Exit status 1 on any failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "common.h"
#include "cpu/amx/kernels.h"
#include "threadpool.h"

using mixtile::amx::Dtype;

namespace {

int failures = 0;

struct Route {
  std::vector<int32_t> ids;
  std::vector<float> w;
};

// Expert 0 gets every token (M = n); the other slots pick among 1 .. E-2; expert E-1 gets none.
Route route(int64_t n, int top_k, int64_t E, uint64_t seed) {
  bench::Rng r(seed);
  Route rt;
  for (int64_t t = 0; t < n; ++t) {
    std::vector<int32_t> used{0};
    while (int(used.size()) < top_k) {
      const int32_t e = 1 + int32_t(r.next() % uint64_t(E - 2));
      if (std::find(used.begin(), used.end(), e) == used.end()) used.push_back(e);
    }
    for (int j = 0; j < top_k; ++j) {
      rt.ids.push_back(used[size_t(j)]);
      rt.w.push_back(float(0.1 + 0.9 * r.uniform()));
    }
  }
  return rt;
}

// A packing variant: dtype, INT8 group, and INT8 gate+up with BF16 down (h in BF16).
struct Variant {
  Dtype dt;
  int group;
  bool down_bf16;
};
const Variant kVariants[] = {
    {Dtype::bf16, 0, false}, {Dtype::int8, 32, false}, {Dtype::int8, 64, false}, {Dtype::int8, 128, false},
    {Dtype::int8, 64, true}, {Dtype::int8, 32, true}};

const char* dtname(Dtype d, int g, bool down_bf16 = false) {
  static char buf[32];
  if (d == Dtype::bf16) return "bf16";
  std::snprintf(buf, sizeof buf, "int8-g%d%s", g, down_bf16 ? "+bf16dn" : "");
  return buf;
}

void check_case(const Variant& v, int64_t E, int64_t H, int64_t F, int top_k, const std::vector<int64_t>& tokens,
                uint64_t seed) {
  const Dtype dt = v.dt;
  const int group = v.group;
  bench::Experts w{E, H, F, {}, {}, {}};
  bench::random_weights(w.gate, size_t(E * F * H), 0.05f, seed + 1);
  bench::random_weights(w.up, size_t(E * F * H), 0.05f, seed + 2);
  bench::random_weights(w.down, size_t(E * H * F), 0.05f, seed + 3);
  auto pe = bench::pack(w, dt, group, v.down_bf16);
  for (int64_t n : tokens) {
    std::vector<float> x;
    bench::random_acts(x, n, H, seed + 10 + uint64_t(n));
    Route rt = route(n, top_k, E, seed + 20 + uint64_t(n));
    std::vector<double> ref;
    bench::reference(w, true, dt, group, x.data(), n, rt.ids.data(), rt.w.data(), top_k, ref, v.down_bf16);
    // 0: all AMX, INT_MAX: all AVX-512, -1: the default switch.
    std::vector<float> y_amx;
    for (int min_tokens : {0, std::numeric_limits<int>::max(), -1}) {
      std::vector<float> y(size_t(n * H), std::numeric_limits<float>::quiet_NaN());
      mixtile::amx::experts_forward(*pe, {x.data(), n, rt.ids.data(), rt.w.data(), top_k, y.data(), min_tokens});
      if (min_tokens == 0) y_amx = y;
      // All-INT8: the AVX-512 VNNI path over the panels makes the same int32 sums and the same float
      // scaling steps in the same order as the tile kernel, so the outputs are equal bit for bit
      // (the whole-model accuracy on CPUs without AMX relies on it: bench/amx/accuracy-here.sh).
      if (dt == Dtype::int8 && !v.down_bf16 && min_tokens > 0 &&
          std::memcmp(y.data(), y_amx.data(), y.size() * sizeof(float)) != 0) {
        ++failures;
        std::printf("FAIL %-14s n=%ld: the AVX-512 path's outputs differ from the AMX path's\n",
                    dtname(dt, group, v.down_bf16), long(n));
      }
      bool finite = true;
      for (float v : y) finite = finite && std::isfinite(v);
      const double err = bench::rel_l2(y.data(), ref);
      // Exact replay: only the F32 accumulation order and rare one-step differences in the
      // rounding of h separate kernel and reference.
      const double tol = dt == Dtype::bf16 ? 2e-3 : 5e-3;
      const bool ok = finite && err < tol;
      if (!ok) ++failures;
      std::printf("%s %-14s E=%ld H=%ld F=%ld top_k=%d n=%-4ld path=%-7s rel_err=%.2e %s\n", ok ? "ok  " : "FAIL",
                  dtname(dt, group, v.down_bf16), long(E), long(H), long(F), top_k, long(n),
                  min_tokens == 0 ? "amx" : (min_tokens < 0 ? "switch" : "avx512"), err,
                  finite ? "" : "(unwritten or non-finite outputs)");
    }
  }
}

// Q4K panels from random Q4_K weights (down Q4_K, or F32 rows -> INT8 group-32 panels as a Q6_K
// down gets): all-AMX, all-AVX-512 (bit-identical to AMX) and the default switch against the
// float64 replay. hidden is whole Q4_K super-blocks; ffn too where down is Q4_K, else any size.
void check_q4k_case(int64_t E, int64_t H, int64_t F, int top_k, bool down_q4k, const std::vector<int64_t>& tokens,
                    uint64_t seed, int act_group = 32) {
  std::vector<uint8_t> qg, qu, qd;
  bench::random_q4k(qg, E * F, H, seed + 1);
  bench::random_q4k(qu, E * F, H, seed + 2);
  bench::Experts w{E, H, F, {}, {}, {}};
  bench::dequantize_q4k(qg, E * F, H, w.gate);
  bench::dequantize_q4k(qu, E * F, H, w.up);
  if (down_q4k) {
    bench::random_q4k(qd, E * H, F, seed + 3);
    bench::dequantize_q4k(qd, E * H, F, w.down);
  } else {
    bench::random_weights(w.down, size_t(E * H * F), 0.05f, seed + 3);
  }
  auto blocks = [](const std::vector<uint8_t>& b, int64_t n_rows, int64_t k) {
    const size_t row_bytes = size_t(k / mixtile::QK_K) * sizeof(mixtile::block_q4_K);
    return [&b, n_rows, row_bytes](int64_t e, int64_t r) { return b.data() + size_t(e * n_rows + r) * row_bytes; };
  };
  const mixtile::amx::BlockRowFn down_blocks = blocks(qd, H, F);
  const auto pe = mixtile::amx::pack_experts_q4k(
      E, H, F, blocks(qg, F, H), blocks(qu, F, H), down_q4k ? &down_blocks : nullptr,
      [&w](int64_t e, int64_t r, float* dst) { std::memcpy(dst, &w.down[size_t((e * w.H + r) * w.F)], size_t(w.F) * 4); },
      {}, act_group);
  char name[32];
  std::snprintf(name, sizeof name, "q4k-a%d%s", act_group, down_q4k ? "" : "+int8dn");
  for (int64_t n : tokens) {
    std::vector<float> x;
    bench::random_acts(x, n, H, seed + 10 + uint64_t(n));
    Route rt = route(n, top_k, E, seed + 20 + uint64_t(n));
    std::vector<double> ref;
    bench::reference_q4k(w, !down_q4k, x.data(), n, rt.ids.data(), rt.w.data(), top_k, ref, act_group);
    std::vector<float> y_amx;
    for (int min_tokens : {0, std::numeric_limits<int>::max(), -1}) {
      std::vector<float> y(size_t(n * H), std::numeric_limits<float>::quiet_NaN());
      mixtile::amx::experts_forward(*pe, {x.data(), n, rt.ids.data(), rt.w.data(), top_k, y.data(), min_tokens});
      if (min_tokens == 0) y_amx = y;
      if (min_tokens > 0 && std::memcmp(y.data(), y_amx.data(), y.size() * sizeof(float)) != 0) {
        ++failures;
        std::printf("FAIL %-14s n=%ld: the AVX-512 path's outputs differ from the AMX path's\n", name, long(n));
      }
      bool finite = true;
      for (float v : y) finite = finite && std::isfinite(v);
      const double err = bench::rel_l2(y.data(), ref);
      const bool ok = finite && err < 5e-3;
      if (!ok) ++failures;
      std::printf("%s %-14s E=%ld H=%ld F=%ld top_k=%d n=%-4ld path=%-7s rel_err=%.2e %s\n", ok ? "ok  " : "FAIL", name,
                  long(E), long(H), long(F), top_k, long(n),
                  min_tokens == 0 ? "amx" : (min_tokens < 0 ? "switch" : "avx512"), err,
                  finite ? "" : "(unwritten or non-finite outputs)");
    }
  }
}

// Error of each dtype against the unquantized float64 forward on 30B-A3B expert shapes.
void accuracy_report(int64_t n, double outlier) {
  const int64_t E = 4, H = 2048, F = 768;
  const int top_k = 2;
  bench::Experts w{E, H, F, {}, {}, {}};
  bench::random_weights(w.gate, size_t(E * F * H), 0.02f, 71);
  bench::random_weights(w.up, size_t(E * F * H), 0.02f, 72);
  bench::random_weights(w.down, size_t(E * H * F), 0.02f, 73);
  std::vector<float> x;
  bench::random_acts(x, n, H, 74, outlier);
  Route rt = route(n, top_k, E, 75);
  std::vector<double> ref;
  bench::reference(w, false, Dtype::bf16, 0, x.data(), n, rt.ids.data(), rt.w.data(), top_k, ref);
  std::printf("\naccuracy vs unquantized float64 (hidden 2048, ffn 768, %ld tokens, heavy-tailed weights, "
              "activation channel outliers x%g):\n", long(n), outlier);
  for (const Variant& v : kVariants) {
    auto pe = bench::pack(w, v.dt, v.group, v.down_bf16);
    std::vector<float> y(size_t(n * H));
    mixtile::amx::experts_forward(*pe, {x.data(), n, rt.ids.data(), rt.w.data(), top_k, y.data(), 0});
    std::printf("  %-14s rel_l2 = %.3e\n", dtname(v.dt, v.group, v.down_bf16), bench::rel_l2(y.data(), ref));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  if (!mixtile::amx::available()) {
    std::printf("SKIP: %s\n", mixtile::amx::unavailable_reason().c_str());
    return 0;
  }
  std::printf("threads %d, AMX from %d (BF16) / %d (INT8) tokens per expert\n", mixtile::pool_threads(),
              mixtile::amx::default_min_tokens(Dtype::bf16), mixtile::amx::default_min_tokens(Dtype::int8));
  const std::vector<int64_t> tokens{1, 3, 17, 129};
  // Every case under the default kernel tuning and under the other setting of each knob.
  const mixtile::amx::KernelTuning defaults = mixtile::amx::tuning;
  mixtile::amx::KernelTuning other = defaults;
  other.prefetch_steps = defaults.prefetch_steps ? 0 : 8;
  other.single_pair_unblocked = !defaults.single_pair_unblocked;
  for (const auto& tn : {defaults, other}) {
    mixtile::amx::tuning = tn;
    std::printf("kernel tuning: prefetch_steps=%d single_pair_unblocked=%d\n", tn.prefetch_steps,
                int(tn.single_pair_unblocked));
    for (const Variant& v : kVariants) {
      check_case(v, 5, 200, 72, 2, tokens, 100);  // K, N off every tile size
      check_case(v, 4, 96, 40, 3, tokens, 200);   // ffn smaller than one panel pair
      if (!quick) check_case(v, 3, 512, 160, 2, {129}, 300);
    }
    for (int act_group : {32, 256, 64}) {
      for (bool down_q4k : {true, false}) {
        check_q4k_case(5, 512, 256, 2, down_q4k, tokens, 400, act_group);
        if (!quick) check_q4k_case(4, 256, 512, 3, down_q4k, {1, 17, 129}, 500, act_group);
      }
      check_q4k_case(4, 256, 40, 2, false, tokens, 600, act_group);  // ffn off the panel sizes (a non-Q4_K down)
    }
  }
  mixtile::amx::tuning = defaults;
  accuracy_report(quick ? 4 : 64, 20.0);
  accuracy_report(quick ? 4 : 64, 1.0);
  std::printf("\n%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
