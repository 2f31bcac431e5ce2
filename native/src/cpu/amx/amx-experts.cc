// The AMX entries of the experts dispatch table (experts.cc's AMX slot): "AMXBF16", "AMXInt8"
// and "AMXInt4". At experts_load one of them repacks the weights (dequantize_row per source row):
// AMXBF16 for BF16 sources, AMXInt8 (group 64) for quantized ones (Q8_0, Q4_K, Q5_K, Q6_K), none
// for F32/F16 (rounding them to BF16 is the user's call), unless MIXTILE_AMX_BACKEND=AMXBF16 |
// AMXInt8 | AMXInt4 | off says otherwise. AMXInt4 (asked for by name only, until measured on the
// AMX machine) re-lays Q4_K gate/up (and a Q4_K down) out as Q4K 4-bit panels, no requantization
// (amx.h); with gate/up of another type it falls back to AMXInt8; the packed panels go through the repack cache (keyed on the three
// source tensors' file identity). A call that call_takes_amx() (enough tokens per expert) runs every
// expert with >= default_min_tokens() tokens on AMX and the rest on AVX-512 over the same panels;
// a smaller call (decode) goes to the generic entry over the source weights, which for K-quants
// reads about half the bytes of the INT8 panels.
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/amx/amx.h"
#include "cpu/amx/cache-key.h"
#include "cpu/dequant/dequant.h"
#include "cpu/experts/experts.h"
#include "repack-cache.h"

