// N-API surface of the FFN blocks and the output head (src/native/norm.ts).
#include <string>

#include "cpu/attention/handles.h"
#include "cpu/norm/ffn-block.h"
#include "napi-registry.h"

namespace mixtile {

namespace {

Napi::Object options(const Napi::CallbackInfo& info, const char* fn) {
  if (!info[0].IsObject()) throw Napi::TypeError::New(info.Env(), std::string(fn) + ": expected an options object");
  return info[0].As<Napi::Object>();
}

double num(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// o.backend when given (the kernel loader checks the name), else "auto".
std::string backend_field(const Napi::Object& o) {
  Napi::Value v = o.Get("backend");
  if (v.IsUndefined()) return "auto";
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), "backend must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// ffnBlockCreateMoe({layer, eps, norm, router, gateExps, upExps, downExps, topK, normTopKProb, backend?}) -> handle
Napi::Value ffn_block_create_moe_js(const Napi::CallbackInfo& info) {
  return napi_guard(info, [&]() -> Napi::Value {
    auto o = options(info, "ffnBlockCreateMoe");
    auto w = [&](const char* key) { return weight_arg(o.Get(key), key); };
    auto b = ffn_block_create_moe(int(num(o, "layer")), float(num(o, "eps")), *w("norm"), *w("router"),
                                  *w("gateExps"), *w("upExps"), *w("downExps"), int(num(o, "topK")),
                                  o.Get("normTopKProb").ToBoolean().Value(), backend_field(o));
    return make_model_handle(info.Env(), ModelHandle::ffn_block, b);
  });
}

// ffnBlockCreateDense({layer, eps, norm, gate, up, down}) -> handle
Napi::Value ffn_block_create_dense_js(const Napi::CallbackInfo& info) {
  return napi_guard(info, [&]() -> Napi::Value {
    auto o = options(info, "ffnBlockCreateDense");
    auto w = [&](const char* key) { return weight_arg(o.Get(key), key); };
    auto b = ffn_block_create_dense(int(num(o, "layer")), float(num(o, "eps")), *w("norm"), *w("gate"), *w("up"),
                                    *w("down"));
    return make_model_handle(info.Env(), ModelHandle::ffn_block, b);
  });
}

// ffnBlockForward(block, x Float32Array[n, hidden], n)
Napi::Value ffn_block_forward_js(const Napi::CallbackInfo& info) {
  return napi_guard(info, [&]() -> Napi::Value {
    auto b = model_handle_get<FfnBlock>(info[0], ModelHandle::ffn_block, "ffn block");
    int64_t n = int_arg(info[2], 1 << 24, "n");
    ffn_block_forward(*b, f32_array(info[1], size_t(n * b->hidden), "x"), n);
    return info.Env().Undefined();
  });
}

Napi::Value ffn_block_dispose_js(const Napi::CallbackInfo& info) {
  model_handle_arg<FfnBlock>(info[0], ModelHandle::ffn_block, "ffn block")->ptr.reset();
  return info.Env().Undefined();
}

// lmHeadCreate({eps, norm, out, backend?}) -> handle
Napi::Value lm_head_create_js(const Napi::CallbackInfo& info) {
  return napi_guard(info, [&]() -> Napi::Value {
    auto o = options(info, "lmHeadCreate");
    auto h = lm_head_create(float(num(o, "eps")), *weight_arg(o.Get("norm"), "norm"), *weight_arg(o.Get("out"), "out"),
                            backend_field(o));
    return make_model_handle(info.Env(), ModelHandle::lm_head, h);
  });
}

// lmHeadForward(head, x Float32Array[n, hidden], n, rows Int32Array[k], logits Float32Array[k, vocab])
Napi::Value lm_head_forward_js(const Napi::CallbackInfo& info) {
  return napi_guard(info, [&]() -> Napi::Value {
    auto h = model_handle_get<LmHead>(info[0], ModelHandle::lm_head, "lm head");
    int64_t n = int_arg(info[2], 1 << 24, "n");
    const float* x = f32_array(info[1], size_t(n * h->hidden), "x");
    auto rows_arr = info[3].As<Napi::Int32Array>();
    const int32_t* rows = i32_array(info[3], 0, "rows");
    const int64_t k = int64_t(rows_arr.ElementLength());
    for (int64_t r = 0; r < k; ++r) {
      if (rows[r] < 0 || rows[r] >= n) {
        throw Napi::RangeError::New(info.Env(), "logits row " + std::to_string(rows[r]) + " outside the batch of " +
                                                    std::to_string(n));
      }
    }
    lm_head_forward(*h, x, rows, k, f32_array(info[4], size_t(k * h->vocab), "logits"));
    return info.Env().Undefined();
  });
}

Napi::Value lm_head_dispose_js(const Napi::CallbackInfo& info) {
  model_handle_arg<LmHead>(info[0], ModelHandle::lm_head, "lm head")->ptr.reset();
  return info.Env().Undefined();
}

}  // namespace

MIXTILE_EXPORT("ffnBlockCreateMoe", ffn_block_create_moe_js);
MIXTILE_EXPORT("ffnBlockCreateDense", ffn_block_create_dense_js);
MIXTILE_EXPORT("ffnBlockForward", ffn_block_forward_js);
MIXTILE_EXPORT("ffnBlockDispose", ffn_block_dispose_js);
MIXTILE_EXPORT("lmHeadCreate", lm_head_create_js);
MIXTILE_EXPORT("lmHeadForward", lm_head_forward_js);
MIXTILE_EXPORT("lmHeadDispose", lm_head_dispose_js);

}  // namespace mixtile
