// Attention of libmixtile-cuda over a KV cache in VRAM (layout and contracts in mixtile-cuda.h):
// KV store, flash-style causal prefill on tensor cores (WMMA, online softmax), and split-K decode.
#include <mma.h>

#include <cfloat>

#include "common.cuh"

namespace mixtile::cuda {

using namespace nvcuda;

// ---- KV store: thread per element of [tokens][kv_heads][head_dim] ----
template <class T>
__global__ void kv_store_kernel(T* __restrict__ kc, T* __restrict__ vc, const float* __restrict__ k,
                                const float* __restrict__ v, const int32_t* __restrict__ pos, int64_t tokens,
                                int64_t row /* kv_heads * head_dim */, int64_t seq_base, int64_t capacity) {
  int64_t total = tokens * row;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t t = i / row, e = i % row;
    int64_t p = pos[t];
    if (p < 0 || p >= capacity) continue;  // out-of-range positions are dropped
    int64_t dst = (seq_base + p) * row + e;
    kc[dst] = from_f32<T>(k[i]);
    vc[dst] = from_f32<T>(v[i]);
  }
}

// ---- prefill ----
// Block = 4 warps, a tile of BQ = 64 queries of one head; loops over key tiles of BK = 64.
// Warp w owns query rows [16w, 16w + 16): it computes their scores S = Q K^T (WMMA), their online
// softmax, and O += P V for them, so only K/V tile loads need block-wide barriers.
// Shared memory (elements): Q [BQ][D+8] T, K [BK][D+8] T, V [BK][D+8] T, S [BQ][BK+4] f32,
// P [BQ][BK+8] T, O [BQ][D+4] f32, m/l [BQ] f32 (log2 domain).
constexpr int BQ = 64, BK = 64, PREFILL_THREADS = 128;

template <int D>
constexpr size_t prefill_smem_bytes() {
  return size_t(3 * 64 * (D + 8)) * 2 + size_t(BQ * (BK + 4)) * 4 + size_t(BQ * (BK + 8)) * 2 +
         size_t(BQ * (D + 4)) * 4 + 2 * BQ * 4;
}

template <class T>
__device__ __forceinline__ void load8(T* dst, const T* src) {  // 16 bytes
  *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
}

