// amx-kernel-bench: panel-kernel variants in isolation (data in L2, no DRAM): loop orders, K
// blocking, A layout (row-major vs tile-packed), software prefetch. 1 thread and all threads.
// Exploration tool for kernels-amx.cc; the op-level figures come from amx-bench.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/amx/amx.h"
#include "cpu/amx/kernels.h"
#include "cpu/amx/tile-ops.h"
#include "threadpool.h"

using namespace mixtile::amx;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int M = 128, K = 2048, KS = K / kBf16Step, NP = 4;

// BF16 variant: KB k-steps per block, A tile-packed ([m tile][k step][16 x 64 B]) or row-major,
// prefetch distance PF k-steps (0 = none).
template <int KB, bool PACKED, int PF>
void kern(const uint16_t* A, int64_t lda, int mrows, const uint8_t* panel, int64_t k_steps, float* C) {
  tile_config_thread();
  const int mt = mrows / 16;
  for (int64_t k0 = 0; k0 < k_steps; k0 += KB) {
    const int64_t k1 = std::min<int64_t>(k_steps, k0 + KB);
    for (int m = 0; m < mt; m += 2) {
      float* c = C + m * 16 * 32;
      const uint16_t* a0 = PACKED ? A + int64_t(m) * k_steps * 512 : A + int64_t(m) * 16 * lda;
      const uint16_t* a1 = PACKED ? a0 + k_steps * 512 : a0 + 16 * lda;
      const long sa = PACKED ? 64 : long(lda) * 2;
      const int64_t step = PACKED ? 512 : 32;
      if (k0 == 0) {
        TILE_ZERO(0);
        TILE_ZERO(1);
        TILE_ZERO(2);
        TILE_ZERO(3);
      } else {
        TILE_LOAD(0, c, 128);
        TILE_LOAD(1, c + 16, 128);
        TILE_LOAD(2, c + 512, 128);
        TILE_LOAD(3, c + 528, 128);
      }
      for (int64_t ks = k0; ks < k1; ++ks) {
        if (PF > 0 && ks + PF < k_steps) {
          if (PACKED) {
            for (int i = 0; i < 16; ++i) _mm_prefetch(reinterpret_cast<const char*>(a0 + (ks + PF) * 512 + i * 32), _MM_HINT_T0);
            for (int i = 0; i < 16; ++i) _mm_prefetch(reinterpret_cast<const char*>(a1 + (ks + PF) * 512 + i * 32), _MM_HINT_T0);
          } else {
            for (int i = 0; i < 16; ++i) _mm_prefetch(reinterpret_cast<const char*>(a0 + i * lda + (ks + PF) * 32), _MM_HINT_T0);
            for (int i = 0; i < 16; ++i) _mm_prefetch(reinterpret_cast<const char*>(a1 + i * lda + (ks + PF) * 32), _MM_HINT_T0);
          }
        }
        const uint8_t* bp = panel + ks * kStepBytes;
        TILE_LOAD(4, a0 + ks * step, sa);
        TILE_LOAD(6, bp, 64);
        TILE_LOAD(7, bp + kTileBytes, 64);
        TILE_LOAD(5, a1 + ks * step, sa);
        TILE_DPBF16PS(0, 4, 6);
        TILE_DPBF16PS(1, 4, 7);
        TILE_DPBF16PS(2, 5, 6);
        TILE_DPBF16PS(3, 5, 7);
      }
      TILE_STORE(0, c, 128);
      TILE_STORE(1, c + 16, 128);
      TILE_STORE(2, c + 512, 128);
      TILE_STORE(3, c + 528, 128);
    }
  }
}

// Register-resident ceiling: no loads in the loop.
void kern_peak(const uint16_t* A, int64_t, int mrows, const uint8_t* panel, int64_t k_steps, float* C) {
  tile_config_thread();
  TILE_LOAD(4, A, 64);
  TILE_LOAD(5, A + 512, 64);
  TILE_LOAD(6, panel, 64);
  TILE_LOAD(7, panel + 1024, 64);
  TILE_ZERO(0);
  TILE_ZERO(1);
  TILE_ZERO(2);
  TILE_ZERO(3);
  for (int64_t i = 0; i < k_steps * (mrows / 32); ++i) {
    TILE_DPBF16PS(0, 4, 6);
    TILE_DPBF16PS(1, 4, 7);
    TILE_DPBF16PS(2, 5, 6);
    TILE_DPBF16PS(3, 5, 7);
  }
  TILE_STORE(0, C, 128);
  TILE_STORE(1, C + 16, 128);
  TILE_STORE(2, C + 512, 128);
  TILE_STORE(3, C + 528, 128);
}

using Fn = void (*)(const uint16_t*, int64_t, int, const uint8_t*, int64_t, float*);

struct Bufs {
  std::vector<uint16_t> a, ap;
  std::vector<uint8_t> panels;
  std::vector<float> c;
  Bufs() : a(size_t(M) * (K + 32)), ap(size_t(M) * K), panels(size_t(NP) * KS * kStepBytes + 64), c(M * 32 + 16) {
    for (size_t i = 0; i < a.size(); ++i) a[i] = uint16_t(0x3F80 + (i % 7));
    for (size_t i = 0; i < ap.size(); ++i) ap[i] = uint16_t(0x3F80 + (i % 5));
    for (size_t i = 0; i < panels.size(); ++i) panels[i] = uint8_t(i % 3 ? 0x3F : 0x80);
  }
};

