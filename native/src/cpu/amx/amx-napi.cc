// JS exports for the AMX kernels: amxInfo() -> {available, reason, flags, minTokensBf16, minTokensInt8,
// minTokensQ4k, minPairsPerExpertBf16, minPairsPerExpertInt8, minPairsPerExpertQ4k, minCallTokensOverride,
// linearMinTokens},
// amxExpertsPack(gate, up, down, dtype "bf16" | "int8" | "q4k", group, downBf16?) -> handle (q4k: Q4_K
// gate/up, Q4K panels; group = the activation group 32, 64, 128 or 256; downBf16 ignored),
// amxExpertsForward(h, x, n, ids, weights, topK, out, minTokens) (minTokens -1 = default),
// amxExpertsBytes(h), amxLastStats() -> {convertMs, gateUpMs, downMs, sumMs, totalMs, flops,
// expertsAmx, expertsAvx512} of the last forward (any caller, dispatch table included).
// amxLinearForward(linearHandle, x, n, out): the AMX path of a linear layer loaded with an AMX
// backend, whatever n (tests at awkward sizes). Layout only, no AMX needed (repack cache tests):
// amxExpertsPackLayout(gate, up, down, dtype, group) / amxLinearPackLayout(w, dtype, group) ->
// {bytes, hash (FNV-1a of the packed bytes, hex), cache (the repack cache outcome)}.
// Used by test/kernels/amx*.test.ts, test/native/repack-cache.test.ts and benchmarks; the engine
// goes through the experts dispatch table (amx-experts.cc) and linear_load (amx-linear.cc).
#include <cinttypes>
#include <cstdio>

#include "cpu/amx/amx-linear.h"
#include "cpu/amx/amx.h"
#include "cpu/amx/cache-key.h"
#include "cpu/dequant/dequant.h"
#include "cpu/linear/linear.h"
#include "napi-registry.h"
#include "napi-util.h"

namespace mixtile {
namespace {

constexpr int64_t kMaxTokens = int64_t(1) << 24;

// What an AMX handle holds (packing copies, so the source weights may be disposed after).
struct AmxHandle {
  std::shared_ptr<amx::PackedExperts> pe;
};

Napi::Value amx_info_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", Napi::Boolean::New(env, amx::available()));
  o.Set("reason", Napi::String::New(env, amx::unavailable_reason()));
  o.Set("flags", Napi::String::New(env, amx::cpu_flags()));
  o.Set("minTokensBf16", Napi::Number::New(env, amx::default_min_tokens(amx::Dtype::bf16)));
  o.Set("minTokensInt8", Napi::Number::New(env, amx::default_min_tokens(amx::Dtype::int8)));
  o.Set("minPairsPerExpertBf16", Napi::Number::New(env, amx::default_min_pairs_per_expert(amx::Dtype::bf16)));
  o.Set("minPairsPerExpertInt8", Napi::Number::New(env, amx::default_min_pairs_per_expert(amx::Dtype::int8)));
  o.Set("minTokensQ4k", Napi::Number::New(env, amx::default_min_tokens(amx::Dtype::q4k)));
  o.Set("minPairsPerExpertQ4k", Napi::Number::New(env, amx::default_min_pairs_per_expert(amx::Dtype::q4k)));
  o.Set("minCallTokensOverride", Napi::Number::New(env, amx::call_min_tokens_override()));
  o.Set("linearMinTokens", Napi::Number::New(env, amx::default_linear_min_tokens()));
  return o;
}

// "bf16", "int8", and (experts only: allow_q4k) "q4k".
amx::Dtype dtype_arg(const Napi::Value& v, const char* fn, bool allow_q4k = false) {
  const std::string dt = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
  if (allow_q4k && dt == "q4k") return amx::Dtype::q4k;
  if (dt != "bf16" && dt != "int8") {
    throw Napi::TypeError::New(v.Env(), std::string(fn) + ": dtype must be \"bf16\", \"int8\"" +
                                            (allow_q4k ? " or \"q4k\"" : " or (experts) \"q4k\""));
  }
  return dt == "bf16" ? amx::Dtype::bf16 : amx::Dtype::int8;
}

Napi::Value layout_result(Napi::Env env, const uint8_t* p, size_t n, const char* cache) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016" PRIx64, h);
  Napi::Object o = Napi::Object::New(env);
  o.Set("bytes", double(n));
  o.Set("hash", hex);
  o.Set("cache", cache);
  return o;
}

amx::RowFn rows_of(const std::shared_ptr<Weight>& w) {
  return [w](int64_t e, int64_t r, float* dst) {
    dequantize_row(w->type, w->data + size_t(e) * w->matrix_bytes() + size_t(r) * w->row_bytes, dst, w->ne[0]);
  };
}

