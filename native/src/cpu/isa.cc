// CPU probe: cpuid feature bits + XCR0 (the OS saves the AVX/AVX-512/AMX state) + the Linux
// AMX tile permission. Runs once; MIXTILE_ISA lowers the active level.
#include "cpu/isa.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace mixtile {
namespace {

struct Probe {
  std::string brand;
  std::vector<std::string> features;
  Isa detected = Isa::scalar;
  bool amx_granted = false;
};

uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return uint64_t(edx) << 32 | eax;
}

bool request_amx_permission() {
  // arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18), Linux >= 5.16.
  return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}

Probe run_probe() {
  Probe p;
  unsigned a, b, c, d;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  char brand[49] = {0};
  if (__get_cpuid_max(0x80000000, nullptr) >= 0x80000004) {
    for (unsigned i = 0; i < 3; ++i) {
      __cpuid(0x80000002 + i, a, b, c, d);
      std::memcpy(brand + 16 * i, &a, 4);
      std::memcpy(brand + 16 * i + 4, &b, 4);
      std::memcpy(brand + 16 * i + 8, &c, 4);
      std::memcpy(brand + 16 * i + 12, &d, 4);
    }
  }
  p.brand = brand;
  while (!p.brand.empty() && p.brand.back() == ' ') p.brand.pop_back();
  while (!p.brand.empty() && p.brand.front() == ' ') p.brand.erase(0, 1);

  __cpuid(1, a, b, c, d);
  bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29), avx = c & (1u << 28);
  uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  bool os_avx = (xcr0 & 0x6) == 0x6;
  bool os_avx512 = os_avx && (xcr0 & 0xE0) == 0xE0;
  bool os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);
  unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b7, c7, d7);
    __cpuid_count(7, 1, a71, b, c, d);
  }
  auto feat = [&](bool on, const char* name) {
    if (on) p.features.push_back(name);
    return on;
  };
  bool has_avx2 = feat(os_avx && avx && (b7 & (1u << 5)), "avx2") & feat(os_avx && fma, "fma") &
                  feat(os_avx && f16c, "f16c");
  bool f = feat(os_avx512 && (b7 & (1u << 16)), "avx512f");
  bool dq = feat(os_avx512 && (b7 & (1u << 17)), "avx512dq");
  bool bw = feat(os_avx512 && (b7 & (1u << 30)), "avx512bw");
  bool vl = feat(os_avx512 && (b7 & (1u << 31)), "avx512vl");
  bool vnni = feat(os_avx512 && (c7 & (1u << 11)), "avx512_vnni");
  bool bf16 = feat(os_avx512 && (a71 & (1u << 5)), "avx512_bf16");
  bool amx_bf16 = feat(os_amx && (d7 & (1u << 22)), "amx_bf16");
  bool amx_tile = feat(os_amx && (d7 & (1u << 24)), "amx_tile");
  bool amx_int8 = feat(os_amx && (d7 & (1u << 25)), "amx_int8");

  if (has_avx2) p.detected = Isa::avx2;
  if (has_avx2 && f && dq && bw && vl) p.detected = Isa::avx512;
  if (p.detected == Isa::avx512 && vnni) p.detected = Isa::avx512vnni;
  if (p.detected == Isa::avx512vnni && bf16) p.detected = Isa::avx512bf16;
  if (p.detected == Isa::avx512bf16 && amx_bf16 && amx_tile && amx_int8) {
    p.amx_granted = request_amx_permission();
    if (p.amx_granted) p.detected = Isa::amx;
  }
#ifdef MIXTILE_AMX_EMULATE
  // Emulated tiles (a test build, see native/src/cpu/amx/tile-ops.h): the AMX entries run here,
  // their tile kernels on a scalar model, their AVX-512 paths over the same panels as on AMX.
  if (p.detected == Isa::avx512bf16) p.detected = Isa::amx;
#endif
  return p;
}

const Probe& probe() {
  static Probe p = run_probe();
  return p;
}

Isa initial_active() {
  Isa level = probe().detected;
  if (const char* env = std::getenv("MIXTILE_ISA")) {
    Isa forced;
    if (parse_isa(env, &forced) && int(forced) < int(level)) level = forced;
  }
  return level;
}

std::atomic<int>& active_level() {
  static std::atomic<int> a{int(initial_active())};
  return a;
}

}  // namespace

Isa detected_isa() { return probe().detected; }
Isa active_isa() { return Isa(active_level().load(std::memory_order_relaxed)); }

bool set_isa(Isa level) {
  if (int(level) > int(detected_isa())) return false;
  active_level().store(int(level), std::memory_order_relaxed);
  return true;
}

bool amx_tile_granted() { return probe().amx_granted; }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512vnni: return "avx512vnni";
    case Isa::avx512bf16: return "avx512bf16";
    case Isa::amx: return "amx";
  }
  return "?";
}

bool parse_isa(const std::string& s, Isa* out) {
  for (int i = 0; i <= int(Isa::amx); ++i) {
    if (s == isa_name(Isa(i))) {
      *out = Isa(i);
      return true;
    }
  }
  return false;
}

std::string cpu_brand() { return probe().brand; }
std::vector<std::string> cpu_features() { return probe().features; }

}  // namespace mixtile
