// The CUDA operator library (libmixtile-cuda.so, C ABI in cuda/mixtile-cuda.h) as seen from the addon:
// loaded with dlopen on first use so the addon never links CUDA and loads on machines without it.
// N-API ops that run on the GPU call through cuda_api()'s function table.
#pragma once
#include <string>

#include "cuda/mixtile-cuda.h"

namespace mixtile {

// Every ABI function, so a new one is one line here.
#define MIXTILE_CUDA_FUNCS(X)                                                                                      \
  X(mxc_last_error) X(mxc_abi_version) X(mxc_has_cublas) X(mxc_device_count) X(mxc_versions)                      \
  X(mxc_device_info_get) X(mxc_set_device) X(mxc_stream_create) X(mxc_stream_destroy) X(mxc_stream_sync)         \
  X(mxc_stream_wait_event) X(mxc_event_create) X(mxc_event_destroy) X(mxc_event_record) X(mxc_event_sync)        \
  X(mxc_event_query) X(mxc_event_elapsed_ms) X(mxc_graph_begin) X(mxc_graph_end) X(mxc_graph_launch)       \
  X(mxc_graph_destroy) X(mxc_malloc) X(mxc_free) X(mxc_host_alloc) X(mxc_host_free)         \
  X(mxc_host_register) X(mxc_host_unregister) X(mxc_mem_info) X(mxc_mem_usage) X(mxc_memcpy_h2d) X(mxc_memcpy_d2h)                \
  X(mxc_memcpy_d2d) X(mxc_memset) X(mxc_rmsnorm) X(mxc_rope_neox) X(mxc_silu_mul) X(mxc_add) X(mxc_convert)      \
  X(mxc_router_topk) X(mxc_embed_gather) X(mxc_dequant_bf16) X(mxc_dtype_bytes) X(mxc_blas_create)               \
  X(mxc_blas_destroy) X(mxc_blas_set_stream) X(mxc_gemm_bf16) X(mxc_gemm_f32) X(mxc_gemv_quant) X(mxc_gemv_quant_multi) X(mxc_kv_store) X(mxc_attention_prefill)           \
  X(mxc_attention_decode_workspace_bytes) X(mxc_attention_decode)                                               \
  /* routed experts on the GPU (moe.cu) */ X(mxc_gather_rows_bf16) X(mxc_moe_combine) X(mxc_moe_route) X(mxc_add_when_ready)

struct CudaApi {
#define MIXTILE_CUDA_MEMBER(fn) decltype(&::fn) fn = nullptr;
  MIXTILE_CUDA_FUNCS(MIXTILE_CUDA_MEMBER)
#undef MIXTILE_CUDA_MEMBER
  std::string path;  // the library that was loaded
};

// The loaded library's table, or nullptr with *why set (not built, dlopen error, missing symbol, ABI
// mismatch). The first call decides; later calls return the same answer. `path_override` (or the
// environment variable MIXTILE_CUDA_LIB) replaces the default: libmixtile-cuda.so beside the addon.
const CudaApi* cuda_api(std::string* why, const char* path_override = nullptr);

}  // namespace mixtile