template <class T, int D>
__global__ void __launch_bounds__(PREFILL_THREADS) attention_prefill_kernel(
    const T* __restrict__ kc, const T* __restrict__ vc, const float* __restrict__ q, float* __restrict__ out,
    int64_t tokens, int heads, int kv_heads, int64_t pos0, int64_t seq_base, float scale_log2) {
  constexpr int LDQ = D + 8, LDS = BK + 4, LDP = BK + 8, LDO = D + 4;
  extern __shared__ __align__(128) unsigned char smem[];
  T* Qs = reinterpret_cast<T*>(smem);
  T* Ks = Qs + BQ * LDQ;
  T* Vs = Ks + BK * LDQ;
  float* S = reinterpret_cast<float*>(Vs + BK * LDQ);
  T* P = reinterpret_cast<T*>(S + BQ * LDS);
  float* O = reinterpret_cast<float*>(P + BQ * LDP);
  float* row_m = O + BQ * LDO;
  float* row_l = row_m + BQ;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int h = blockIdx.y;
  const int kvh = h / (heads / kv_heads);
  const int64_t t0 = int64_t(blockIdx.x) * BQ;
  const int64_t row_stride = int64_t(kv_heads) * D;  // elements between positions in the cache

  // Q tile: f32 -> T, zero rows past the end.
  for (int i = tid; i < BQ * D; i += PREFILL_THREADS) {
    int r = i / D, c = i % D;
    int64_t t = t0 + r;
    Qs[r * LDQ + c] = from_f32<T>(t < tokens ? q[(t * heads + h) * D + c] : 0.f);
  }
  for (int i = tid; i < BQ * LDO; i += PREFILL_THREADS) O[i] = 0.f;
  if (tid < BQ) {
    row_m[tid] = -INFINITY;
    row_l[tid] = 0.f;
  }
  const int64_t t_last = (t0 + BQ < tokens ? t0 + BQ : tokens) - 1;
  const int64_t kv_end = pos0 + t_last + 1;  // keys [0, kv_end) are visible to some row of the tile

  for (int64_t kb = 0; kb < kv_end; kb += BK) {
    __syncthreads();  // previous tile's K/V reads are done (and, first time, Q/O init is visible)
    for (int i = tid; i < BK * (D / 8); i += PREFILL_THREADS) {
      int r = i / (D / 8), c = (i % (D / 8)) * 8;
      int64_t p = kb + r;
      if (p < kv_end) {
        const int64_t off = (seq_base + p) * row_stride + int64_t(kvh) * D + c;
        load8(Ks + r * LDQ + c, kc + off);
        load8(Vs + r * LDQ + c, vc + off);
      } else {
        *reinterpret_cast<uint4*>(Ks + r * LDQ + c) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(Vs + r * LDQ + c) = make_uint4(0, 0, 0, 0);
      }
    }
    __syncthreads();

    // S rows of this warp = Q[16w..] K^T.
    {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
#pragma unroll
      for (int ct = 0; ct < BK / 16; ++ct) {
        wmma::fill_fragment(acc, 0.f);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          wmma::load_matrix_sync(a, Qs + (warp * 16) * LDQ + kk * 16, LDQ);
          wmma::load_matrix_sync(b, Ks + (ct * 16) * LDQ + kk * 16, LDQ);
          wmma::mma_sync(acc, a, b, acc);
        }
        wmma::store_matrix_sync(S + (warp * 16) * LDS + ct * 16, acc, LDS, wmma::mem_row_major);
      }
    }
    __syncwarp();

    // Online softmax of the warp's 16 rows; each lane takes 2 of the 64 columns.
    for (int rr = 0; rr < 16; ++rr) {
      const int r = warp * 16 + rr;
      const int64_t qpos = pos0 + t0 + r;  // rows past `tokens` are computed but never stored
      float s[2];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        int c = lane + 32 * j;
        int64_t kp = kb + c;
        s[j] = (kp <= qpos && kp < kv_end) ? S[r * LDS + c] * scale_log2 : -INFINITY;
      }
      float mx = warp_max(fmaxf(s[0], s[1]));
      const float m_old = row_m[r];
      const float m_new = fmaxf(m_old, mx);
      float p0 = 0.f, p1 = 0.f, alpha = 1.f;
      if (m_new != -INFINITY) {
        p0 = exp2f(s[0] - m_new);
        p1 = exp2f(s[1] - m_new);
        alpha = exp2f(m_old - m_new);  // 0 when m_old = -inf
      }
      P[r * LDP + lane] = from_f32<T>(p0);
      P[r * LDP + lane + 32] = from_f32<T>(p1);
      float sum = warp_sum(p0 + p1);
#pragma unroll
      for (int c = lane; c < D; c += 32) O[r * LDO + c] *= alpha;
      __syncwarp();
      if (lane == 0) {
        row_m[r] = m_new;
        row_l[r] = row_l[r] * alpha + sum;
      }
    }
    __syncwarp();

    // O rows of this warp += P V.
    {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
#pragma unroll
      for (int ct = 0; ct < D / 16; ++ct) {
        float* o = O + (warp * 16) * LDO + ct * 16;
        wmma::load_matrix_sync(acc, o, LDO, wmma::mem_row_major);
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
          wmma::load_matrix_sync(a, P + (warp * 16) * LDP + kk * 16, LDP);
          wmma::load_matrix_sync(b, Vs + (kk * 16) * LDQ + ct * 16, LDQ);
          wmma::mma_sync(acc, a, b, acc);
        }
        wmma::store_matrix_sync(o, acc, LDO, wmma::mem_row_major);
      }
    }
  }
  __syncthreads();
  for (int i = tid; i < BQ * D; i += PREFILL_THREADS) {
    int r = i / D, c = i % D;
    int64_t t = t0 + r;
    if (t < tokens) {
      float l = row_l[r];
      out[(t * heads + h) * D + c] = l > 0.f ? O[r * LDO + c] / l : 0.f;
    }
  }
}

