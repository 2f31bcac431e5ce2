// N-API surface of the KV cache and the attention layer (src/native/kv-cache.ts, attention.ts).
#include <cmath>
#include <string>

#include "cpu/attention/attention-block.h"
#include "cpu/attention/attention.h"
#include "cpu/attention/handles.h"
#include "napi-registry.h"

namespace mixtile {

namespace {

int int_of(const Napi::Value& v, int64_t max, const char* what) { return int(int_arg(v, max, what)); }

// Checks a batch's slots and positions against the cache; throws a JS RangeError naming the token.
void check_batch(Napi::Env env, const KvCache& kv, int64_t n, const int32_t* seq, const int32_t* pos) {
  for (int64_t i = 0; i < n; ++i) {
    if (seq[i] < 0 || seq[i] >= kv.n_seq) {
      throw Napi::RangeError::New(env, "token " + std::to_string(i) + ": sequence id " + std::to_string(seq[i]) +
                                           " outside [0, " + std::to_string(kv.n_seq) + ")");
    }
    if (pos[i] < 0 || pos[i] >= kv.ctx) {
      throw Napi::RangeError::New(env, "token " + std::to_string(i) + ": position " + std::to_string(pos[i]) +
                                           " outside the context [0, " + std::to_string(kv.ctx) + ")");
    }
  }
}

std::shared_ptr<KvCache> kv_of(const Napi::Value& v) {
  return model_handle_get<KvCache>(v, ModelHandle::kv_cache, "kv cache");
}

// kvCacheCreate(type 0=f32 1=f16 2=bf16, nSeq, nLayers, ctx, nKvHeads, headDim) -> handle
Napi::Value kv_cache_create_js(const Napi::CallbackInfo& info) {
  return napi_guard(info, [&]() -> Napi::Value {
    int type = int_of(info[0], 2, "kv type");
    auto kv = kv_cache_create(KvType(type), int_of(info[1], 1 << 16, "nSeq"), int_of(info[2], 1 << 16, "nLayers"),
                              int_of(info[3], 1 << 24, "ctx"), int_of(info[4], 1 << 12, "nKvHeads"),
                              int_of(info[5], 1 << 12, "headDim"));
    return make_model_handle(info.Env(), ModelHandle::kv_cache, kv);
  });
}

// kvCacheCopy(kv, src, dst, nTokens)
Napi::Value kv_cache_copy_js(const Napi::CallbackInfo& info) {
  return napi_guard(info, [&]() -> Napi::Value {
    auto kv = kv_of(info[0]);
    int src = int_of(info[1], kv->n_seq - 1, "src slot"), dst = int_of(info[2], kv->n_seq - 1, "dst slot");
    kv_cache_copy(*kv, src, dst, int_of(info[3], kv->ctx, "nTokens"));
    return info.Env().Undefined();
  });
}

// kvCacheWrite(kv, layer, n, seq Int32Array[n], pos Int32Array[n], k Float32Array[n, kvDim], v) (tests)
Napi::Value kv_cache_write_js(const Napi::CallbackInfo& info) {
  return napi_guard(info, [&]() -> Napi::Value {
    auto kv = kv_of(info[0]);
    int layer = int_of(info[1], kv->n_layers - 1, "layer");
    int64_t n = int_arg(info[2], 1 << 24, "n");
    const int32_t* seq = i32_array(info[3], size_t(n), "seq");
    const int32_t* pos = i32_array(info[4], size_t(n), "pos");
    check_batch(info.Env(), *kv, n, seq, pos);
    const size_t row = size_t(kv->pos_stride());
    kv_cache_write(*kv, layer, n, seq, pos, f32_array(info[5], n * row, "k"), f32_array(info[6], n * row, "v"));
    return info.Env().Undefined();
  });
}

Napi::Value kv_cache_dispose_js(const Napi::CallbackInfo& info) {
  model_handle_arg<KvCache>(info[0], ModelHandle::kv_cache, "kv cache")->ptr.reset();
  return info.Env().Undefined();
}

Napi::Value number_field(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("attention layer: ") + key + " must be a number");
  return v;
}

// The projections' linear backend: o.backend when given (linear_load checks the name), else "auto".
std::string backend_field(const Napi::Object& o) {
  Napi::Value v = o.Get("backend");
  if (v.IsUndefined()) return "auto";
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), "attention layer: backend must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// attentionLayerCreate({layer, nHeads, nKvHeads, headDim, eps, ropeTheta, norm, qNorm?, kNorm?, wq, wk, wv, wo,
// backend?}) where the weights are weight handles (src/native/tensor.ts).
Napi::Value attention_layer_create_js(const Napi::CallbackInfo& info) {
  return napi_guard(info, [&]() -> Napi::Value {
    if (!info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "attentionLayerCreate: expected an options object");
    auto o = info[0].As<Napi::Object>();
    auto w = [&](const char* key) { return weight_arg(o.Get(key), key); };
    std::shared_ptr<Weight> qn, kn;
    if (!o.Get("qNorm").IsUndefined()) qn = w("qNorm");
    if (!o.Get("kNorm").IsUndefined()) kn = w("kNorm");
    auto L = attention_layer_create(
        int_of(number_field(o, "layer"), 1 << 16, "layer"), int_of(number_field(o, "nHeads"), 1 << 12, "nHeads"),
        int_of(number_field(o, "nKvHeads"), 1 << 12, "nKvHeads"), int_of(number_field(o, "headDim"), 1 << 12, "headDim"),
        number_field(o, "eps").As<Napi::Number>().FloatValue(), number_field(o, "ropeTheta").As<Napi::Number>().DoubleValue(),
        *w("norm"), qn.get(), kn.get(), *w("wq"), *w("wk"), *w("wv"), *w("wo"), backend_field(o));
    return make_model_handle(info.Env(), ModelHandle::attention_layer, L);
  });
}

// attentionLayerForward(layer, kv, x Float32Array[n, hidden], n, pos Int32Array[n], seq Int32Array[n])
Napi::Value attention_layer_forward_js(const Napi::CallbackInfo& info) {
  return napi_guard(info, [&]() -> Napi::Value {
    auto L = model_handle_get<AttentionLayer>(info[0], ModelHandle::attention_layer, "attention layer");
    auto kv = kv_of(info[1]);
    int64_t n = int_arg(info[3], 1 << 24, "n");
    float* x = f32_array(info[2], size_t(n * L->hidden), "x");
    const int32_t* pos = i32_array(info[4], size_t(n), "pos");
    const int32_t* seq = i32_array(info[5], size_t(n), "seq");
    if (L->layer >= kv->n_layers || L->n_kv_heads != kv->n_kv_heads || L->head_dim != kv->head_dim) {
      throw Napi::Error::New(info.Env(), "attention layer " + std::to_string(L->layer) +
                                             " does not fit the kv cache (layers, kv heads or head dim differ)");
    }
    check_batch(info.Env(), *kv, n, seq, pos);
    attention_block_forward(*L, *kv, x, n, pos, seq);
    return info.Env().Undefined();
  });
}

Napi::Value attention_layer_dispose_js(const Napi::CallbackInfo& info) {
  model_handle_arg<AttentionLayer>(info[0], ModelHandle::attention_layer, "attention layer")->ptr.reset();
  return info.Env().Undefined();
}

// attentionKernels() -> names of the dispatch entries this CPU runs, best first.
Napi::Value attention_kernels_js(const Napi::CallbackInfo& info) {
  auto arr = Napi::Array::New(info.Env());
  uint32_t i = 0;
  for (const auto& k : attention_kernels()) {
    if (k.isa <= active_isa()) arr.Set(i++, Napi::String::New(info.Env(), k.name));
  }
  return arr;
}

// attentionKernelRun(name, kv, layer, n, nHeads, q Float32Array[n, nHeads, headDim], out, pos, seq)
// -> true, or false when that entry declines the shapes. Runs one entry directly (kernel tests).
Napi::Value attention_kernel_run_js(const Napi::CallbackInfo& info) {
  return napi_guard(info, [&]() -> Napi::Value {
    std::string name = info[0].As<Napi::String>().Utf8Value();
    auto kv = kv_of(info[1]);
    int layer = int_of(info[2], kv->n_layers - 1, "layer");
    int64_t n = int_arg(info[3], 1 << 24, "n");
    int n_heads = int_of(info[4], 1 << 12, "nHeads");
    if (n_heads % kv->n_kv_heads != 0) throw Napi::RangeError::New(info.Env(), "nHeads must be a multiple of the kv heads");
    AttentionArgs a = attention_args_for(*kv, layer);
    a.bf16_dots = true;  // the entry named, whatever MIXTILE_ATTENTION_BF16 lets the dispatch do
    const size_t q_len = size_t(n * n_heads * kv->head_dim);
    a.q = f32_array(info[5], q_len, "q");
    a.out = f32_array(info[6], q_len, "out");
    a.pos = i32_array(info[7], size_t(n), "pos");
    a.seq = i32_array(info[8], size_t(n), "seq");
    check_batch(info.Env(), *kv, n, a.seq, a.pos);
    a.n = n;
    a.n_heads = n_heads;
    a.scale = float(1.0 / std::sqrt(double(kv->head_dim)));
    for (const auto& k : attention_kernels()) {
      if (name != k.name) continue;
      if (k.isa > active_isa()) throw Napi::Error::New(info.Env(), "attention kernel " + name + " needs " + isa_name(k.isa));
      if (!k.accepts(a)) return Napi::Boolean::New(info.Env(), false);
      k.fn(a);
      return Napi::Boolean::New(info.Env(), true);
    }
    throw Napi::Error::New(info.Env(), "unknown attention kernel " + name);
  });
}

}  // namespace

MIXTILE_EXPORT("kvCacheCreate", kv_cache_create_js);
MIXTILE_EXPORT("kvCacheCopy", kv_cache_copy_js);
MIXTILE_EXPORT("kvCacheWrite", kv_cache_write_js);
MIXTILE_EXPORT("kvCacheDispose", kv_cache_dispose_js);
MIXTILE_EXPORT("attentionLayerCreate", attention_layer_create_js);
MIXTILE_EXPORT("attentionLayerForward", attention_layer_forward_js);
MIXTILE_EXPORT("attentionLayerDispose", attention_layer_dispose_js);
MIXTILE_EXPORT("attentionKernels", attention_kernels_js);
MIXTILE_EXPORT("attentionKernelRun", attention_kernel_run_js);

}  // namespace mixtile
