// Addon entry: exposes every function registered with MIXTILE_EXPORT / MIXTILE_INIT.
#include "napi-registry.h"

namespace mixtile {

std::vector<ExportEntry>& export_registry() {
  static std::vector<ExportEntry> r;
  return r;
}
std::vector<InitFn>& init_registry() {
  static std::vector<InitFn> r;
  return r;
}

static Napi::Object init(Napi::Env env, Napi::Object exports) {
  for (const auto& e : export_registry()) exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
  for (auto fn : init_registry()) fn(env, exports);
  return exports;
}

}  // namespace mixtile

static Napi::Object mixtile_init(Napi::Env env, Napi::Object exports) { return mixtile::init(env, exports); }
NODE_API_MODULE(mixtile, mixtile_init)