// ---- decode (split-K) ----
// Block = 256 threads for (sequence i, kv head, split): the G = heads/kv_heads query heads sharing the
// kv head, keys [split*chunk, min(len, (split+1)*chunk)), chunk <= 128. Phase 0: the chunk's K and V
// rows go to shared memory, every thread issuing all its 16-byte loads before the first store (memory
// parallelism is what a decode needs); phase 1: scores, LANES = D/8 lanes per key; phase 2: per-head
// max and exp (warp per head); phase 3: warp per head accumulates P V, D/32 dims per lane. Partials
// (m, l, acc) go to the workspace; a second kernel combines them.
// Dynamic shared memory: K [128][D] T, V [128][D] T, q [16][D] f32, scores [16][128] f32.
constexpr int DEC_THREADS = 256, DEC_MAX_CHUNK = 128, DEC_MIN_CHUNK = 64, DEC_MAX_G = 16;

template <int D>
constexpr size_t decode_smem_bytes() {
  return size_t(2 * DEC_MAX_CHUNK * D) * 2 + size_t(DEC_MAX_G * D) * 4 + size_t(DEC_MAX_G * DEC_MAX_CHUNK) * 4 +
         DEC_MAX_G * 2 * 4;
}

template <class T, int D>
__global__ void __launch_bounds__(DEC_THREADS) attention_decode_kernel(
    const T* __restrict__ kc, const T* __restrict__ vc, int n_seq_cache, int64_t capacity,
    const int32_t* __restrict__ seq_ids, const int32_t* __restrict__ lens, const float* __restrict__ q, int heads,
    int kv_heads, int chunk, int n_split, float scale_log2, float* __restrict__ ws_acc, float* __restrict__ ws_ml) {
  constexpr int LANES = D / 8, KPW = 32 / LANES, DPL = D / 32;
  constexpr int LOADS = DEC_MAX_CHUNK * (D / 8) / DEC_THREADS;  // 16-byte loads per thread per tensor
  extern __shared__ __align__(16) unsigned char dsmem[];
  T* Ks = reinterpret_cast<T*>(dsmem);
  T* Vs = Ks + DEC_MAX_CHUNK * D;
  float* qs = reinterpret_cast<float*>(Vs + DEC_MAX_CHUNK * D);
  float* sc = qs + DEC_MAX_G * D;
  float* ml = sc + DEC_MAX_G * DEC_MAX_CHUNK;

  const int i = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
  const int G = heads / kv_heads;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int sid = seq_ids[i];
  int64_t len = lens[i];
  len = len < 0 ? 0 : (len > capacity ? capacity : len);
  if (sid < 0 || sid >= n_seq_cache) len = 0;
  const int64_t k0 = int64_t(split) * chunk;
  const int n = int(len - k0 < chunk ? (len - k0 > 0 ? len - k0 : 0) : chunk);
  const int64_t row_stride = int64_t(kv_heads) * D;
  const int64_t base = (int64_t(sid < 0 ? 0 : sid) * capacity + k0) * row_stride + int64_t(kvh) * D;

  // Phase 0: K, V chunk -> shared; q -> shared.
  {
    uint4 kr[LOADS], vr[LOADS];
#pragma unroll
    for (int j = 0; j < LOADS; ++j) {
      const int idx = tid + j * DEC_THREADS, r = idx / (D / 8), c = (idx % (D / 8)) * 8;
      if (r < n) {
        kr[j] = *reinterpret_cast<const uint4*>(kc + base + int64_t(r) * row_stride + c);
        vr[j] = *reinterpret_cast<const uint4*>(vc + base + int64_t(r) * row_stride + c);
      }
    }
#pragma unroll
    for (int j = 0; j < LOADS; ++j) {
      const int idx = tid + j * DEC_THREADS, r = idx / (D / 8), c = (idx % (D / 8)) * 8;
      if (r < n) {
        *reinterpret_cast<uint4*>(Ks + r * D + c) = kr[j];
        *reinterpret_cast<uint4*>(Vs + r * D + c) = vr[j];
      }
    }
  }
  for (int e = tid; e < G * D; e += DEC_THREADS) qs[e] = q[(int64_t(i) * heads + kvh * G) * D + e];
  __syncthreads();

  // Phase 1: scores (log2 domain). The loop bound is per warp (not per key) so every lane reaches the shuffles.
  {
    const int sub = lane / LANES, l8 = (lane % LANES) * 8;
    for (int kw = warp * KPW; kw < n; kw += (DEC_THREADS / 32) * KPW) {
      const int kk = kw + sub;
      const bool valid = kk < n;
      uint4 raw = valid ? *reinterpret_cast<const uint4*>(Ks + kk * D + l8) : make_uint4(0, 0, 0, 0);
      const T* kv = reinterpret_cast<const T*>(&raw);
      float kf[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) kf[j] = to_f32<T>(kv[j]);
      for (int g = 0; g < G; ++g) {
        const float4 qa = *reinterpret_cast<const float4*>(qs + g * D + l8);
        const float4 qb = *reinterpret_cast<const float4*>(qs + g * D + l8 + 4);
        float d = qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3] + qb.x * kf[4] + qb.y * kf[5] +
                  qb.z * kf[6] + qb.w * kf[7];
#pragma unroll
        for (int o = LANES / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        if (valid && lane % LANES == 0) sc[g * DEC_MAX_CHUNK + kk] = d * scale_log2;
      }
    }
  }
  __syncthreads();

  // Phase 2: per head max and exp2, in place.
  for (int g = warp; g < G; g += DEC_THREADS / 32) {
    float mx = -INFINITY;
    for (int kk = lane; kk < n; kk += 32) mx = fmaxf(mx, sc[g * DEC_MAX_CHUNK + kk]);
    mx = warp_max(mx);
    float sum = 0.f;
    for (int kk = lane; kk < n; kk += 32) {
      float p = exp2f(sc[g * DEC_MAX_CHUNK + kk] - mx);
      sc[g * DEC_MAX_CHUNK + kk] = p;
      sum += p;
    }
    sum = warp_sum(sum);
    if (lane == 0) {
      ml[2 * g] = mx;  // -inf when n == 0
      ml[2 * g + 1] = sum;
    }
  }
  __syncthreads();

  // Phase 3: warp per head, lane holds dims [lane*DPL, lane*DPL + DPL).
  for (int g = warp; g < G; g += DEC_THREADS / 32) {
    float acc[DPL];
#pragma unroll
    for (int j = 0; j < DPL; ++j) acc[j] = 0.f;
    const float* pg = sc + g * DEC_MAX_CHUNK;
#pragma unroll 4
    for (int kk = 0; kk < n; ++kk) {
      const T* vrow = Vs + kk * D + lane * DPL;
      float p = pg[kk];
      if constexpr (DPL == 4) {
        uint2 raw = *reinterpret_cast<const uint2*>(vrow);
        const T* vv = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[j] += p * to_f32<T>(vv[j]);
      } else {
        uint32_t raw = *reinterpret_cast<const uint32_t*>(vrow);
        const T* vv = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int j = 0; j < DPL; ++j) acc[j] += p * to_f32<T>(vv[j]);
      }
    }
    const int64_t hrow = int64_t(i) * heads + kvh * G + g;  // [n_seq][heads]
    float* dst = ws_acc + (hrow * n_split + split) * D + lane * DPL;
#pragma unroll
    for (int j = 0; j < DPL; ++j) dst[j] = acc[j];
    if (lane == 0) {
      ws_ml[(hrow * n_split + split) * 2] = ml[2 * g];
      ws_ml[(hrow * n_split + split) * 2 + 1] = ml[2 * g + 1];
    }
  }
}