namespace mixtile {
namespace {

constexpr int kInt8Group = 64;  // one TDPBSSD K step per group (why 64: amx.h, INT8 layout)

// INT8 scale group along K for weights and activations: MIXTILE_AMX_INT8_GROUP (32, 64, 128,
// 256), else 64. 32 halves the quantization error of 64 on 30B-A3B shapes at the cost of twice
// the tile instructions and scaling (bench/RESULTS.md "## AMX", group 32).
int int8_group() {
  const char* env = std::getenv("MIXTILE_AMX_INT8_GROUP");
  if (!env || !*env) return kInt8Group;
  const std::string v = env;
  if (v == "32" || v == "64" || v == "128" || v == "256") return std::stoi(v);
  throw std::invalid_argument("MIXTILE_AMX_INT8_GROUP must be 32, 64, 128 or 256, got \"" + v + "\"");
}

// AMXInt4 activation group: MIXTILE_AMX_INT4_ACT_GROUP (32, 64, 128, 256), else 32: the per-32 scale
// pass (most accurate), or the sub-block scales folded into the integer products with one scale pass
// per group (256: llama.cpp's Q4_K x Q8_K arithmetic; amx.h PackedExperts::q4_act_group).
int int4_act_group() {
  const char* env = std::getenv("MIXTILE_AMX_INT4_ACT_GROUP");
  if (!env || !*env) return 32;
  const std::string v = env;
  if (v == "32" || v == "64" || v == "128" || v == "256") return std::stoi(v);
  throw std::invalid_argument("MIXTILE_AMX_INT4_ACT_GROUP must be 32, 64, 128 or 256, got \"" + v + "\"");
}

// MIXTILE_AMX_INT8_DOWN=bf16: INT8 gate+up with BF16 down panels (h kept in BF16), int8 (default)
// for all-INT8 (amx.h pack_experts, down_bf16).
bool int8_down_bf16() {
  const char* env = std::getenv("MIXTILE_AMX_INT8_DOWN");
  if (!env || !*env || !std::strcmp(env, "int8")) return false;
  if (!std::strcmp(env, "bf16")) return true;
  throw std::invalid_argument(std::string("MIXTILE_AMX_INT8_DOWN must be int8 or bf16, got \"") + env + "\"");
}

// The backend the table should prepare for these weights, or nullptr for none.
const char* chosen_backend(const ExpertsWeights& ew) {
  // Q4K panels hold Q4_K gate/up only; other sources get the INT8 panels instead.
  const bool q4k_source = ew.gate.type == GgmlType::Q4_K && ew.up.type == GgmlType::Q4_K;
  // An explicit backend from the placement rules wins; only "auto" consults the env knob.
  if (ew.backend == "AMXBF16") return "AMXBF16";
  if (ew.backend == "AMXInt8") return "AMXInt8";
  if (ew.backend == "AMXInt4") return q4k_source ? "AMXInt4" : "AMXInt8";
  if (ew.backend != "auto") return nullptr;  // AVX512 / llamafile / generic: no AMX repack
  const char* env = std::getenv("MIXTILE_AMX_BACKEND");
  if (env && *env) {
    if (!std::strcmp(env, "AMXBF16") || !std::strcmp(env, "AMXInt8")) return env;
    if (!std::strcmp(env, "AMXInt4")) return q4k_source ? "AMXInt4" : "AMXInt8";
    return nullptr;  // "off" or anything else
  }
  if (ew.gate.type == GgmlType::F32 || ew.gate.type == GgmlType::F16) return nullptr;
  return ew.gate.type == GgmlType::BF16 ? "AMXBF16" : "AMXInt8";
}

amx::RowFn rows_of(const Weight& w) {
  return [&w](int64_t e, int64_t r, float* dst) {
    dequantize_row(w.type, w.data + size_t(e) * w.matrix_bytes() + size_t(r) * w.row_bytes, dst, w.ne[0]);
  };
}

constexpr const char* entry_name(amx::Dtype dt) {
  return dt == amx::Dtype::bf16 ? "AMXBF16" : (dt == amx::Dtype::int8 ? "AMXInt8" : "AMXInt4");
}

amx::BlockRowFn blocks_of(const Weight& w) {
  return [&w](int64_t e, int64_t r) { return w.data + size_t(e) * w.matrix_bytes() + size_t(r) * w.row_bytes; };
}

template <amx::Dtype DT>
std::shared_ptr<void> prepare(const ExpertsWeights& ew) {
  const char* chosen = chosen_backend(ew);
  if (!chosen || std::strcmp(chosen, entry_name(DT)) != 0 || !amx::available()) return nullptr;
  if constexpr (DT == amx::Dtype::q4k) {
    const amx::BlockRowFn down = blocks_of(ew.down);
    return amx::pack_experts_q4k(ew.n_expert, ew.hidden, ew.ffn, blocks_of(ew.gate), blocks_of(ew.up),
                                 ew.down.type == GgmlType::Q4_K ? &down : nullptr, rows_of(ew.down),
                                 amx::cache_key("experts", DT, 32, {&ew.gate, &ew.up, &ew.down}), int4_act_group());
  }
  const int group = DT == amx::Dtype::int8 ? int8_group() : kInt8Group;
  const bool down_bf16 = DT == amx::Dtype::int8 && int8_down_bf16();
  return amx::pack_experts(DT, group, ew.n_expert, ew.hidden, ew.ffn, rows_of(ew.gate), rows_of(ew.up),
                           rows_of(ew.down),
                           amx::cache_key(down_bf16 ? "experts-down-bf16" : "experts", DT, group,
                                          {&ew.gate, &ew.up, &ew.down}),
                           down_bf16);
}

template <amx::Dtype DT>
bool accepts(const ExpertsWeights& ew, const MoeArgs& a) {
  return amx::available() && amx::call_takes_amx(DT, a.n, a.top_k, ew.n_expert);
}

template <amx::Dtype DT>
void forward(const ExpertsWeights& ew, const MoeArgs& a) {
  const auto& pe = *static_cast<const amx::PackedExperts*>(ew.prepared.at(entry_name(DT)).get());
  repack_cache::report_pending();
  amx::experts_forward(pe, {a.x, a.n, a.ids, a.weights, a.top_k, a.y, -1});
}

struct Register {
  Register() {
    experts_register_kernel(
        {Isa::amx, "AMXInt4", accepts<amx::Dtype::q4k>, forward<amx::Dtype::q4k>, prepare<amx::Dtype::q4k>});
    experts_register_kernel(
        {Isa::amx, "AMXInt8", accepts<amx::Dtype::int8>, forward<amx::Dtype::int8>, prepare<amx::Dtype::int8>});
    experts_register_kernel(
        {Isa::amx, "AMXBF16", accepts<amx::Dtype::bf16>, forward<amx::Dtype::bf16>, prepare<amx::Dtype::bf16>});
  }
} register_amx;

}  // namespace
}  // namespace mixtile
