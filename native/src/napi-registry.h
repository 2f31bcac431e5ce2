// Self-registration of N-API functions: each op file registers its exports with
// MIXTILE_EXPORT(name, fn) so adding an op never touches addon.cc.
#pragma once
#include <napi.h>
#include <string>
#include <vector>

namespace mixtile {

using ExportFn = Napi::Value (*)(const Napi::CallbackInfo&);
struct ExportEntry {
  const char* name;
  ExportFn fn;
};
std::vector<ExportEntry>& export_registry();

struct ExportRegistrar {
  ExportRegistrar(const char* name, ExportFn fn) { export_registry().push_back({name, fn}); }
};

// Init hooks for things that need the env (ObjectWrap classes).
using InitFn = void (*)(Napi::Env, Napi::Object);
std::vector<InitFn>& init_registry();
struct InitRegistrar {
  explicit InitRegistrar(InitFn fn) { init_registry().push_back(fn); }
};

}  // namespace mixtile

#define MIXTILE_CAT2(a, b) a##b
#define MIXTILE_CAT(a, b) MIXTILE_CAT2(a, b)
// Registers `fn` as addon export `name`. Use at namespace scope in the op's -napi.cc file.
#define MIXTILE_EXPORT(name, fn) \
  static ::mixtile::ExportRegistrar MIXTILE_CAT(mixtile_export_, __COUNTER__)(name, fn)
#define MIXTILE_INIT(fn) static ::mixtile::InitRegistrar MIXTILE_CAT(mixtile_init_, __COUNTER__)(fn)
