// Smallest export: lets TS check it loaded the addon it was built with.
#include "napi-registry.h"

static Napi::Value addon_version(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), "0.1.0");
}
MIXTILE_EXPORT("version", addon_version);
