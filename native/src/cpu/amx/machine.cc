// AMX availability: cpuid (AMX-TILE/BF16/INT8), XCR0 tile state, and the Linux permission
// request (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA) made once per process; the AMX/AVX-512
// switch point. Tile configuration itself is per thread (kernels-amx.cc).
#include <cpuid.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "cpu/amx/amx.h"
#include "cpu/amx/kernels.h"

namespace mixtile::amx {

namespace {

// Tokens per expert from which AMX beats the AVX-512 path over the same panels (the expert's rows
// are padded to 16 for AMX; both paths prefetch the panels, so up to a few tokens both run at
// DRAM speed and tie). Measured on the test machine (16-core Xeon with AMX, 16 threads, 30B-A3B
// expert shapes, all 128 experts streamed from DRAM) by the crossover table of
//   cmake -S bench/amx -B /tmp/b -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/b -j16 && /tmp/b/amx-bench
// (bench/RESULTS.md "## AMX", 2026-11-25): AVX-512 / AMX time ratio BF16 1.04 1.02 0.90 1.05 1.14
// 1.41 2.05 at 1 2 3 4 6 8 12 tokens; INT8 0.92 0.93 0.84 0.93 1.11 0.96 1.47. AMX takes an
// expert from the first count after which it stays ahead. Override both: MIXTILE_AMX_MIN_TOKENS.
constexpr int kDefaultMinTokensBf16 = 6;
constexpr int kDefaultMinTokensInt8 = 12;

// Calls the AMX experts entry takes at all, as (token, expert) pairs per expert on average
// (n * top_k / n_expert); smaller calls go to the generic AVX-512 kernels over the source weights.
// Measured by bench/amx/threshold-sweep.ts on the test machine (bench/RESULTS.md "## AMX",
// 2026-11-25, 16 threads, 128 experts, top-8), generic / AMX-entry time: K-quant source (Q4_K ->
// INT8 panels) 0.81 0.73 0.86 0.82 1.00 0.62 0.84 0.97 1.10 0.76 2.08 2.72 at 1 2 4 8 16 24 32
// 48 64 128 256 512 tokens: the generic kernels read half the bytes of the INT8 panels, so AMX
// pays only once most experts get >= 12 tokens (its per-expert switch); from 256 tokens = 16 per
// expert. BF16 source: 0.69 0.86 0.50 0.97 0.96 1.05 1.13 1.16 1.33 1.51 2.23 3.30: from 24 tokens
// = 1.5 per expert. MIXTILE_AMX_MIN_CALL_TOKENS (tokens per call) overrides both.
constexpr double kMinPairsPerExpertBf16 = 1.5;
constexpr double kMinPairsPerExpertInt8 = 16.0;
// Q4K panels (AMXInt4), measured by amx-q4k-bench on the test machine (bench/RESULTS.md "## AMX",
// Q4K panels, 2026-11-25, 16 threads): AVX-512 / AMX time over the same Q4K panels 0.44 0.44 0.47
// 0.66 0.64 0.77 1.20 0.98 1.38 at 1 2 4 6 8 12 16 24 32 tokens per expert (the AVX-512 path runs
// at the DRAM floor up to 4; the AMX kernel pays a scale pass per 32-K group): AMX from 16.
// Call threshold: the AVX-512 path over Q4K panels took 3.1-3.3 ms at 16-64 tokens (all 128
// experts touched, 115 GB/s) where the generic Q4_K kernels took 5.1-6.8 ms in another machine
// start (threshold-sweep.ts, run 8): from 16 tokens (1 pair per expert) until the two are timed
// in one run (MIXTILE_AMX_BACKEND=AMXInt4 ... threshold-sweep.ts q4_k); decode stays generic.
constexpr int kDefaultMinTokensQ4k = 16;
constexpr double kMinPairsPerExpertQ4k = 1.0;
// Tokens per call from which a linear layer runs on its AMX panels (same sweep, q_proj 2048 ->
// 4096): AVX-512 GEMM / AMX-BF16 time 0.56 1.37 1.52 1.75 2.53 at 1 2 4 8 16 tokens (Q4_K), 0.83
// 1.46 1.74 1.97 2.53 (BF16); 2.9x / 4.0x at 512.
constexpr int kDefaultLinearMinTokens = 2;

constexpr long kArchGetXcompPerm = 0x1022;
constexpr long kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtiledata = 18;

struct CpuBits {
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false;
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false, osxsave = false;
};

CpuBits probe() {
  CpuBits b;
  unsigned a, bx, c, d;
  if (__get_cpuid_count(1, 0, &a, &bx, &c, &d)) b.osxsave = c & (1u << 27);
  if (__get_cpuid_count(7, 0, &a, &bx, &c, &d)) {
    b.avx512f = bx & (1u << 16);
    b.avx512bw = bx & (1u << 30);
    b.avx512vl = bx & (1u << 31);
    b.avx512vnni = c & (1u << 11);
    b.amx_bf16 = d & (1u << 22);
    b.amx_tile = d & (1u << 24);
    b.amx_int8 = d & (1u << 25);
  }
  if (__get_cpuid_count(7, 1, &a, &bx, &c, &d)) b.avx512bf16 = a & (1u << 5);
  return b;
}

uint64_t xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return uint64_t(hi) << 32 | lo;
}

struct State {
  bool ok = false;
  std::string reason;
};

// Runs tile_probe() in a forked child. A machine whose CPUID, XCR0 and kernel all say AMX but
// whose hypervisor or kernel still faults on tile instructions kills only the child (SIGILL),
// and the process falls back to AVX-512 with the reason instead of dying in the first kernel.
// The child runs only the probe's instructions and _exit (safe after fork in a threaded process).
std::string probe_in_child() {
  const pid_t pid = fork();
  if (pid < 0) return "";  // cannot fork: trust the checks above
  if (pid == 0) {
    signal(SIGILL, SIG_DFL);
    signal(SIGSEGV, SIG_DFL);
    tile_probe();
    _exit(0);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return "";
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return "";
  if (WIFSIGNALED(st)) {
    return "tile instructions fault on this machine (a probe process died with signal " + std::to_string(WTERMSIG(st)) +
           "): the kernel or hypervisor does not run AMX although CPUID and XCR0 announce it";
  }
  return "the AMX probe process exited with status " + std::to_string(WEXITSTATUS(st));
}

const State& state() {
  static State s;
  static std::once_flag once;
  std::call_once(once, [] {
    const CpuBits b = probe();
#ifdef MIXTILE_AMX_EMULATE
    s.ok = b.avx512bf16 && b.avx512vnni;
    if (!s.ok) s.reason = "the emulated AMX build needs AVX-512 BF16 and VNNI";
    return;
#endif
    if (!(b.amx_tile && b.amx_bf16 && b.amx_int8)) {
      s.reason = "no AMX on this CPU (flags: " + cpu_flags() + ")";
    } else if (!(b.avx512bf16 && b.avx512vnni && b.avx512bw)) {
      s.reason = "AMX present but AVX-512 BF16/VNNI missing (flags: " + cpu_flags() + ")";
    } else if (!b.osxsave || (xcr0() & (3u << 17)) != (3u << 17)) {
      s.reason = "the OS does not enable AMX tile state (XCR0 bits 17-18 clear); needs Linux >= 5.16";
    } else {
      long r = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata);
      unsigned long mask = 0;
      if (r == 0) r = syscall(SYS_arch_prctl, kArchGetXcompPerm, &mask);
      if (r != 0 || !(mask & (1ul << kXfeatureXtiledata))) {
        s.reason = "the kernel refused the AMX tile permission (arch_prctl ARCH_REQ_XCOMP_PERM); needs Linux >= 5.16";
      } else {
        s.reason = probe_in_child();
        s.ok = s.reason.empty();
      }
    }
    if (!s.ok) std::fprintf(stderr, "mixtile: AMX off: %s; experts and linear layers use the AVX-512 path\n", s.reason.c_str());
  });
  return s;
}

}  // namespace