// GFLOP/s of `reps` passes over NP panels x M rows x K, on `threads` threads at once.
double run(Fn fn, bool packed, int threads, int reps) {
  std::vector<Bufs> bufs{size_t(threads)};
  auto pass = [&](Bufs& b) {
    const uint16_t* A = packed ? b.ap.data() : b.a.data();
    const uint8_t* P = reinterpret_cast<const uint8_t*>((reinterpret_cast<uintptr_t>(b.panels.data()) + 63) & ~uintptr_t(63));
    float* C = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(b.c.data()) + 63) & ~uintptr_t(63));
    for (int p = 0; p < NP; ++p) fn(A, K + 32, M, P + size_t(p) * KS * kStepBytes, KS, C);
  };
  mixtile::parallel_for(threads, [&](int64_t t, int) { pass(bufs[size_t(t)]); });  // warm
  const auto t0 = Clock::now();
  mixtile::parallel_for(threads, [&](int64_t t, int) {
    for (int r = 0; r < reps; ++r) pass(bufs[size_t(t)]);
  });
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return 2.0 * M * 32 * NP * K * reps * threads / s / 1e9;
}

// INT8 library kernel (K = 2048 int8 = 32 steps), scale group of `group` K elements.
double run_int8(int group, bool avx, int threads, int reps) {
  constexpr int KI = 2048, KSI = KI / kInt8Step;
  const int ng = KI / group;
  struct B8 {
    std::vector<int8_t> a;
    std::vector<float> as, ws, c;
    std::vector<int32_t> cs;
    std::vector<uint8_t> panels;
  };
  std::vector<B8> bufs{size_t(threads)};
  for (auto& b : bufs) {
    b.a.assign(size_t(M) * (KI + 64), 3);
    b.as.assign(size_t(M) * ng, 0.01f);
    b.ws.assign(size_t(ng) * 32, 0.02f);
    b.cs.assign(size_t(ng) * 32, 5);
    b.panels.assign(size_t(NP) * KSI * kStepBytes + 64, 7);
    b.c.assign(M * 32 + 16, 0);
  }
  auto pass = [&](B8& b) {
    const uint8_t* P = reinterpret_cast<const uint8_t*>((reinterpret_cast<uintptr_t>(b.panels.data()) + 63) & ~uintptr_t(63));
    float* C = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(b.c.data()) + 63) & ~uintptr_t(63));
    for (int p = 0; p < NP; ++p)
      (avx ? panel_int8_avx512 : panel_int8_amx)(b.a.data(), KI + 64, b.as.data(), M, P + size_t(p) * KSI * kStepBytes,
                                                 b.ws.data(), b.cs.data(), ng, group, C);
  };
  mixtile::parallel_for(threads, [&](int64_t t, int) { pass(bufs[size_t(t)]); });
  const auto t0 = Clock::now();
  mixtile::parallel_for(threads, [&](int64_t t, int) {
    for (int r = 0; r < reps; ++r) pass(bufs[size_t(t)]);
  });
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return 2.0 * M * 32 * NP * KI * reps * threads / s / 1e9;
}

}  // namespace

int main() {
  if (!available()) {
    std::printf("SKIP: %s\n", unavailable_reason().c_str());
    return 0;
  }
  const int all = mixtile::pool_threads();
  struct V {
    const char* name;
    Fn fn;
    bool packed;
  };
  const V vs[] = {{"peak (no loads)", kern_peak, true},
                  {"lib panel_bf16_amx", panel_bf16_amx, false},
                  {"rowmajor kb4", kern<4, false, 0>, false},
                  {"rowmajor kb8", kern<8, false, 0>, false},
                  {"rowmajor kb16", kern<16, false, 0>, false},
                  {"rowmajor kb64", kern<64, false, 0>, false},
                  {"rowmajor kb8 pf1", kern<8, false, 1>, false},
                  {"rowmajor kb8 pf2", kern<8, false, 2>, false},
                  {"packed kb4", kern<4, true, 0>, true},
                  {"packed kb8", kern<8, true, 0>, true},
                  {"packed kb16", kern<16, true, 0>, true},
                  {"packed kb64", kern<64, true, 0>, true},
                  {"packed kb8 pf1", kern<8, true, 1>, true},
                  {"packed kb8 pf2", kern<8, true, 2>, true},
                  {"packed kb64 pf2", kern<64, true, 2>, true}};
  std::printf("BF16 panel kernels, M=%d K=%d %d panels (A %d KiB, B %d KiB per thread)\n", M, K, NP,
              M * K * 2 / 1024, NP * KS * 2);
  std::printf("  %-22s %12s %14s\n", "variant", "1 thr GF/s", "all thr GF/s");
  for (const V& v : vs) {
    const double g1 = run(v.fn, v.packed, 1, 20);
    const double ga = run(v.fn, v.packed, all, 100);
    std::printf("  %-22s %12.0f %14.0f\n", v.name, g1, ga);
  }
  std::printf("INT8 library kernels, M=%d K=2048 %d panels (GOP/s)\n", M, NP);
  for (int g : {32, 64, 128, 256}) {
    std::printf("  %-22s %12.0f %14.0f\n", (std::string("amx g") + std::to_string(g)).c_str(),
                run_int8(g, false, 1, 20), run_int8(g, false, all, 100));
  }
  for (int g : {32, 64}) {
    std::printf("  %-22s %12.0f %14.0f\n", (std::string("avx512-vnni g") + std::to_string(g)).c_str(),
                run_int8(g, true, 1, 5), run_int8(g, true, all, 20));
  }
  std::printf("  %-22s %12.0f %14.0f\n", "avx512-bf16 (lib)", run(panel_bf16_avx512, false, 1, 5),
              run(panel_bf16_avx512, false, all, 20));
  return 0;
}