// Q4K panels (Q4_K gate/up; down Q4_K, else INT8 group 32 from its dequantized rows).
std::shared_ptr<amx::PackedExperts> pack_q4k(const std::shared_ptr<Weight>& gate, const std::shared_ptr<Weight>& up,
                                             const std::shared_ptr<Weight>& down, const amx::CacheKey& cache,
                                             const char* fn, int act_group = 32) {
  if (gate->type != GgmlType::Q4_K || up->type != GgmlType::Q4_K) {
    throw std::invalid_argument(std::string(fn) + ": dtype \"q4k\" needs Q4_K gate and up weights");
  }
  auto blocks = [](const std::shared_ptr<Weight>& w) -> amx::BlockRowFn {
    return [w](int64_t e, int64_t r) { return w->data + size_t(e) * w->matrix_bytes() + size_t(r) * w->row_bytes; };
  };
  const amx::BlockRowFn down_blocks = blocks(down);
  return amx::pack_experts_q4k(gate->ne[2], gate->ne[0], gate->ne[1], blocks(gate), blocks(up),
                               down->type == GgmlType::Q4_K ? &down_blocks : nullptr, rows_of(down), cache,
                               act_group);
}

Napi::Value amx_experts_pack_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto gate = weight_arg(info[0], "amxExpertsPack: gate");
  auto up = weight_arg(info[1], "amxExpertsPack: up");
  auto down = weight_arg(info[2], "amxExpertsPack: down");
  const amx::Dtype dt = dtype_arg(info[3], "amxExpertsPack", true);
  const int group = int(int_arg(info[4], 4096, "amxExpertsPack: group"));
  const bool down_bf16 = info.Length() > 5 && info[5].IsBoolean() && info[5].As<Napi::Boolean>().Value();
  const int64_t hidden = gate->ne[0], ffn = gate->ne[1], n_expert = gate->ne[2];
  if (up->ne[0] != hidden || up->ne[1] != ffn || up->ne[2] != n_expert || down->ne[0] != ffn ||
      down->ne[1] != hidden || down->ne[2] != n_expert) {
    throw Napi::Error::New(env, "amxExpertsPack: expected gate/up [hidden, ffn, n_expert] and down [ffn, hidden, "
                                "n_expert] (ggml order)");
  }
  if (!amx::available()) throw Napi::Error::New(env, "amxExpertsPack: " + amx::unavailable_reason());
  auto h = std::make_shared<AmxHandle>();
  try {
    h->pe = dt == amx::Dtype::q4k ? pack_q4k(gate, up, down, {}, "amxExpertsPack", group)
                                  : amx::pack_experts(dt, group, n_expert, hidden, ffn, rows_of(gate), rows_of(up),
                                                      rows_of(down), {}, down_bf16);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("amxExpertsPack: ") + e.what());
  }
  return make_handle<AmxHandle>(env, HandleKind::other, h);
}

Napi::Value amx_experts_pack_layout_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto gate = weight_arg(info[0], "amxExpertsPackLayout: gate");
  auto up = weight_arg(info[1], "amxExpertsPackLayout: up");
  auto down = weight_arg(info[2], "amxExpertsPackLayout: down");
  const amx::Dtype dt = dtype_arg(info[3], "amxExpertsPackLayout", true);
  const int group = int(int_arg(info[4], 4096, "amxExpertsPackLayout: group"));
  const int64_t hidden = gate->ne[0], ffn = gate->ne[1], n_expert = gate->ne[2];
  if (up->ne[0] != hidden || up->ne[1] != ffn || up->ne[2] != n_expert || down->ne[0] != ffn ||
      down->ne[1] != hidden || down->ne[2] != n_expert) {
    throw Napi::Error::New(env, "amxExpertsPackLayout: expected gate/up [hidden, ffn, n_expert] and down [ffn, hidden, n_expert]");
  }
  try {
    auto pe = dt == amx::Dtype::q4k
                  ? pack_q4k(gate, up, down, amx::cache_key("experts", dt, 32, {gate.get(), up.get(), down.get()}),
                             "amxExpertsPackLayout")
                  : amx::pack_experts(dt, group, n_expert, hidden, ffn, rows_of(gate), rows_of(up), rows_of(down),
                                      amx::cache_key("experts", dt, group, {gate.get(), up.get(), down.get()}));
    return layout_result(env, pe->storage.get(), pe->storage_bytes, pe->cache_outcome);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("amxExpertsPackLayout: ") + e.what());
  }
}

