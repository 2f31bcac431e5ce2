// amx-q4k-bench: Q4K panels (backend AMXInt4: Q4_K nibbles kept, AMX-INT8 tiles) against the INT8
// panels requantized from the same Q4_K weights (AMXInt8 g64, the default, and g32), on
// Qwen3-30B-A3B expert shapes (hidden 2048, ffn 768, 128 experts, top-8), all experts streamed
// from DRAM. Prints repack time and bytes, the 512-token and 1-expert calls, the AMX / AVX-512
// crossover over the Q4K panels (kDefaultMinTokensQ4k) and decode-like calls; "a256" / "a128": the
// folded-scale kernels (MIXTILE_AMX_INT4_ACT_GROUP) over the same panels.
// Usage: amx-q4k-bench [threads]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#include "common.h"
#include "timing.h"
#include "cpu/amx/kernels.h"
#include "threadpool.h"

using mixtile::amx::Dtype;
using bench::Clock;

namespace {

constexpr int64_t E = 128, H = 2048, F = 768;
constexpr double kDramBytesPerS = 106e9;  // anchor README, 16 threads

using bench::random_routing;
using bench::Routing;
using bench::seconds_since;
using bench::time_forward;
using bench::uniform_routing;

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) mixtile::set_threads(std::atoi(argv[1]));
  if (!mixtile::amx::available()) {
    std::printf("SKIP: %s\n", mixtile::amx::unavailable_reason().c_str());
    return 0;
  }
  const int threads = mixtile::pool_threads();
  std::printf("%d threads; AMX from %d (INT8) / %d (Q4K) tokens per expert\n", threads,
              mixtile::amx::default_min_tokens(Dtype::int8), mixtile::amx::default_min_tokens(Dtype::q4k));

  // Q4_K sources as a Q4_K GGUF holds them: gate/up [E][F][H], down [E][H][F].
  std::vector<uint8_t> qg, qu, qd;
  bench::random_q4k(qg, E * F, H, 1);
  bench::random_q4k(qu, E * F, H, 2);
  bench::random_q4k(qd, E * H, F, 3);
  const double src_gb = double(qg.size() + qu.size() + qd.size()) / 1e9;
  auto blocks = [](const std::vector<uint8_t>& b, int64_t n_rows, int64_t k) {
    const size_t row_bytes = size_t(k / mixtile::QK_K) * sizeof(mixtile::block_q4_K);
    return [&b, n_rows, row_bytes](int64_t e, int64_t r) { return b.data() + size_t(e * n_rows + r) * row_bytes; };
  };
  auto rows = [](const std::vector<uint8_t>& b, int64_t n_rows, int64_t k) {
    const size_t row_bytes = size_t(k / mixtile::QK_K) * sizeof(mixtile::block_q4_K);
    return [&b, n_rows, k, row_bytes](int64_t e, int64_t r, float* dst) {
      mixtile::dequantize_row(mixtile::GgmlType::Q4_K, b.data() + size_t(e * n_rows + r) * row_bytes, dst, k);
    };
  };
  auto t0 = Clock::now();
  const mixtile::amx::BlockRowFn down_blocks = blocks(qd, H, F);
  auto pe_q4 = mixtile::amx::pack_experts_q4k(E, H, F, blocks(qg, F, H), blocks(qu, F, H), &down_blocks, rows(qd, H, F));
  const double t_q4 = seconds_since(t0);
  // The same panels with folded sub-block scales (activations per 256 / 128): kernels.h panel_q4k_folded_*.
  auto pe_q4f = mixtile::amx::pack_experts_q4k(E, H, F, blocks(qg, F, H), blocks(qu, F, H), &down_blocks,
                                               rows(qd, H, F), {}, 256);
  auto pe_q4f128 = mixtile::amx::pack_experts_q4k(E, H, F, blocks(qg, F, H), blocks(qu, F, H), &down_blocks,
                                                  rows(qd, H, F), {}, 128);
  t0 = Clock::now();
  auto pe_i64 = mixtile::amx::pack_experts(Dtype::int8, 64, E, H, F, rows(qg, F, H), rows(qu, F, H), rows(qd, H, F));
  const double t_i64 = seconds_since(t0);
  auto pe_i32 = mixtile::amx::pack_experts(Dtype::int8, 32, E, H, F, rows(qg, F, H), rows(qu, F, H), rows(qd, H, F));
  std::printf("Q4_K source %.3f GB; repack: Q4K %.3f s -> %.3f GB, INT8 g64 %.3f s -> %.3f GB (g32 %.3f GB)\n", src_gb,
              t_q4, pe_q4->storage_bytes / 1e9, t_i64, pe_i64->storage_bytes / 1e9, pe_i32->storage_bytes / 1e9);
  std::printf("DRAM floor at %.0f GB/s, all 128 experts once: Q4K %.2f ms, INT8 g64 %.2f ms\n", kDramBytesPerS / 1e9,
              pe_q4->storage_bytes / kDramBytesPerS * 1e3, pe_i64->storage_bytes / kDramBytesPerS * 1e3);

  std::vector<float> x;
  bench::random_acts(x, 2048, H, 5);
  std::vector<float> y(size_t(2048 * H));
  const int kAmx = 0, kAvx = std::numeric_limits<int>::max();
  struct Mode {
    const char* name;
    const mixtile::amx::PackedExperts* pe;
    int min_tokens;
  };
  const Mode modes[] = {{"AMX Q4K", pe_q4.get(), kAmx},       {"AVX512 Q4K", pe_q4.get(), kAvx},
                        {"AMX Q4K a256", pe_q4f.get(), kAmx}, {"AMX Q4K a128", pe_q4f128.get(), kAmx},
                        {"AVX512 Q4K a256", pe_q4f.get(), kAvx},
                        {"AMX-INT8 g64", pe_i64.get(), kAmx}, {"AMX-INT8 g32", pe_i32.get(), kAmx},
                        {"VNNI-INT8 g64", pe_i64.get(), kAvx}};
  const double flop_per_pair = 2.0 * 3 * H * F;
  const Routing r512 = random_routing(512, 8, 9);
  Routing one;
  for (int t = 0; t < 512; ++t) one.ids.push_back(0), one.w.push_back(1.0f);
  for (int c = 0; c < 2; ++c) {
    const Routing& rt = c == 0 ? r512 : one;
    const int top_k = c == 0 ? 8 : 1;
    std::printf("\n%s\n  %-14s %9s %9s | %7s %7s %7s %7s (ms, last run)\n",
                c == 0 ? "512 tokens, top-8 of 128 experts" : "1 expert x 512 tokens", "path", "ms", "TOP/s", "convert",
                "gate+up", "down", "sum");
    for (const Mode& m : modes) {
      const double t = time_forward(*m.pe, x.data(), 512, rt.ids, rt.w, top_k, y.data(), m.min_tokens);
      const auto st = mixtile::amx::last_forward_stats();
      std::printf("  %-14s %9.3f %9.2f | %7.3f %7.3f %7.3f %7.3f\n", m.name, t * 1e3, flop_per_pair * 512 * top_k / t / 1e12,
                  st.convert_s * 1e3, st.gate_up_s * 1e3, st.down_s * 1e3, st.sum_s * 1e3);
    }
  }

  std::printf("\ncrossover (every expert gets m tokens, top-8; ms per call)\n  %4s %6s | %9s %9s %6s | %9s | %9s %9s\n",
              "m", "tokens", "AMX-Q4K", "AVX-Q4K", "ratio", "AMX-I8g64", "AMX-a256", "AVX-a256");
  for (int64_t m : {1, 2, 4, 6, 8, 12, 16, 24, 32}) {
    const Routing rt = uniform_routing(m, 8);
    const int64_t n = m * E / 8;
    const double ta = time_forward(*pe_q4, x.data(), n, rt.ids, rt.w, 8, y.data(), kAmx, 5);
    const double tv = time_forward(*pe_q4, x.data(), n, rt.ids, rt.w, 8, y.data(), kAvx, 5);
    const double ti = time_forward(*pe_i64, x.data(), n, rt.ids, rt.w, 8, y.data(), kAmx, 5);
    const double tf = time_forward(*pe_q4f, x.data(), n, rt.ids, rt.w, 8, y.data(), kAmx, 5);
    const double vf = time_forward(*pe_q4f, x.data(), n, rt.ids, rt.w, 8, y.data(), kAvx, 5);
    std::printf("  %4ld %6ld | %9.3f %9.3f %6.2f | %9.3f | %9.3f %9.3f\n", long(m), long(n), ta * 1e3, tv * 1e3, tv / ta,
                ti * 1e3, tf * 1e3, vf * 1e3);
  }
  std::printf("\ndecode-like (top-8, random experts; ms per call)\n");
  for (int64_t n : {1, 4}) {
    const Routing rt = random_routing(n, 8, 77 + uint64_t(n));
    const double tv = time_forward(*pe_q4, x.data(), n, rt.ids, rt.w, 8, y.data(), kAvx, 21);
    const double ta = time_forward(*pe_q4, x.data(), n, rt.ids, rt.w, 8, y.data(), kAmx, 21);
    const double vi = time_forward(*pe_i64, x.data(), n, rt.ids, rt.w, 8, y.data(), kAvx, 21);
    std::printf("  n=%ld: AVX-Q4K %.3f  AMX-Q4K %.3f  VNNI-I8g64 %.3f\n", long(n), tv * 1e3, ta * 1e3, vi * 1e3);
  }
  return 0;
}
