// Dequantize-at-load of libmixtile-cuda: ggml Q8_0 / Q4_K / Q5_K / Q6_K blocks and F16/F32 to BF16, on the GPU.
// Block layouts as native/src/tensor.h (ggml-common.h); each element is computed in the same float
// order as ggml's dequantize_row_* so the BF16 result equals the CPU's rounded to BF16.
#include "common.cuh"
#include "ggml-blocks.cuh"

namespace mixtile::cuda {

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
    float d1, m1;
    scale_min_k4(sc, is, half_at(b), half_at(b + 2), &d1, &m1);
    int q = (qs[32 * chunk + l] >> (4 * hi)) & 0xF;
    out[i] = __float2bfloat16_rn(d1 * float(q) - m1);
  }
}

// Q5_K: as Q4_K plus a 5th bit, bit (2 * chunk + hi) of qh[l] (d, dmin, scales[12], qh[32], qs[128]).
__global__ void dequant_q5_k(const uint8_t* __restrict__ src, int64_t n, __nv_bfloat16* __restrict__ out) {
  GRID_LOOP(i, n) {
    const uint8_t* b = src + (i / QK_K) * Q5_K_BYTES;
    int j = int(i % QK_K);
    int chunk = j / 64, hi = (j % 64) / 32, l = j % 32;
    int is = 2 * chunk + hi;
    const uint8_t* sc = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + 48;
    float d1, m1;
    scale_min_k4(sc, is, half_at(b), half_at(b + 2), &d1, &m1);
    int q = ((qs[32 * chunk + l] >> (4 * hi)) & 0xF) + (((qh[l] >> is) & 1) << 4);
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

// Vectorised Q4_K: thread per (super-block, 64-element chunk c, 4-byte group g): 4 bytes of qs give
// elements 64c + 4g + [0,4) (low nibbles) and 64c + 32 + 4g + [0,4) (high nibbles), stored 8 bytes at a time.
__device__ __forceinline__ void store4_bf16(__nv_bfloat16* dst, float a, float b, float c, float d) {
  __nv_bfloat162 lo = __floats2bfloat162_rn(a, b), hi = __floats2bfloat162_rn(c, d);
  uint2 v;
  v.x = *reinterpret_cast<uint32_t*>(&lo);
  v.y = *reinterpret_cast<uint32_t*>(&hi);
  *reinterpret_cast<uint2*>(dst) = v;
}

__global__ void dequant_q4_k_x8(const uint8_t* __restrict__ src, int64_t nsb, __nv_bfloat16* __restrict__ out) {
  GRID_LOOP(t, nsb * 32) {
    const int64_t sb = t / 32;
    const int c = int(t % 32) / 8, g = int(t % 8);
    const uint8_t* b = src + sb * Q4_K_BYTES;
    const uint8_t* sc = b + 4;
    const float d = half_at(b), dmin = half_at(b + 2);
    float dd[2], mm[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int is = 2 * c + h;
      scale_min_k4(sc, is, d, dmin, &dd[h], &mm[h]);
    }
    const uint8_t* q = b + 16 + 32 * c + 4 * g;
    const uint8_t q0 = q[0], q1 = q[1], q2 = q[2], q3 = q[3];
    __nv_bfloat16* y = out + sb * QK_K + 64 * c + 4 * g;
    store4_bf16(y, dd[0] * float(q0 & 0xF) - mm[0], dd[0] * float(q1 & 0xF) - mm[0], dd[0] * float(q2 & 0xF) - mm[0],
                dd[0] * float(q3 & 0xF) - mm[0]);
    store4_bf16(y + 32, dd[1] * float(q0 >> 4) - mm[1], dd[1] * float(q1 >> 4) - mm[1], dd[1] * float(q2 >> 4) - mm[1],
                dd[1] * float(q3 >> 4) - mm[1]);
  }
}

// Vectorised Q6_K: thread per (super-block, half h, 4-element group g of l): elements 128h + 32qq + 4g + [0,4)
// for qq = 0..3 (see dequant_q6_k for the bit layout).
__global__ void dequant_q6_k_x16(const uint8_t* __restrict__ src, int64_t nsb, __nv_bfloat16* __restrict__ out) {
  GRID_LOOP(t, nsb * 16) {
    const int64_t sb = t / 16;
    const int h = int(t % 16) / 8, g = int(t % 8);
    const uint8_t* b = src + sb * Q6_K_BYTES;
    const uint8_t* ql = b + 64 * h + 4 * g;
    const uint8_t* qh = b + 128 + 32 * h + 4 * g;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * h + (4 * g) / 16;
    const float d = half_at(b + 208);
    __nv_bfloat16* y = out + sb * QK_K + 128 * h + 4 * g;
#pragma unroll
    for (int qq = 0; qq < 4; ++qq) {
      const float ds = d * float(sc[2 * qq]);
      float v[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int lo = ql[e + 32 * (qq & 1)];
        lo = qq < 2 ? (lo & 0xF) : (lo >> 4);
        v[e] = ds * float((lo | (((qh[e] >> (2 * qq)) & 3) << 4)) - 32);
      }
      store4_bf16(y + 32 * qq, v[0], v[1], v[2], v[3]);
    }
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
    case MXC_Q5_K: return n % QK_K ? 0 : size_t(n / QK_K) * Q5_K_BYTES;
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
                "F32, F16, BF16, Q8_0, Q4_K, Q5_K, Q6_K)",
                (long long)n, int(t));
  cudaStream_t st = stream_of(s);
  unsigned g = grid_1d(n, 256);
  auto* o = reinterpret_cast<__nv_bfloat16*>(out);
  switch (t) {
    case MXC_Q8_0: dequant_q8_0<<<g, 256, 0, st>>>((const uint8_t*)src, n, o); break;
    // The vectorised kernels store 8 bytes at a time: they need `out` 8-byte aligned.
    case MXC_Q4_K:
      if (reinterpret_cast<uintptr_t>(out) % 8 == 0)
        dequant_q4_k_x8<<<grid_1d(n / 8, 256), 256, 0, st>>>((const uint8_t*)src, n / QK_K, o);
      else
        dequant_q4_k<<<g, 256, 0, st>>>((const uint8_t*)src, n, o);
      break;
    case MXC_Q5_K: dequant_q5_k<<<g, 256, 0, st>>>((const uint8_t*)src, n, o); break;
    case MXC_Q6_K:
      if (reinterpret_cast<uintptr_t>(out) % 8 == 0)
        dequant_q6_k_x16<<<grid_1d(n / 16, 256), 256, 0, st>>>((const uint8_t*)src, n / QK_K, o);
      else
        dequant_q6_k<<<g, 256, 0, st>>>((const uint8_t*)src, n, o);
      break;
    case MXC_F16: to_bf16<__half><<<g, 256, 0, st>>>((const __half*)src, n, o); break;
    case MXC_F32: to_bf16<float><<<g, 256, 0, st>>>((const float*)src, n, o); break;
    case MXC_BF16:
      MXC_CUDA(cudaMemcpyAsync(out, src, size_t(n) * 2, cudaMemcpyDeviceToDevice, st), "mxc_dequant_bf16");
      return MXC_OK;
  }
  return check_launch("mxc_dequant_bf16");
}

}  // extern "C"