// Block of D threads per (sequence, head): out = sum_s acc_s 2^(m_s - M) / sum_s l_s 2^(m_s - M).
// The split weights go to shared memory first (w [n_split] f32, dynamic) so the final loop's loads
// are independent of each other and can all be in flight: a serial chain over 100+ splits was the
// decode's bottleneck (26 us at context 4096).
template <int D>
__global__ void attention_decode_combine(const float* __restrict__ ws_acc, const float* __restrict__ ws_ml,
                                         int n_split, float* __restrict__ out) {
  extern __shared__ float w[];
  __shared__ float red[D / 32];
  const int64_t hrow = blockIdx.x;
  const int tid = threadIdx.x;
  const float* mlp = ws_ml + hrow * n_split * 2;
  float M = -INFINITY;
  for (int s = tid; s < n_split; s += D) M = fmaxf(M, mlp[2 * s]);
  M = warp_max(M);
  if (tid % 32 == 0) red[tid / 32] = M;
  __syncthreads();
  M = red[0];
#pragma unroll
  for (int j = 1; j < D / 32; ++j) M = fmaxf(M, red[j]);
  __syncthreads();
  float L = 0.f;
  for (int s = tid; s < n_split; s += D) {
    const float m = mlp[2 * s];
    const float ws = (m == -INFINITY) ? 0.f : exp2f(m - M);
    w[s] = ws;
    L += mlp[2 * s + 1] * ws;
  }
  L = warp_sum(L);
  if (tid % 32 == 0) red[tid / 32] = L;
  __syncthreads();
  L = 0.f;
#pragma unroll
  for (int j = 0; j < D / 32; ++j) L += red[j];
  float o = 0.f;
  if (M != -INFINITY) {
    const float* acc = ws_acc + hrow * n_split * D + tid;
#pragma unroll 8
    for (int s = 0; s < n_split; ++s) o += acc[int64_t(s) * D] * w[s];
  }
  out[hrow * D + tid] = L > 0.f ? o / L : 0.f;
}

