// Loads libmixtile-cuda.so with dlopen (never linked, so CPU-only machines lose nothing) and exports
// cudaInfo() to JS: whether CUDA is usable here, and if not, why. Typed wrapper: src/native/cuda.ts.
#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "cuda-loader.h"
#include "napi-registry.h"

namespace mixtile {

static std::string addon_dir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&addon_dir), &info) == 0 || !info.dli_fname) return ".";
  std::string p = info.dli_fname;
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

const CudaApi* cuda_api(std::string* why, const char* path_override) {
  static std::once_flag once;
  static CudaApi api;
  static const CudaApi* result = nullptr;
  static std::string failure;
  std::call_once(once, [&] {
    const char* env = std::getenv("MIXTILE_CUDA_LIB");
    std::string path = path_override && *path_override ? path_override
                       : env && *env                    ? env
                                                        : addon_dir() + "/libmixtile-cuda.so";
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      failure = "the CUDA library was not built: " + path +
                " does not exist (the addon is built with CUDA only where nvcc is found; "
                "or set MIXTILE_CUDA_LIB)";
      return;
    }
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      failure = std::string("could not load ") + path + ": " + (e ? e : "unknown dlopen error");
      return;
    }
#define MIXTILE_CUDA_SYM(fn)                                                            \
    api.fn = reinterpret_cast<decltype(api.fn)>(dlsym(h, #fn));                         \
    if (!api.fn) {                                                                      \
      failure = path + ": missing symbol " #fn " (library older than the addon? rebuild)"; \
      return;                                                                           \
    }
    MIXTILE_CUDA_FUNCS(MIXTILE_CUDA_SYM)
#undef MIXTILE_CUDA_SYM
    if (api.mxc_abi_version() != MXC_ABI_VERSION) {
      failure = path + ": ABI version " + std::to_string(api.mxc_abi_version()) + ", the addon expects " +
                std::to_string(MXC_ABI_VERSION) + "; rebuild both with npm run build:native";
      return;
    }
    api.path = path;
    result = &api;  // the handle stays open for the life of the process
  });
  if (!result && why) *why = failure;
  return result;
}

// cudaInfo(libPath?: string) -> { available, reason?, library?, driverVersion, runtimeVersion, cublas,
//   devices: [{ name, vramBytes, freeBytes, cc: "9.0", multiprocessors }] }
static Napi::Value cuda_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string override_path;
  if (info.Length() > 0 && info[0].IsString()) override_path = info[0].As<Napi::String>().Utf8Value();
  Napi::Object out = Napi::Object::New(env);
  Napi::Array devices = Napi::Array::New(env);
  out.Set("devices", devices);
  std::string why;
  const CudaApi* api = cuda_api(&why, override_path.c_str());
  if (!api) {
    out.Set("available", false);
    out.Set("reason", why);
    return out;
  }
  out.Set("library", api->path);
  int drv = 0, rt = 0;
  api->mxc_versions(&drv, &rt);
  out.Set("driverVersion", drv);
  out.Set("runtimeVersion", rt);
  out.Set("cublas", api->mxc_has_cublas() != 0);
  int n = 0;
  if (api->mxc_device_count(&n) != MXC_OK) {
    out.Set("available", false);
    out.Set("reason", std::string(api->mxc_last_error()));
    return out;
  }
  for (int d = 0; d < n; ++d) {
    mxc_device_info di;
    if (api->mxc_device_info_get(d, &di) != MXC_OK) {
      out.Set("available", false);
      out.Set("reason", "device " + std::to_string(d) + ": " + api->mxc_last_error());
      return out;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", std::string(di.name));
    o.Set("vramBytes", double(di.vram_bytes));
    o.Set("freeBytes", double(di.free_bytes));
    o.Set("cc", std::to_string(di.cc_major) + "." + std::to_string(di.cc_minor));
    o.Set("multiprocessors", di.multiprocessors);
    devices.Set(uint32_t(d), o);
  }
  out.Set("available", true);
  return out;
}

MIXTILE_EXPORT("cudaInfo", cuda_info);

}  // namespace mixtile
