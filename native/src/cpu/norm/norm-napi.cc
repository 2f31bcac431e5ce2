// JS export for the RMSNorm test: rmsNormRun(x, w, rows, dim, eps, out) through the dispatch
// (setIsa picks the path).
#include "cpu/norm/norm.h"
#include "napi-registry.h"
#include "napi-util.h"

namespace mixtile {
namespace {

Napi::Value rms_norm_run_js(const Napi::CallbackInfo& info) {
  const int64_t rows = int_arg(info[2], int64_t(1) << 24, "rmsNormRun: rows");
  const int64_t dim = int_arg(info[3], int64_t(1) << 24, "rmsNormRun: dim");
  if (!info[4].IsNumber()) throw Napi::TypeError::New(info.Env(), "rmsNormRun: eps must be a number");
  const float* x = f32_array(info[0], size_t(rows * dim), "rmsNormRun: x");
  const float* w = f32_array(info[1], size_t(dim), "rmsNormRun: w");
  float* y = f32_array(info[5], size_t(rows * dim), "rmsNormRun: out");
  rms_norm(x, w, y, rows, dim, info[4].As<Napi::Number>().FloatValue());
  return info.Env().Undefined();
}

}  // namespace

MIXTILE_EXPORT("rmsNormRun", rms_norm_run_js);

}  // namespace mixtile
