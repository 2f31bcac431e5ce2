// JS exports of the repack cache (repack-cache.h): repackCacheSettings() -> {enabled, dir};
// repackCacheTakeTotals() -> the totals since the last take ({tensors, hits, written, rebuilt,
// writeFailed, uncached, sourceBytes, packedBytes, buildS, writeS, openS, dir, summary}); taking
// them also keeps the next forward from printing them.
#include "napi-registry.h"
#include "napi-util.h"
#include "repack-cache.h"

namespace mixtile {
namespace {

Napi::Value repack_cache_settings_js(const Napi::CallbackInfo& info) {
  const repack_cache::Settings s = repack_cache::settings();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("enabled", s.enabled);
  o.Set("dir", s.dir);
  return o;
}

Napi::Value repack_cache_take_totals_js(const Napi::CallbackInfo& info) {
  const repack_cache::Totals t = repack_cache::take_totals();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("tensors", t.tensors);
  o.Set("hits", t.hits);
  o.Set("written", t.written);
  o.Set("rebuilt", t.rebuilt);
  o.Set("writeFailed", t.write_failed);
  o.Set("uncached", t.uncached);
  o.Set("sourceBytes", t.source_bytes);
  o.Set("packedBytes", t.packed_bytes);
  o.Set("buildS", t.build_s);
  o.Set("writeS", t.write_s);
  o.Set("openS", t.open_s);
  o.Set("dir", t.dir);
  o.Set("summary", repack_cache::summary(t));
  return o;
}

}  // namespace

MIXTILE_EXPORT("repackCacheSettings", repack_cache_settings_js);
MIXTILE_EXPORT("repackCacheTakeTotals", repack_cache_take_totals_js);

}  // namespace mixtile
