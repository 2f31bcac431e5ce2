// Dequantize-at-load of libmixtile-cuda: ggml Q8_0 / Q4_K / Q6_K blocks and F16/F32 to BF16, on the GPU.
// Block layouts as native/src/tensor.h (ggml-common.h); each element is computed in the same float
// order as ggml's dequantize_row_* so the BF16 result equals the CPU's rounded to BF16.
#include "common.cuh"

namespace mixtile::cuda {

constexpr int QK8_0 = 32, Q8_0_BYTES = 34;
constexpr int QK_K = 256, Q4_K_BYTES = 144, Q6_K_BYTES = 210;

__device__ __forceinline__ float half_at(const uint8_t* p) {
  return __half2float(__ushort_as_half(uint16_t(p[0]) | uint16_t(p[1]) << 8));
}

#define GRID_LOOP(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

__global__ void dequant_q8_0(const uint8_t* __restrict__ src, int64_t n, __nv_bfloat16* __restrict__ out) {
  GRID_LOOP(i, n) {
    const uint8_t* b = src + (i / QK8_0) * Q8_0_BYTES;
    out[i] = __float2bfloat16_rn(half_at(b) * float(int8_t(b[2 + i % QK8_0])));
  }
}

// x = d * sc * q - dmin * m, sub-block is = j / 32 of the 256; see get_scale_min_k4 in tensor.h.
__global__ void dequant_q4_k(const uint8_t* __restrict__ src, int64_t n, __nv_bfloat16* __restrict__ out) {
  GRID_LOOP(i, n) {
    const uint8_t* b = src + (i / QK_K) * Q4_K_BYTES;
    int j = int(i % QK_K);
    int chunk = j / 64, hi = (j % 64) / 32, l = j % 32;
    int is = 2 * chunk + hi;
    const uint8_t* sc = b + 4;
    const uint8_t* qs = b + 16;
    uint8_t s, m;
    if (is < 4) {
      s = sc[is] & 63;
      m = sc[is + 4] & 63;
    } else {
      s = (sc[is + 4] & 0xF) | ((sc[is - 4] >> 6) << 4);
      m = (sc[is + 4] >> 4) | ((sc[is] >> 6) << 4);
    }
    float d1 = half_at(b) * float(s);
    float m1 = half_at(b + 2) * float(m);
    int q = (qs[32 * chunk + l] >> (4 * hi)) & 0xF;
    out[i] = __float2bfloat16_rn(d1 * float(q) - m1);
  }
}

// ql[128] qh[64] scales[16] d: element 128*h + 32*qq + l takes the low (qq < 2) or high nibble of
// ql[64h + l + 32*(qq&1)], bits 2qq..2qq+1 of qh[32h + l], and scale 8h + l/16 + 2qq.
__global__ void dequant_q6_k(const uint8_t* __restrict__ src, int64_t n, __nv_bfloat16* __restrict__ out) {
  GRID_LOOP(i, n) {
    const uint8_t* b = src + (i / QK_K) * Q6_K_BYTES;
    int j = int(i % QK_K);
    int h = j / 128, r = j % 128, qq = r / 32, l = r % 32;
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    int lo = ql[64 * h + l + 32 * (qq & 1)];
    lo = qq < 2 ? (lo & 0xF) : (lo >> 4);
    int q = (lo | (((qh[32 * h + l] >> (2 * qq)) & 3) << 4)) - 32;
    float d = half_at(b + 208);
    out[i] = __float2bfloat16_rn(d * float(sc[8 * h + l / 16 + 2 * qq]) * float(q));
  }
}

template <class T>
__global__ void to_bf16(const T* __restrict__ src, int64_t n, __nv_bfloat16* __restrict__ out) {
  GRID_LOOP(i, n) out[i] = __float2bfloat16_rn(to_f32<T>(src[i]));
}

}  // namespace mixtile::cuda

using namespace mixtile::cuda;

extern "C" {

size_t mxc_dtype_bytes(mxc_dtype t, int64_t n) {
  if (n < 0) return 0;
  switch (t) {
    case MXC_F32: return size_t(n) * 4;
    case MXC_F16:
    case MXC_BF16: return size_t(n) * 2;
    case MXC_Q8_0: return n % QK8_0 ? 0 : size_t(n / QK8_0) * Q8_0_BYTES;
    case MXC_Q4_K: return n % QK_K ? 0 : size_t(n / QK_K) * Q4_K_BYTES;
    case MXC_Q6_K: return n % QK_K ? 0 : size_t(n / QK_K) * Q6_K_BYTES;
  }
  return 0;
}

mxc_status mxc_dequant_bf16(const void* src, mxc_dtype t, int64_t n, uint16_t* out, mxc_stream* s) {
  MXC_CHECK_ARG(src && out, "mxc_dequant_bf16: null pointer");
  MXC_CHECK_ARG(n >= 0, "mxc_dequant_bf16: negative n");
  if (n == 0) return MXC_OK;
  MXC_CHECK_ARG(mxc_dtype_bytes(t, n) != 0,
                "mxc_dequant_bf16: %lld elements are not whole blocks of type %d (or the type is not "
                "F32, F16, BF16, Q8_0, Q4_K, Q6_K)",
                (long long)n, int(t));
  cudaStream_t st = stream_of(s);
  unsigned g = grid_1d(n, 256);
  auto* o = reinterpret_cast<__nv_bfloat16*>(out);
  switch (t) {
    case MXC_Q8_0: dequant_q8_0<<<g, 256, 0, st>>>((const uint8_t*)src, n, o); break;
    case MXC_Q4_K: dequant_q4_k<<<g, 256, 0, st>>>((const uint8_t*)src, n, o); break;
    case MXC_Q6_K: dequant_q6_k<<<g, 256, 0, st>>>((const uint8_t*)src, n, o); break;
    case MXC_F16: to_bf16<__half><<<g, 256, 0, st>>>((const __half*)src, n, o); break;
    case MXC_F32: to_bf16<float><<<g, 256, 0, st>>>((const float*)src, n, o); break;
    case MXC_BF16:
      MXC_CUDA(cudaMemcpyAsync(out, src, size_t(n) * 2, cudaMemcpyDeviceToDevice, st), "mxc_dequant_bf16");
      return MXC_OK;
  }
  return check_launch("mxc_dequant_bf16");
}

}  // extern "C"
