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

// Tokens per call from which the AMX experts entry takes the call at all (below: the generic
// AVX-512 kernels over the source weights; for K-quant sources they read about half the bytes of
// the INT8 panels, so decode is faster there). PROVISIONAL until measured on the test machine.
constexpr int kDefaultMinCallTokensBf16 = 1;
constexpr int kDefaultMinCallTokensInt8 = 32;
// Tokens per call from which a linear layer runs on its AMX panels. PROVISIONAL until measured.
constexpr int kDefaultLinearMinTokens = 32;

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
  return dtype == Dtype::bf16 ? kDefaultMinTokensBf16 : kDefaultMinTokensInt8;
}

int default_min_call_tokens(Dtype dtype) {
  static const int env = env_count("MIXTILE_AMX_MIN_CALL_TOKENS");
  if (env >= 0) return env;
  return dtype == Dtype::bf16 ? kDefaultMinCallTokensBf16 : kDefaultMinCallTokensInt8;
}

int default_linear_min_tokens() {
  static const int env = env_count("MIXTILE_AMX_LINEAR_MIN_TOKENS");
  return env >= 0 ? env : kDefaultLinearMinTokens;
}

}  // namespace mixtile::amx
