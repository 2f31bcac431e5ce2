// Errors, probe and versions of libmixtile-cuda-host: one device, "Mixtile host stand-in (CPU)",
// compute capability 9.0 (what the real library's kernels are tuned for), its VRAM the stand-in's
// configurable capacity (MIXTILE_CUDA_HOST_VRAM).
#include <cstdio>
#include <thread>

#include "host-common.h"

namespace mixtile::cuda_host {
const char* last_error();
// The CUDA version whose semantics the stand-in follows (the real library's toolkit).
constexpr int CUDA_VERSION_FOLLOWED = 12080;
}  // namespace mixtile::cuda_host

using namespace mixtile::cuda_host;

extern "C" {

const char* mxc_last_error(void) { return last_error(); }

int mxc_abi_version(void) { return MXC_ABI_VERSION; }

// GEMMs run at every m, as the real library does with cuBLAS.
int mxc_has_cublas(void) { return 1; }

mxc_status mxc_versions(int* driver_version, int* runtime_version) {
  MXH_CHECK_ARG(driver_version && runtime_version, "mxc_versions: null output pointer");
  *driver_version = CUDA_VERSION_FOLLOWED;
  *runtime_version = CUDA_VERSION_FOLLOWED;
  return MXC_OK;
}

mxc_status mxc_device_count(int* count) {
  MXH_CHECK_ARG(count, "mxc_device_count: null output pointer");
  *count = 1;
  return MXC_OK;
}

mxc_status mxc_device_info_get(int device, mxc_device_info* out) {
  MXH_CHECK_ARG(out, "mxc_device_info_get: null output pointer");
  MXH_CHECK_ARG(device == 0, "mxc_device_info_get: device %d out of range (1 devices)", device);
  std::memset(out, 0, sizeof *out);
  std::snprintf(out->name, sizeof out->name, "%s", "Mixtile host stand-in (CPU)");
  out->vram_bytes = vram_capacity();
  out->free_bytes = vram_capacity() - vram_used();
  out->cc_major = 9;
  out->cc_minor = 0;
  unsigned cores = std::thread::hardware_concurrency();
  out->multiprocessors = cores ? int(cores) : 1;
  out->l2_bytes = 0;
  out->pci_bus_id = 0;
  return MXC_OK;
}

mxc_status mxc_set_device(int device) {
  if (device != 0)
    return fail(MXC_ERR_NO_DEVICE, "cudaSetDevice: cudaErrorInvalidDevice: invalid device ordinal (%d; the host "
                "stand-in has device 0 only)", device);
  return MXC_OK;
}

}  // extern "C"