static int decode_chunk(int64_t n_seq, int kv_heads, int64_t max_len) {
  // Aim for about 4 blocks per SM (132 SMs on an H100) in total; chunks of 64..128 keys.
  int dev = 0, sms = 132;
  if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  cudaGetLastError();
  int64_t want_blocks = int64_t(sms) * 4;
  int64_t per = (max_len * n_seq * kv_heads + want_blocks - 1) / want_blocks;
  int64_t chunk = ((per + DEC_MIN_CHUNK - 1) / DEC_MIN_CHUNK) * DEC_MIN_CHUNK;
  if (chunk < DEC_MIN_CHUNK) chunk = DEC_MIN_CHUNK;
  if (chunk > DEC_MAX_CHUNK) chunk = DEC_MAX_CHUNK;
  return int(chunk);
}

static mxc_status check_kv(const mxc_kv_layer* kv, const char* what) {
  MXC_CHECK_ARG(kv && kv->k && kv->v, "%s: null KV layer or cache pointer", what);
  MXC_CHECK_ARG(kv->type == MXC_F16 || kv->type == MXC_BF16, "%s: KV cache type %d must be F16 or BF16", what,
                int(kv->type));
  MXC_CHECK_ARG(kv->head_dim == 64 || kv->head_dim == 128, "%s: head_dim %d not supported (64 or 128)", what,
                kv->head_dim);
  MXC_CHECK_ARG(kv->kv_heads > 0 && kv->n_seq > 0 && kv->capacity > 0, "%s: bad KV shape n_seq=%d capacity=%lld kv_heads=%d",
                what, kv->n_seq, (long long)kv->capacity, kv->kv_heads);
  return MXC_OK;
}

