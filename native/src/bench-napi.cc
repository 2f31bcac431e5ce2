// JS exports for benchmarks: weightSynth(type, dims, seed) and memReadBandwidth(mib, reps)
// (see synth.h), so `bench --op` can report decode time as a fraction of the memory floor
// measured in the same run; nothing crosses the JS heap.
#include "napi-registry.h"
#include "napi-util.h"
#include "synth.h"

namespace mixtile {
namespace {

Napi::Value weight_synth(const Napi::CallbackInfo& info) {
  int64_t type = int_arg(info[0], 1000, "weightSynth: type");
  if (!type_supported(GgmlType(type))) throw Napi::TypeError::New(info.Env(), "weightSynth: unsupported type");
  if (!info[1].IsArray() || info[1].As<Napi::Array>().Length() < 1 || info[1].As<Napi::Array>().Length() > 4) {
    throw Napi::TypeError::New(info.Env(), "weightSynth: dims must be an array of 1 to 4 integers");
  }
  auto dims = info[1].As<Napi::Array>();
  int64_t ne[4] = {1, 1, 1, 1};
  for (uint32_t i = 0; i < dims.Length(); ++i) ne[i] = int_arg(dims.Get(i), int64_t(1) << 32, "weightSynth: dims");
  uint64_t seed = uint64_t(int_arg(info[2], int64_t(1) << 52, "weightSynth: seed"));
  if (double(ne[0]) * double(ne[1]) * double(ne[2]) * double(ne[3]) > double(int64_t(1) << 40)) {
    throw Napi::RangeError::New(info.Env(), "weightSynth: tensor too large");
  }
  try {
    return make_weight_handle(info.Env(), synth_weight(GgmlType(type), ne, seed));
  } catch (const std::exception& e) {
    throw Napi::RangeError::New(info.Env(), std::string("weightSynth: ") + e.what());
  }
}

Napi::Value mem_read_bandwidth_js(const Napi::CallbackInfo& info) {
  int64_t mib = int_arg(info[0], 1 << 16, "memReadBandwidth: mib");
  int64_t reps = int_arg(info[1], 1000, "memReadBandwidth: reps");
  if (mib < 1 || reps < 1) throw Napi::RangeError::New(info.Env(), "memReadBandwidth: mib and reps must be >= 1");
  return Napi::Number::New(info.Env(), mem_read_bandwidth(size_t(mib), int(reps)));
}

}  // namespace

MIXTILE_EXPORT("weightSynth", weight_synth);
MIXTILE_EXPORT("memReadBandwidth", mem_read_bandwidth_js);

}  // namespace mixtile