Napi::Value amx_linear_pack_layout_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto w = weight_arg(info[0], "amxLinearPackLayout");
  const amx::Dtype dt = dtype_arg(info[1], "amxLinearPackLayout");
  const int group = int(int_arg(info[2], 4096, "amxLinearPackLayout: group"));
  if (w->ne[2] != 1 || w->ne[3] != 1) throw Napi::Error::New(env, "amxLinearPackLayout: weight must be 2-D");
  try {
    auto pl = amx::pack_linear(
        dt, group, w->ne[1], w->ne[0],
        [w](int64_t, int64_t r, float* dst) { dequantize_row(w->type, w->data + size_t(r) * w->row_bytes, dst, w->ne[0]); },
        amx::cache_key("linear", dt, group, {w.get()}));
    return layout_result(env, pl->storage.get(), pl->storage_bytes, pl->cache_outcome);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("amxLinearPackLayout: ") + e.what());
  }
}

Napi::Value amx_linear_forward_js(const Napi::CallbackInfo& info) {
  auto lw = handle_get<LinearWeight>(info[0], HandleKind::linear, "amxLinearForward");
  const int64_t n = int_arg(info[2], kMaxTokens, "amxLinearForward: nTokens");
  const float* x = f32_array(info[1], size_t(n * lw->k), "amxLinearForward: x");
  float* y = f32_array(info[3], size_t(n * lw->m), "amxLinearForward: out");
  if (!lw->amx) throw Napi::Error::New(info.Env(), "amxLinearForward: this linear has no AMX panels (load it with backend AMXBF16 or AMXInt8 on an AMX CPU)");
  amx::linear_forward(*static_cast<const amx::PackedLinear*>(lw->amx.get()), x, n, y);
  return info.Env().Undefined();
}

Napi::Value amx_experts_forward_js(const Napi::CallbackInfo& info) {
  auto h = handle_get<AmxHandle>(info[0], HandleKind::other, "amxExpertsForward");
  const amx::PackedExperts& pe = *h->pe;
  const int64_t n = int_arg(info[2], kMaxTokens, "amxExpertsForward: nTokens");
  const float* x = f32_array(info[1], size_t(n * pe.hidden), "amxExpertsForward: x");
  const int top_k = int(int_arg(info[5], pe.n_expert, "amxExpertsForward: topK"));
  const int32_t* ids = i32_array(info[3], size_t(n * top_k), "amxExpertsForward: ids");
  const float* w = f32_array(info[4], size_t(n * top_k), "amxExpertsForward: weights");
  float* y = f32_array(info[6], size_t(n * pe.hidden), "amxExpertsForward: out");
  const int min_tokens = info[7].IsNumber() ? info[7].As<Napi::Number>().Int32Value() : -1;
  for (int64_t i = 0; i < n * top_k; ++i) {
    if (ids[i] < 0 || ids[i] >= pe.n_expert) {
      throw Napi::RangeError::New(info.Env(), "amxExpertsForward: expert id " + std::to_string(ids[i]) + " at token " +
                                                  std::to_string(i / top_k) + " is outside [0, " +
                                                  std::to_string(pe.n_expert) + ")");
    }
  }
  amx::experts_forward(pe, {x, n, ids, w, top_k, y, min_tokens});
  return info.Env().Undefined();
}

Napi::Value amx_last_stats_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const amx::ForwardStats st = amx::last_forward_stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("convertMs", st.convert_s * 1e3);
  o.Set("gateUpMs", st.gate_up_s * 1e3);
  o.Set("downMs", st.down_s * 1e3);
  o.Set("sumMs", st.sum_s * 1e3);
  o.Set("totalMs", st.total_s * 1e3);
  o.Set("flops", st.flops);
  o.Set("expertsAmx", st.experts_amx);
  o.Set("expertsAvx512", st.experts_avx512);
  return o;
}

Napi::Value amx_experts_bytes_js(const Napi::CallbackInfo& info) {
  auto h = handle_get<AmxHandle>(info[0], HandleKind::other, "amxExpertsBytes");
  return Napi::Number::New(info.Env(), double(h->pe->storage_bytes));
}

}  // namespace

MIXTILE_EXPORT("amxInfo", amx_info_js);
MIXTILE_EXPORT("amxExpertsPack", amx_experts_pack_js);
MIXTILE_EXPORT("amxExpertsForward", amx_experts_forward_js);
MIXTILE_EXPORT("amxExpertsBytes", amx_experts_bytes_js);
MIXTILE_EXPORT("amxLastStats", amx_last_stats_js);
MIXTILE_EXPORT("amxExpertsPackLayout", amx_experts_pack_layout_js);
MIXTILE_EXPORT("amxLinearPackLayout", amx_linear_pack_layout_js);
MIXTILE_EXPORT("amxLinearForward", amx_linear_forward_js);

}  // namespace mixtile
