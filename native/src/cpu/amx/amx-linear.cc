// The AMX hook of the linear layer (see amx-linear.h): backend choice, the repack (with its
// cache key), and the token threshold.
#include "cpu/amx/amx-linear.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "cpu/amx/amx.h"
#include "cpu/amx/cache-key.h"
#include "cpu/dequant/dequant.h"
#include "cpu/isa.h"
#include "repack-cache.h"

namespace mixtile {
namespace {

constexpr int kInt8Group = 64;  // one TDPBSSD K step per group (amx.h)

// The AMX dtype for this weight and backend, or false for none.
bool choose(const Weight& w, const std::string& backend, amx::Dtype* dt) {
  std::string b = backend;
  if (b == "auto") {
    const char* env = std::getenv("MIXTILE_AMX_LINEAR");
    if (env && *env) {
      b = env;
    } else {
      // F32/F16 sources stay as they are: rounding them to BF16 is the user's call (as for experts).
      if (w.type == GgmlType::F32 || w.type == GgmlType::F16) return false;
      b = "AMXBF16";
    }
  }
  if (b == "AMXBF16") *dt = amx::Dtype::bf16;
  else if (b == "AMXInt8") *dt = amx::Dtype::int8;
  else return false;
  return true;
}

}  // namespace

void amx_linear_check_backend(const std::string& backend) {
  if (backend != "auto" && backend != "AMXBF16" && backend != "AMXInt8" && backend != "AVX512") {
    throw std::invalid_argument("linear: unknown backend \"" + backend + "\" (known: auto, AMXBF16, AMXInt8, AVX512)");
  }
}

std::shared_ptr<void> amx_linear_prepare(const Weight& w, const std::string& backend) {
  amx_linear_check_backend(backend);
  amx::Dtype dt;
  // "auto" packs only where AMX is the active level; a backend named by the rules packs wherever
  // AMX is usable (calls still take the panels only at ISA amx: amx_linear_takes).
  if (backend == "auto" && active_isa() < Isa::amx) return nullptr;
  if (!choose(w, backend, &dt) || !amx::available()) return nullptr;
  const int64_t k = w.ne[0], m = w.ne[1];
  const amx::CacheKey ck = amx::cache_key("linear", dt, kInt8Group, {&w});
  return amx::pack_linear(
      dt, kInt8Group, m, k,
      [&w](int64_t, int64_t r, float* dst) { dequantize_row(w.type, w.data + size_t(r) * w.row_bytes, dst, w.ne[0]); },
      ck);
}

bool amx_linear_takes(int64_t n) { return n >= amx::default_linear_min_tokens() && active_isa() >= Isa::amx; }

bool amx_linear_forward(const void* prepared, const float* x, int64_t n, float* y) {
  if (!prepared || !amx_linear_takes(n)) return false;
  repack_cache::report_pending();
  amx::linear_forward(*static_cast<const amx::PackedLinear*>(prepared), x, n, y);
  return true;
}

const char* amx_linear_name(const void* prepared) {
  return static_cast<const amx::PackedLinear*>(prepared)->dtype == amx::Dtype::bf16 ? "AMXBF16" : "AMXInt8";
}

}  // namespace mixtile