template <class T, int D>
static mxc_status launch_prefill(const mxc_kv_layer* kv, int seq, const float* q, int64_t tokens, int heads,
                                 int64_t pos0, float scale, float* out, cudaStream_t st) {
  constexpr size_t smem = prefill_smem_bytes<D>();
  // Per device and cheap, so set on every call (the calling thread may have switched devices).
  MXC_CUDA(cudaFuncSetAttribute(attention_prefill_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
           "mxc_attention_prefill: raising the shared-memory limit (needs a device with >= 112 KiB per block)");
  dim3 grid(unsigned((tokens + BQ - 1) / BQ), unsigned(heads));
  attention_prefill_kernel<T, D><<<grid, PREFILL_THREADS, smem, st>>>(
      static_cast<const T*>(kv->k), static_cast<const T*>(kv->v), q, out, tokens, heads, kv->kv_heads, pos0,
      int64_t(seq) * kv->capacity, scale * 1.4426950408889634f);
  return check_launch("mxc_attention_prefill");
}

template <class T, int D>
static mxc_status launch_decode(const mxc_kv_layer* kv, const int32_t* seq_ids, const int32_t* lens, int64_t max_len,
                                const float* q, int64_t n_seq, int heads, float scale, float* out, void* ws,
                                cudaStream_t st) {
  int chunk = decode_chunk(n_seq, kv->kv_heads, max_len);
  int n_split = int((max_len + chunk - 1) / chunk);
  if (n_split < 1) n_split = 1;
  const size_t wbytes = size_t(n_split) * sizeof(float);
  if (wbytes > 48 * 1024) {
    return fail(MXC_ERR_INVALID_ARG, "mxc_attention_decode: max_len %lld needs %d splits, over the %d the combine supports",
                (long long)max_len, n_split, 48 * 1024 / 4);
  }
  float* ws_acc = static_cast<float*>(ws);
  float* ws_ml = ws_acc + n_seq * heads * int64_t(n_split) * D;
  constexpr size_t smem = decode_smem_bytes<D>();
  MXC_CUDA(cudaFuncSetAttribute(attention_decode_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)),
           "mxc_attention_decode: raising the shared-memory limit");
  dim3 grid(unsigned(n_seq), unsigned(kv->kv_heads), unsigned(n_split));
  attention_decode_kernel<T, D><<<grid, DEC_THREADS, smem, st>>>(
      static_cast<const T*>(kv->k), static_cast<const T*>(kv->v), kv->n_seq, kv->capacity, seq_ids, lens, q, heads,
      kv->kv_heads, chunk, n_split, scale * 1.4426950408889634f, ws_acc, ws_ml);
  mxc_status s = check_launch("mxc_attention_decode");
  if (s != MXC_OK) return s;
  attention_decode_combine<D><<<unsigned(n_seq * heads), D, wbytes, st>>>(ws_acc, ws_ml, n_split, out);
  return check_launch("mxc_attention_decode (combine)");
}

}  // namespace mixtile::cuda

using namespace mixtile::cuda;