bool available() { return state().ok; }
const std::string& unavailable_reason() { return state().reason; }

std::string cpu_flags() {
  const CpuBits b = probe();
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(b.avx512f, "avx512f");
  add(b.avx512bw, "avx512bw");
  add(b.avx512vl, "avx512vl");
  add(b.avx512vnni, "avx512_vnni");
  add(b.avx512bf16, "avx512_bf16");
  add(b.amx_tile, "amx_tile");
  add(b.amx_bf16, "amx_bf16");
  add(b.amx_int8, "amx_int8");
  return s.empty() ? "none of avx512/amx" : s;
}

namespace {
// A token count from the environment, or -1 when unset or not a count (then a warning, once).
int env_count(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return -1;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (end && *end == 0 && n >= 0 && n < (1 << 30)) return int(n);
  std::fprintf(stderr, "mixtile: %s=\"%s\" is not a token count; using the measured default\n", name, v);
  return -1;
}
}  // namespace

int default_min_tokens(Dtype dtype) {
  static const int env = env_count("MIXTILE_AMX_MIN_TOKENS");
  if (env >= 0) return env;
  if (dtype == Dtype::q4k) return kDefaultMinTokensQ4k;
  return dtype == Dtype::bf16 ? kDefaultMinTokensBf16 : kDefaultMinTokensInt8;
}

int call_min_tokens_override() {
  static const int env = env_count("MIXTILE_AMX_MIN_CALL_TOKENS");
  return env;
}

double default_min_pairs_per_expert(Dtype dtype) {
  if (dtype == Dtype::q4k) return kMinPairsPerExpertQ4k;
  return dtype == Dtype::bf16 ? kMinPairsPerExpertBf16 : kMinPairsPerExpertInt8;
}

bool call_takes_amx(Dtype dtype, int64_t n, int top_k, int64_t n_expert) {
  const int env = call_min_tokens_override();
  if (env >= 0) return n >= env;
  return double(n) * double(top_k) >= default_min_pairs_per_expert(dtype) * double(n_expert);
}

int default_linear_min_tokens() {
  static const int env = env_count("MIXTILE_AMX_LINEAR_MIN_TOKENS");
  return env >= 0 ? env : kDefaultLinearMinTokens;
}

}  // namespace mixtile::amx
