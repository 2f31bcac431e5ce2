// amx-bench: the experts op on Qwen3-30B-A3B expert shapes (hidden 2048, ffn 768, 128 experts,
// top-8): AMX-BF16 vs the AVX-512-BF16 path over the same panels, AMX-INT8 vs AMX-BF16, the
// tokens-per-expert crossover that sets kDefaultMinTokens, and repack cost. Prints a table.
// Usage: amx-bench [threads]   (default: the pool's, i.e. physical cores or MIXTILE_THREADS)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>

#include "common.h"
#include "timing.h"
#include "cpu/amx/kernels.h"
#include "cpu/dequant/dequant.h"
#include "tensor.h"
#include "threadpool.h"

using mixtile::amx::Dtype;
using bench::Clock;

namespace {

constexpr int64_t E = 128, H = 2048, F = 768;
constexpr double kPeakBf16 = 14.7e12, kPeakInt8 = 28.7e12;  // anchor README, 16 threads, register-resident
constexpr double kDramBytesPerS = 106e9;                     // anchor README, 16 threads

using bench::random_routing;
using bench::Routing;
using bench::seconds_since;
using bench::time_forward;
using bench::uniform_routing;

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "?";
}

}  // namespace

int main(int argc, char** argv) {
  // amx-bench [THREADS] [--main]: --main runs only the 512-token and 1-expert tables.
  if (argc > 1) mixtile::set_threads(std::atoi(argv[1]));
  const bool main_only = argc > 2 && std::string(argv[2]) == "--main";
  if (!mixtile::amx::available()) {
    std::printf("SKIP: %s\n", mixtile::amx::unavailable_reason().c_str());
    return 0;
  }
  const int threads = mixtile::pool_threads();
  std::printf("cpu: %s, %d threads; AMX from %d (BF16) / %d (INT8) tokens per expert; prefetch %d steps, "
              "single pair unblocked %d\n", cpu_model().c_str(), threads, mixtile::amx::default_min_tokens(Dtype::bf16),
              mixtile::amx::default_min_tokens(Dtype::int8), mixtile::amx::tuning.prefetch_steps,
              int(mixtile::amx::tuning.single_pair_unblocked));

  // BF16 source weights, as a BF16 GGUF holds them: gate/up [E][F][H], down [E][H][F].
  const size_t n_gu = size_t(E * F * H), n_dn = size_t(E * H * F);
  std::vector<uint16_t> src_gate(n_gu), src_up(n_gu), src_down(n_dn);
  mixtile::parallel_for(E, [&](int64_t e, int) {
    bench::Rng r(uint64_t(e) + 1);
    auto fill = [&](uint16_t* p, size_t n) {
      for (size_t i = 0; i < n; ++i) p[i] = mixtile::fp32_to_bf16(float((r.uniform() - 0.5) * 0.08));
    };
    fill(&src_gate[size_t(e) * F * H], size_t(F * H));
    fill(&src_up[size_t(e) * F * H], size_t(F * H));
    fill(&src_down[size_t(e) * H * F], size_t(H * F));
  });
  const double src_gb = double(n_gu * 2 + n_dn) * 2 / 1e9;
  auto rows = [](const std::vector<uint16_t>& m, int64_t n_rows, int64_t k) {
    return [&m, n_rows, k](int64_t e, int64_t r, float* dst) {
      const uint16_t* s = &m[size_t((e * n_rows + r) * k)];
      for (int64_t i = 0; i < k; ++i) dst[i] = mixtile::bf16_to_fp32(s[i]);
    };
  };
  auto pack = [&](Dtype dt, int g, double* secs, bool down_bf16 = false) {
    const auto t0 = Clock::now();
    auto pe = mixtile::amx::pack_experts(dt, g, E, H, F, rows(src_gate, F, H), rows(src_up, F, H),
                                         rows(src_down, H, F), {}, down_bf16);
    *secs = seconds_since(t0);
    return pe;
  };
  double t_bf16, t_i64, t_i128, t_i32;
  auto pe_bf16 = pack(Dtype::bf16, 0, &t_bf16);
  auto pe_i64 = pack(Dtype::int8, 64, &t_i64);
  auto pe_i128 = pack(Dtype::int8, 128, &t_i128);
  auto pe_i32 = pack(Dtype::int8, 32, &t_i32);
  double t_dn;
  auto pe_i64_dn = pack(Dtype::int8, 64, &t_dn, true);
  std::printf("\nrepack from BF16 source (%.2f GB, %d threads): AMXBF16 %.3f s (%.3f s/GB), AMXInt8 g64 %.3f s "
              "(%.3f s/GB), g128 %.3f s; packed %.2f / %.2f GB\n",
              src_gb, threads, t_bf16, t_bf16 / src_gb, t_i64, t_i64 / src_gb, t_i128, pe_bf16->storage_bytes / 1e9,
              pe_i64->storage_bytes / 1e9);

  {
    // Repack from a Q4_K source (dequantize_row + INT8 requantization), as from a Q4_K_M GGUF.
    const size_t blocks_gu = n_gu / 256, blocks_dn = n_dn / 256;
    std::vector<mixtile::block_q4_K> q_gate(blocks_gu), q_up(blocks_gu), q_down(blocks_dn);
    mixtile::parallel_for(E, [&](int64_t e, int) {
      bench::Rng r(uint64_t(e) + 99);
      auto fill = [&](mixtile::block_q4_K* b, size_t n) {
        for (size_t i = 0; i < n; ++i) {
          b[i].d = mixtile::fp32_to_fp16(0.0004f);
          b[i].dmin = mixtile::fp32_to_fp16(0.0002f);
          for (auto& v : b[i].scales) v = uint8_t(r.next());
          for (auto& v : b[i].qs) v = uint8_t(r.next());
        }
      };
      fill(&q_gate[size_t(e) * blocks_gu / E], blocks_gu / E);
      fill(&q_up[size_t(e) * blocks_gu / E], blocks_gu / E);
      fill(&q_down[size_t(e) * blocks_dn / E], blocks_dn / E);
    });
    auto qrows = [](const std::vector<mixtile::block_q4_K>& m, int64_t n_rows, int64_t k) {
      return [&m, n_rows, k](int64_t e, int64_t r, float* dst) {
        mixtile::dequantize_row(mixtile::GgmlType::Q4_K, &m[size_t((e * n_rows + r) * k / 256)], dst, k);
      };
    };
    const double q_gb = double(blocks_gu * 2 + blocks_dn) * sizeof(mixtile::block_q4_K) / 1e9;
    const auto t0 = Clock::now();
    auto pq = mixtile::amx::pack_experts(Dtype::int8, 64, E, H, F, qrows(q_gate, F, H), qrows(q_up, F, H),
                                         qrows(q_down, H, F));
    const double tq = seconds_since(t0);
    std::printf("repack from Q4_K source (%.2f GB) to AMXInt8 g64: %.3f s (%.3f s per GB of Q4_K, %.3f s per GB "
                "packed)\n", q_gb, tq, tq / q_gb, tq / (pq->storage_bytes / 1e9));
  }

  const double flop_per_pair = 2.0 * 3 * H * F;  // gate + up + down
  std::vector<float> x;
  bench::random_acts(x, 2048, H, 5);
  std::vector<float> y(size_t(2048 * H));
  const int kAmx = 0, kAvx = std::numeric_limits<int>::max();

  struct Mode {
    const char* name;
    const mixtile::amx::PackedExperts* pe;
    int min_tokens;
    double peak;
  };
  const Mode modes[] = {{"AMX-BF16", pe_bf16.get(), kAmx, kPeakBf16},
                        {"AVX512-BF16", pe_bf16.get(), kAvx, kPeakBf16},
                        {"AMX-INT8 g64", pe_i64.get(), kAmx, kPeakInt8},
                        {"AMX-INT8 g128", pe_i128.get(), kAmx, kPeakInt8},
                        {"AVX512-VNNI g64", pe_i64.get(), kAvx, kPeakInt8},
                        {"AMX-INT8 g32", pe_i32.get(), kAmx, kPeakInt8},
                        {"AVX512-VNNI g32", pe_i32.get(), kAvx, kPeakInt8},
                        {"AMX-I8 g64+BF16dn", pe_i64_dn.get(), kAmx, kPeakInt8}};
  constexpr int kModes = int(sizeof modes / sizeof modes[0]);

  // Speed: 512 tokens x top-8 over 128 experts, and 1 expert x 512 tokens.
  const Routing r512 = random_routing(512, 8, 9);
  Routing one;
  for (int t = 0; t < 512; ++t) {
    one.ids.push_back(0);
    one.w.push_back(1.0f);
  }
  double base[2] = {0, 0};
  double amx_bf16[2] = {0, 0};
  for (int c = 0; c < 2; ++c) {
    const Routing& rt = c == 0 ? r512 : one;
    const int top_k = c == 0 ? 8 : 1;
    const double flops = flop_per_pair * 512 * top_k;
    std::printf("\n%s (%.1f GFLOP per call)\n", c == 0 ? "512 tokens, top-8 of 128 experts (~32 tokens/expert)"
                                                       : "1 expert x 512 tokens",
                flops / 1e9);
    std::printf("  %-16s %9s %9s %8s %9s | %7s %7s %7s %7s (ms, last run)\n", "path", "ms", "TFLOP/s", "%peak",
                "vs AVX", "convert", "gate+up", "down", "sum");
    double times[kModes];
    mixtile::amx::ForwardStats st[kModes];
    for (int i = 0; i < kModes; ++i) {
      times[i] = time_forward(*modes[i].pe, x.data(), 512, rt.ids, rt.w, top_k, y.data(), modes[i].min_tokens);
      st[i] = mixtile::amx::last_forward_stats();
    }
    base[c] = times[1];
    amx_bf16[c] = times[0];
    for (int i = 0; i < kModes; ++i) {
      const double tf = flops / times[i];
      const double ref = modes[i].peak == kPeakBf16 ? times[1] : times[4];
      std::printf("  %-16s %9.3f %9.2f %7.1f%% %8.2fx | %7.3f %7.3f %7.3f %7.3f\n", modes[i].name, times[i] * 1e3,
                  tf / 1e12, 100 * tf / modes[i].peak, ref / times[i], st[i].convert_s * 1e3, st[i].gate_up_s * 1e3,
                  st[i].down_s * 1e3, st[i].sum_s * 1e3);
    }
    std::printf("  AMX-BF16 / AVX512-BF16 = %.2fx, AMX-INT8 g64 / AMX-BF16 = %.2fx, g32 / AMX-BF16 = %.2fx, "
                "g64+BF16 down / AMX-BF16 = %.2fx\n",
                times[1] / times[0], times[0] / times[2], times[0] / times[5], times[0] / times[7]);
    if (c == 0) {
      const double bytes_bf16 = double(pe_bf16->storage_bytes), bytes_i8 = double(pe_i64->storage_bytes);
      std::printf("  DRAM floor at %.0f GB/s: BF16 %.2f ms, INT8 %.2f ms (all 128 experts' weights read once)\n",
                  kDramBytesPerS / 1e9, bytes_bf16 / kDramBytesPerS * 1e3, bytes_i8 / kDramBytesPerS * 1e3);
    }
  }

  if (main_only) return 0;
  // Kernel knobs (kernels.h KernelTuning): prefetch distance x K blocking of a single row pair.
  {
    std::printf("\ntuning sweep (ms per call): pf = prefetch K steps ahead, ub = single pair unblocked\n");
    std::printf("  %-14s %10s %10s %10s %10s %10s %10s\n", "config", "512 BF16", "512 INT8", "1x512 BF16",
                "1x512 I8", "m16 BF16", "m1 AVXbf");
    const Routing r16 = uniform_routing(16, 8), r1 = uniform_routing(1, 8);
    const mixtile::amx::KernelTuning saved = mixtile::amx::tuning;
    const int configs[][2] = {{0, 0}, {0, 1}, {4, 1}, {8, 0}, {8, 1}, {16, 1}};
    for (const auto& cf : configs) {
      mixtile::amx::tuning.prefetch_steps = cf[0];
      mixtile::amx::tuning.single_pair_unblocked = cf[1] != 0;
      const double a = time_forward(*pe_bf16, x.data(), 512, r512.ids, r512.w, 8, y.data(), kAmx, 5);
      const double b = time_forward(*pe_i64, x.data(), 512, r512.ids, r512.w, 8, y.data(), kAmx, 5);
      const double c = time_forward(*pe_bf16, x.data(), 512, one.ids, one.w, 1, y.data(), kAmx, 5);
      const double d = time_forward(*pe_i64, x.data(), 512, one.ids, one.w, 1, y.data(), kAmx, 5);
      const double e = time_forward(*pe_bf16, x.data(), 256, r16.ids, r16.w, 8, y.data(), kAmx, 5);
      const double f = time_forward(*pe_bf16, x.data(), 16, r1.ids, r1.w, 8, y.data(), kAvx, 5);
      std::printf("  pf=%-2d ub=%d      %10.3f %10.3f %10.3f %10.3f %10.3f %10.3f\n", cf[0], cf[1], a * 1e3, b * 1e3,
                  c * 1e3, d * 1e3, e * 1e3, f * 1e3);
    }
    mixtile::amx::tuning = saved;
  }

  // Crossover: every expert gets exactly m tokens; AMX vs AVX-512 over the same panels.
  std::printf("\ncrossover (every one of 128 experts gets m tokens, top-8; ms per call)\n");
  std::printf("  %4s %6s | %9s %9s %6s | %9s %9s %6s\n", "m", "tokens", "AMX-BF16", "AVX-BF16", "ratio", "AMX-I8",
              "VNNI-I8", "ratio");
  for (int64_t m : {1, 2, 3, 4, 6, 8, 12, 16, 24, 32}) {
    const Routing rt = uniform_routing(m, 8);
    const int64_t n = m * E / 8;
    const double tb = time_forward(*pe_bf16, x.data(), n, rt.ids, rt.w, 8, y.data(), kAmx, 5);
    const double vb = time_forward(*pe_bf16, x.data(), n, rt.ids, rt.w, 8, y.data(), kAvx, 5);
    const double ti = time_forward(*pe_i64, x.data(), n, rt.ids, rt.w, 8, y.data(), kAmx, 5);
    const double vi = time_forward(*pe_i64, x.data(), n, rt.ids, rt.w, 8, y.data(), kAvx, 5);
    std::printf("  %4ld %6ld | %9.3f %9.3f %6.2f | %9.3f %9.3f %6.2f\n", long(m), long(n), tb * 1e3, vb * 1e3, vb / tb,
                ti * 1e3, vi * 1e3, vi / ti);
  }
  // Decode-like: 1 and 4 tokens, top-8 (8 / up to 32 experts with 1 token each).
  std::printf("\ndecode-like (top-8, random experts; ms per call)\n");
  for (int64_t n : {1, 4}) {
    const Routing rt = random_routing(n, 8, 77 + uint64_t(n));
    const double tb = time_forward(*pe_bf16, x.data(), n, rt.ids, rt.w, 8, y.data(), kAmx, 21);
    const double vb = time_forward(*pe_bf16, x.data(), n, rt.ids, rt.w, 8, y.data(), kAvx, 21);
    const double ti = time_forward(*pe_i64, x.data(), n, rt.ids, rt.w, 8, y.data(), kAmx, 21);
    const double vi = time_forward(*pe_i64, x.data(), n, rt.ids, rt.w, 8, y.data(), kAvx, 21);
    std::printf("  n=%ld: AMX-BF16 %.3f  AVX-BF16 %.3f  AMX-I8 %.3f  VNNI-I8 %.3f\n", long(n), tb * 1e3, vb * 1e3,
                ti * 1e3, vi * 1e3);
  }
  std::printf("\nsummary: 512 tok AMX-BF16 %.2f TFLOP/s (%.1f%% of 14.7), %.2fx AVX512-BF16\n",
              flop_per_pair * 4096 / amx_bf16[0] / 1e12, 100 * flop_per_pair * 4096 / amx_bf16[0] / kPeakBf16,
              base[0] / amx_bf16[0]);
  return 0;
}