extern "C" {

mxc_status mxc_kv_store(const mxc_kv_layer* kv, int seq, const float* k_new, const float* v_new, const int32_t* pos,
                        int64_t tokens, mxc_stream* s) {
  mxc_status st = check_kv(kv, "mxc_kv_store");
  if (st != MXC_OK) return st;
  MXC_CHECK_ARG(k_new && v_new && pos, "mxc_kv_store: null pointer");
  MXC_CHECK_ARG(seq >= 0 && seq < kv->n_seq, "mxc_kv_store: seq %d out of range [0, %d)", seq, kv->n_seq);
  MXC_CHECK_ARG(tokens >= 0, "mxc_kv_store: negative tokens");
  if (tokens == 0) return MXC_OK;
  int64_t row = int64_t(kv->kv_heads) * kv->head_dim;
  unsigned g = grid_1d(tokens * row, 256);
  if (kv->type == MXC_F16)
    kv_store_kernel<__half><<<g, 256, 0, stream_of(s)>>>((__half*)kv->k, (__half*)kv->v, k_new, v_new, pos, tokens,
                                                         row, int64_t(seq) * kv->capacity, kv->capacity);
  else
    kv_store_kernel<__nv_bfloat16><<<g, 256, 0, stream_of(s)>>>((__nv_bfloat16*)kv->k, (__nv_bfloat16*)kv->v, k_new,
                                                                v_new, pos, tokens, row, int64_t(seq) * kv->capacity,
                                                                kv->capacity);
  return check_launch("mxc_kv_store");
}

mxc_status mxc_attention_prefill(const mxc_kv_layer* kv, int seq, const float* q, int64_t tokens, int heads,
                                 int64_t pos0, float scale, float* out, mxc_stream* s) {
  mxc_status st = check_kv(kv, "mxc_attention_prefill");
  if (st != MXC_OK) return st;
  MXC_CHECK_ARG(q && out, "mxc_attention_prefill: null pointer");
  MXC_CHECK_ARG(seq >= 0 && seq < kv->n_seq, "mxc_attention_prefill: seq %d out of range [0, %d)", seq, kv->n_seq);
  MXC_CHECK_ARG(heads > 0 && heads % kv->kv_heads == 0, "mxc_attention_prefill: heads %d not a multiple of kv_heads %d",
                heads, kv->kv_heads);
  MXC_CHECK_ARG(tokens >= 0 && pos0 >= 0 && pos0 + tokens <= kv->capacity,
                "mxc_attention_prefill: positions [%lld, %lld) exceed the cache capacity %lld", (long long)pos0,
                (long long)(pos0 + tokens), (long long)kv->capacity);
  if (tokens == 0) return MXC_OK;
  cudaStream_t cs = stream_of(s);
  bool f16 = kv->type == MXC_F16;
  if (kv->head_dim == 128)
    return f16 ? launch_prefill<__half, 128>(kv, seq, q, tokens, heads, pos0, scale, out, cs)
               : launch_prefill<__nv_bfloat16, 128>(kv, seq, q, tokens, heads, pos0, scale, out, cs);
  return f16 ? launch_prefill<__half, 64>(kv, seq, q, tokens, heads, pos0, scale, out, cs)
             : launch_prefill<__nv_bfloat16, 64>(kv, seq, q, tokens, heads, pos0, scale, out, cs);
}

size_t mxc_attention_decode_workspace_bytes(int64_t n_seq, int heads, int head_dim, int64_t max_len) {
  if (n_seq <= 0 || heads <= 0 || head_dim <= 0 || max_len < 0) return 0;
  int64_t n_split = (max_len + DEC_MIN_CHUNK - 1) / DEC_MIN_CHUNK;
  if (n_split < 1) n_split = 1;
  return size_t(n_seq * heads * n_split) * size_t(head_dim + 2) * sizeof(float);
}

mxc_status mxc_attention_decode(const mxc_kv_layer* kv, const int32_t* seq_ids, const int32_t* lens, int64_t max_len,
                                const float* q, int64_t n_seq, int heads, float scale, float* out, void* workspace,
                                size_t workspace_bytes, mxc_stream* s) {
  mxc_status st = check_kv(kv, "mxc_attention_decode");
  if (st != MXC_OK) return st;
  MXC_CHECK_ARG(seq_ids && lens && q && out && workspace, "mxc_attention_decode: null pointer");
  MXC_CHECK_ARG(heads > 0 && heads % kv->kv_heads == 0 && heads / kv->kv_heads <= DEC_MAX_G,
                "mxc_attention_decode: heads %d must be a multiple of kv_heads %d, at most %d times it", heads,
                kv->kv_heads, DEC_MAX_G);
  MXC_CHECK_ARG(n_seq >= 0 && n_seq < 65536, "mxc_attention_decode: n_seq %lld out of range", (long long)n_seq);
  MXC_CHECK_ARG(max_len >= 0 && max_len <= kv->capacity, "mxc_attention_decode: max_len %lld exceeds capacity %lld",
                (long long)max_len, (long long)kv->capacity);
  size_t need = mxc_attention_decode_workspace_bytes(n_seq, heads, kv->head_dim, max_len);
  MXC_CHECK_ARG(workspace_bytes >= need, "mxc_attention_decode: workspace of %zu bytes, needs %zu", workspace_bytes,
                need);
  if (n_seq == 0) return MXC_OK;
  cudaStream_t cs = stream_of(s);
  bool f16 = kv->type == MXC_F16;
  if (kv->head_dim == 128)
    return f16 ? launch_decode<__half, 128>(kv, seq_ids, lens, max_len, q, n_seq, heads, scale, out, workspace, cs)
               : launch_decode<__nv_bfloat16, 128>(kv, seq_ids, lens, max_len, q, n_seq, heads, scale, out, workspace,
                                                   cs);
  return f16 ? launch_decode<__half, 64>(kv, seq_ids, lens, max_len, q, n_seq, heads, scale, out, workspace, cs)
             : launch_decode<__nv_bfloat16, 64>(kv, seq_ids, lens, max_len, q, n_seq, heads, scale, out, workspace, cs);
}

}  // extern "C"
