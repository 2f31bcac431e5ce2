// Attention of libmixtile-cuda over a KV cache in VRAM (layout and contracts in mixtile-cuda.h):
// KV store, flash-style causal prefill on tensor cores (mma.sync, FlashAttention-2 scheme), and split-K decode.
#include <cfloat>

#include "common.cuh"

namespace mixtile::cuda {

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
// FlashAttention-2's scheme on mma.sync (m16n8k16, f32 accumulate). Block = 4 warps, BQ = 64 queries of
// one head; warp w owns rows [16w, 16w + 16) and keeps everything of them in registers across the key
// tiles: Q as A fragments, S = Q K^T, the online softmax state (m, l) and O. P goes from the S
// accumulators straight into A fragments (the m16n8 C layout is the m16k16 A layout), so shared memory
// holds only K and V: tiles of BK = 64 keys, two stages filled with cp.async while the previous tile is
// multiplied. Rows are padded by 8 elements (16 bytes) so ldmatrix reads are free of bank conflicts.
// Key positions at or past the block's last visible key are zero-filled (cache slots past the written
// length may hold anything, and 0 * NaN would poison O).
constexpr int PF_BQ = 64, PF_BK = 64, PF_THREADS = 128;

template <int D>
constexpr size_t prefill_smem_bytes() {
  return size_t(2 /* stages */ * 2 /* K, V */ * PF_BK * (D + 8)) * 2;
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

// 16 bytes global -> shared, asynchronous; zero-filled when !valid (src must still be a mapped address).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, register i holds matrix i
// (lane l: row l/4, columns 2(l%4), +1; transposed: rows 2(l%4), +1 of column l/4).
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// c[16x8] += a[16x16] b[16x8]. Lane l, g = l/4, t = l%4: a = {(g, 2t..), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)},
// b = {(k 2t.., n g), (k 2t+8.., n g)}, c = {(g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)}.
template <class T>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                        uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats rounded to T in one register, lo in the low half (the lower column of a fragment pair).
template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// (lo, hi) as hi + lo parts in T, each packed like pack2: x = T(x) + T(x - T(x)) to about 2^-16 relative.
template <class T>
__device__ __forceinline__ void split2(float lo, float hi, uint32_t& big, uint32_t& small) {
  big = pack2<T>(lo, hi);
  const T* b = reinterpret_cast<const T*>(&big);
  small = pack2<T>(lo - to_f32<T>(b[0]), hi - to_f32<T>(b[1]));
}

template <class T, int D>
__global__ void __launch_bounds__(PF_THREADS) attention_prefill_kernel(
    const T* __restrict__ kc, const T* __restrict__ vc, const float* __restrict__ q, float* __restrict__ out,
    int64_t tokens, int heads, int kv_heads, int64_t pos0, int64_t seq_base, float scale_log2) {
  constexpr int LD = D + 8;           // shared row stride, elements
  constexpr int TILE = PF_BK * LD;    // elements of one K (or V) stage
  constexpr int KQ = D / 16;          // k-steps of Q K^T
  constexpr int NS = PF_BK / 8;       // 8-key column tiles of S
  constexpr int NO = D / 8;           // 8-dim column tiles of O
  constexpr int CHUNKS = PF_BK * D / 8 / PF_THREADS;  // 16-byte copies per thread per tensor and tile
  extern __shared__ __align__(128) unsigned char smem[];
  T* Ks = reinterpret_cast<T*>(smem);  // [2][BK][LD]
  T* Vs = Ks + 2 * TILE;               // [2][BK][LD]

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tq = lane % 4;
  const int h = blockIdx.x;
  const int kvh = h / (heads / kv_heads);
  // Query tiles run last-first: the longest (most keys) start first, the short ones fill the tail.
  const int64_t t0 = int64_t(gridDim.y - 1 - blockIdx.y) * PF_BQ;
  const int64_t row_stride = int64_t(kv_heads) * D;  // elements between positions in the cache
  const T* kbase = kc + seq_base * row_stride + int64_t(kvh) * D;
  const T* vbase = vc + seq_base * row_stride + int64_t(kvh) * D;
  const int64_t t_last = (t0 + PF_BQ < tokens ? t0 + PF_BQ : tokens) - 1;
  const int64_t kv_end = pos0 + t_last + 1;  // keys [0, kv_end) are visible to some row of the tile
  const int n_tiles = int((kv_end + PF_BK - 1) / PF_BK);

  auto load_tile = [&](int j, int stage) {
    const int64_t kb = int64_t(j) * PF_BK;
#pragma unroll
    for (int i = 0; i < CHUNKS; ++i) {
      const int idx = tid + i * PF_THREADS, r = idx / (D / 8), c = (idx % (D / 8)) * 8;
      const bool ok = kb + r < kv_end;
      const int64_t off = (ok ? kb + r : 0) * row_stride + c;
      cp_async16(smem_addr(Ks + stage * TILE + r * LD + c), kbase + off, ok);
      cp_async16(smem_addr(Vs + stage * TILE + r * LD + c), vbase + off, ok);
    }
    cp_async_commit();
  };
  load_tile(0, 0);

  // This warp's rows: a = t0 + 16 warp + g and b = a + 8 (rows past `tokens` are zero and never stored).
  const int64_t ta = t0 + warp * 16 + g, tb = ta + 8;
  uint32_t qf[KQ][4];  // Q as A fragments, rounded to T like the tensor-core inputs
  {
    const float* qa = q + (ta * heads + h) * D;
    const float* qb = q + (tb * heads + h) * D;
    const bool va = ta < tokens, vb = tb < tokens;
#pragma unroll
    for (int kk = 0; kk < KQ; ++kk) {
      const int c = kk * 16 + tq * 2;
      qf[kk][0] = pack2<T>(va ? qa[c] : 0.f, va ? qa[c + 1] : 0.f);
      qf[kk][1] = pack2<T>(vb ? qb[c] : 0.f, vb ? qb[c + 1] : 0.f);
      qf[kk][2] = pack2<T>(va ? qa[c + 8] : 0.f, va ? qa[c + 9] : 0.f);
      qf[kk][3] = pack2<T>(vb ? qb[c + 8] : 0.f, vb ? qb[c + 9] : 0.f);
    }
  }

  float o[NO][4];
#pragma unroll
  for (int n = 0; n < NO; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY};  // running max of rows a, b (log2 domain)
  float l[2] = {0.f, 0.f};              // this lane's part of the running sums (its 2 columns of each tile)

  // ldmatrix row addresses. K (B of Q K^T, not transposed): matrix i = keys +8(i/2), dims +8(i%2), so the
  // registers are b0, b1 of key tile 2np and b0, b1 of key tile 2np+1. V (B of P V, transposed): matrix
  // i = keys +8(i%2), dims +8(i/2): b0, b1 of dim tile 2dn, then of 2dn+1.
  const int lr = lane % 8, lm = lane / 8;
  const uint32_t k_lane = smem_addr(Ks + ((lm / 2) * 8 + lr) * LD + (lm % 2) * 8);
  const uint32_t v_lane = smem_addr(Vs + ((lm % 2) * 8 + lr) * LD + (lm / 2) * 8);
  const int64_t q_first = pos0 + t0 + warp * 16;  // smallest position of the warp's rows

  for (int j = 0; j < n_tiles; ++j) {
    const int stage = j & 1;
    cp_async_wait_all();
    __syncthreads();  // tile j is visible to all; every warp is done with tile j - 1 (the other stage)
    if (j + 1 < n_tiles) load_tile(j + 1, stage ^ 1);
    const int64_t kb = int64_t(j) * PF_BK;
    if (kb > q_first + 15) continue;  // the whole tile is after every row of this warp (diagonal tile)

    float s[NS][4];
#pragma unroll
    for (int n = 0; n < NS; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
    const uint32_t ks = k_lane + uint32_t(stage * TILE * 2);
#pragma unroll
    for (int kk = 0; kk < KQ; ++kk) {
#pragma unroll
      for (int np = 0; np < NS / 2; ++np) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4(ks + uint32_t((np * 16 * LD + kk * 16) * 2), b0, b1, b2, b3);
        mma16816<T>(s[2 * np], qf[kk], b0, b1);
        mma16816<T>(s[2 * np + 1], qf[kk], b2, b3);
      }
    }

    // Scale to the log2 domain; keys after a row's position get -inf (only tiles reaching past the
    // warp's first row can hold such keys).
    const bool mask = kb + PF_BK - 1 > q_first;
    const int rel = mask ? int(kb - q_first) : 0;  // key - row offset of element (n, c) = rel + 8n + 2tq + (c&1) - g - 8(c>>1)
#pragma unroll
    for (int n = 0; n < NS; ++n)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float v = s[n][c] * scale_log2;
        if (mask && rel + n * 8 + tq * 2 + (c & 1) > g + (c >> 1) * 8) v = -INFINITY;
        s[n][c] = v;
      }

    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      mx[0] = fmaxf(mx[0], fmaxf(s[n][0], s[n][1]));
      mx[1] = fmaxf(mx[1], fmaxf(s[n][2], s[n][3]));
    }
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      base[r] = mx[r] == -INFINITY ? 0.f : mx[r];  // a row with no visible key yet: p = 0, not NaN
      const float alpha = exp2f(m[r] - base[r]);   // 0 while m = -inf
      m[r] = mx[r];
      l[r] *= alpha;
#pragma unroll
      for (int n = 0; n < NO; ++n) {
        o[n][2 * r] *= alpha;
        o[n][2 * r + 1] *= alpha;
      }
    }

    // P = 2^(S - m) as A fragments of P V: key tiles 2kk and 2kk+1 make the 16 keys of k-step kk.
    uint32_t pf[NS / 2][4];
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      const float p0 = exp2f(s[n][0] - base[0]), p1 = exp2f(s[n][1] - base[0]);
      const float p2 = exp2f(s[n][2] - base[1]), p3 = exp2f(s[n][3] - base[1]);
      l[0] += p0 + p1;
      l[1] += p2 + p3;
      pf[n / 2][(n % 2) * 2] = pack2<T>(p0, p1);
      pf[n / 2][(n % 2) * 2 + 1] = pack2<T>(p2, p3);
    }

    const uint32_t vs = v_lane + uint32_t(stage * TILE * 2);
#pragma unroll
    for (int kk = 0; kk < PF_BK / 16; ++kk) {
#pragma unroll
      for (int dn = 0; dn < D / 16; ++dn) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(vs + uint32_t((kk * 16 * LD + dn * 16) * 2), b0, b1, b2, b3);
        mma16816<T>(o[2 * dn], pf[kk], b0, b1);
        mma16816<T>(o[2 * dn + 1], pf[kk], b2, b3);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t t = r == 0 ? ta : tb;
    if (t >= tokens) continue;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
    float* dst = out + (t * heads + h) * D + tq * 2;
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      dst[n * 8] = o[n][2 * r] * inv;
      dst[n * 8 + 1] = o[n][2 * r + 1] * inv;
    }
  }
}

// ---- decode (split-K) ----
// Block = 4 warps for (sequence i, kv head, split): the G = heads/kv_heads query heads sharing the kv head
// against keys [split*chunk, min(len, (split+1)*chunk)), chunk a multiple of 64. The G heads are the
// rows of one m16n8k16 A operand (zero rows past G), so a decode multiplies on tensor cores like the
// prefill above (q and p as hi + lo pairs, about f32's precision at twice the products, which a decode
// has to spare) and is left with streaming K and V: each warp takes a quarter of the chunk in tiles of
// 16 keys, double-buffered in its own shared memory with cp.async (no block barriers in the loop), and
// keeps S, the online softmax and O in registers. The 4 warps' (m, l, O) are merged through shared
// memory into one partial per split; attention_decode_combine merges the splits.
// Dynamic shared memory: per warp [2 stages][K, V][16][D + 8] T; reused after the loop for the merge:
// O [4][16][D] f32, m and l [4][16] f32.
constexpr int DEC_WARPS = 4, DEC_THREADS = DEC_WARPS * 32, DEC_TILE = 16, DEC_MIN_CHUNK = 64, DEC_MAX_G = 16;

template <int D>
constexpr size_t decode_smem_bytes() {
  constexpr size_t tiles = size_t(DEC_WARPS) * 2 * 2 * DEC_TILE * (D + 8) * 2;
  constexpr size_t merge = size_t(DEC_WARPS) * 16 * (D + 2) * 4;
  return tiles > merge ? tiles : merge;
}

template <class T, int D>
__global__ void __launch_bounds__(DEC_THREADS, 3) attention_decode_kernel(
    const T* __restrict__ kc, const T* __restrict__ vc, int n_seq_cache, int64_t capacity,
    const int32_t* __restrict__ seq_ids, const int32_t* __restrict__ lens, const float* __restrict__ q, int heads,
    int kv_heads, int chunk, int n_split, float scale_log2, float* __restrict__ ws_acc, float* __restrict__ ws_ml) {
  constexpr int LD = D + 8, TILE = DEC_TILE * LD, KQ = D / 16, NO = D / 8;
  constexpr int CHUNKS = DEC_TILE * D / 8 / 32;  // 16-byte copies per lane per tensor and tile
  extern __shared__ __align__(128) unsigned char dsmem[];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tq = lane % 4;
  T* Ks = reinterpret_cast<T*>(dsmem) + warp * 4 * TILE;  // [2][16][LD]
  T* Vs = Ks + 2 * TILE;                                   // [2][16][LD]

  const int i = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
  const int G = heads / kv_heads;
  const int sid = seq_ids[i];
  int64_t len = lens[i];
  len = len < 0 ? 0 : (len > capacity ? capacity : len);
  if (sid < 0 || sid >= n_seq_cache) len = 0;
  const int sub = chunk / DEC_WARPS;  // keys per warp, a multiple of 16
  const int64_t w0 = int64_t(split) * chunk + int64_t(warp) * sub;
  const int n = int(len - w0 < sub ? (len - w0 > 0 ? len - w0 : 0) : sub);  // this warp's keys
  const int n_tiles = (n + DEC_TILE - 1) / DEC_TILE;
  const int64_t row_stride = int64_t(kv_heads) * D;
  const int64_t base = (int64_t(sid < 0 || sid >= n_seq_cache ? 0 : sid) * capacity + w0) * row_stride + int64_t(kvh) * D;
  const T* kbase = kc + (n > 0 ? base : 0);
  const T* vbase = vc + (n > 0 ? base : 0);

  auto load_tile = [&](int j, int stage) {
#pragma unroll
    for (int c8 = 0; c8 < CHUNKS; ++c8) {
      const int idx = lane + c8 * 32, r = idx / (D / 8), c = (idx % (D / 8)) * 8;
      const int key = j * DEC_TILE + r;
      const bool ok = key < n;
      const int64_t off = int64_t(ok ? key : 0) * row_stride + c;
      cp_async16(smem_addr(Ks + stage * TILE + r * LD + c), kbase + off, ok);
      cp_async16(smem_addr(Vs + stage * TILE + r * LD + c), vbase + off, ok);
    }
    cp_async_commit();
  };
  if (n_tiles > 0) load_tile(0, 0);

  // Rows g and g + 8 are query heads kvh*G + g and + 8 of sequence i (zero past G), as hi + lo parts.
  uint32_t qh[KQ][4], ql[KQ][4];
  {
    const bool va = g < G, vb = g + 8 < G;
    const float* qa = q + (int64_t(i) * heads + kvh * G + g) * D;
    const float* qb = qa + 8 * D;
#pragma unroll
    for (int kk = 0; kk < KQ; ++kk) {
      const int c = kk * 16 + tq * 2;
      split2<T>(va ? qa[c] : 0.f, va ? qa[c + 1] : 0.f, qh[kk][0], ql[kk][0]);
      split2<T>(vb ? qb[c] : 0.f, vb ? qb[c + 1] : 0.f, qh[kk][1], ql[kk][1]);
      split2<T>(va ? qa[c + 8] : 0.f, va ? qa[c + 9] : 0.f, qh[kk][2], ql[kk][2]);
      split2<T>(vb ? qb[c + 8] : 0.f, vb ? qb[c + 9] : 0.f, qh[kk][3], ql[kk][3]);
    }
  }
  float o[NO][4];
#pragma unroll
  for (int d = 0; d < NO; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  const int lr = lane % 8, lm = lane / 8;
  const uint32_t k_lane = smem_addr(Ks + ((lm / 2) * 8 + lr) * LD + (lm % 2) * 8);
  const uint32_t v_lane = smem_addr(Vs + ((lm % 2) * 8 + lr) * LD + (lm / 2) * 8);
  for (int j = 0; j < n_tiles; ++j) {
    const int stage = j & 1;
    cp_async_wait_all();
    __syncwarp();  // tile j is visible to the warp; every lane is done with tile j - 1 (the other stage)
    if (j + 1 < n_tiles) load_tile(j + 1, stage ^ 1);

    float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
    const uint32_t ks = k_lane + uint32_t(stage * TILE * 2);
#pragma unroll
    for (int kk = 0; kk < KQ; ++kk) {
      uint32_t b0, b1, b2, b3;
      ldsm_x4(ks + uint32_t(kk * 16 * 2), b0, b1, b2, b3);
      mma16816<T>(s[0], qh[kk], b0, b1);
      mma16816<T>(s[1], qh[kk], b2, b3);
      mma16816<T>(s[0], ql[kk], b0, b1);
      mma16816<T>(s[1], ql[kk], b2, b3);
    }
    const int left = n - j * DEC_TILE;  // keys of this tile that exist (the tile's tail is zero-filled)
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int t = 0; t < 2; ++t)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const float v = t * 8 + tq * 2 + (c & 1) < left ? s[t][c] * scale_log2 : -INFINITY;
        s[t][c] = v;
        mx[c >> 1] = fmaxf(mx[c >> 1], v);
      }
    float base[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      base[r] = mx[r] == -INFINITY ? 0.f : mx[r];
      const float alpha = exp2f(m[r] - base[r]);
      m[r] = mx[r];
      l[r] *= alpha;
#pragma unroll
      for (int d = 0; d < NO; ++d) {
        o[d][2 * r] *= alpha;
        o[d][2 * r + 1] *= alpha;
      }
    }
    uint32_t ph[4], pl[4];
#pragma unroll
    for (int t = 0; t < 2; ++t) {
      const float p0 = exp2f(s[t][0] - base[0]), p1 = exp2f(s[t][1] - base[0]);
      const float p2 = exp2f(s[t][2] - base[1]), p3 = exp2f(s[t][3] - base[1]);
      l[0] += p0 + p1;
      l[1] += p2 + p3;
      split2<T>(p0, p1, ph[t * 2], pl[t * 2]);
      split2<T>(p2, p3, ph[t * 2 + 1], pl[t * 2 + 1]);
    }
    const uint32_t vs = v_lane + uint32_t(stage * TILE * 2);
#pragma unroll
    for (int dn = 0; dn < D / 16; ++dn) {
      uint32_t b0, b1, b2, b3;
      ldsm_x4_t(vs + uint32_t(dn * 16 * 2), b0, b1, b2, b3);
      mma16816<T>(o[2 * dn], ph, b0, b1);
      mma16816<T>(o[2 * dn + 1], ph, b2, b3);
      mma16816<T>(o[2 * dn], pl, b0, b1);
      mma16816<T>(o[2 * dn + 1], pl, b2, b3);
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }

  // Merge the 4 warps' partials of each row (head) into the split's partial.
  __syncthreads();  // every warp is done with its tiles: the shared memory becomes the merge area
  float* mo = reinterpret_cast<float*>(dsmem);  // [4][16][D]
  float* mm = mo + DEC_WARPS * 16 * D;          // [4][16]
  float* ml = mm + DEC_WARPS * 16;              // [4][16]
#pragma unroll
  for (int d = 0; d < NO; ++d)
#pragma unroll
    for (int c = 0; c < 4; ++c) mo[(warp * 16 + g + (c >> 1) * 8) * D + d * 8 + tq * 2 + (c & 1)] = o[d][c];
  if (tq == 0) {
    mm[warp * 16 + g] = m[0];
    mm[warp * 16 + g + 8] = m[1];
    ml[warp * 16 + g] = l[0];
    ml[warp * 16 + g + 8] = l[1];
  }
  __syncthreads();
  for (int e = tid; e < G * D; e += DEC_THREADS) {
    const int r = e / D, d = e % D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < DEC_WARPS; ++w) M = fmaxf(M, mm[w * 16 + r]);
    float acc = 0.f, L = 0.f;
#pragma unroll
    for (int w = 0; w < DEC_WARPS; ++w) {
      const float mw = mm[w * 16 + r];
      const float wt = mw == -INFINITY ? 0.f : exp2f(mw - M);
      acc += mo[(w * 16 + r) * D + d] * wt;
      L += ml[w * 16 + r] * wt;
    }
    const int64_t hrow = int64_t(i) * heads + kvh * G + r;  // [n_seq][heads]
    ws_acc[(hrow * n_split + split) * D + d] = acc;
    if (d == 0) {
      ws_ml[(hrow * n_split + split) * 2] = M;  // -inf when the split has no keys
      ws_ml[(hrow * n_split + split) * 2 + 1] = L;
    }
  }
}

// Block of COMB_GROUPS x D threads per (sequence, head): out = sum_s acc_s 2^(m_s - M) / sum_s l_s 2^(m_s - M).
// The split weights go to shared memory first (w [n_split] f32, dynamic) so the final loop's loads
// are independent of each other and can all be in flight (a serial chain over 100+ splits was once the
// decode's bottleneck); thread group j sums splits j, j + COMB_GROUPS, ... of every dim, so 4 times as
// many loads are in flight as with one thread per dim, and the groups' sums meet in shared memory.
constexpr int COMB_GROUPS = 4;

template <int D>
__global__ void __launch_bounds__(D * COMB_GROUPS) attention_decode_combine(const float* __restrict__ ws_acc,
                                                                          const float* __restrict__ ws_ml, int n_split,
                                                                          float* __restrict__ out) {
  constexpr int NT = D * COMB_GROUPS, NW = NT / 32;
  extern __shared__ float w[];
  __shared__ float red[NW];
  __shared__ float part[COMB_GROUPS - 1][D];
  const int64_t hrow = blockIdx.x;
  const int tid = threadIdx.x, d = tid % D, grp = tid / D;
  const float* mlp = ws_ml + hrow * n_split * 2;
  float M = -INFINITY;
  for (int s = tid; s < n_split; s += NT) M = fmaxf(M, mlp[2 * s]);
  M = warp_max(M);
  if (tid % 32 == 0) red[tid / 32] = M;
  __syncthreads();
  M = red[0];
#pragma unroll
  for (int j = 1; j < NW; ++j) M = fmaxf(M, red[j]);
  __syncthreads();
  float L = 0.f;
  for (int s = tid; s < n_split; s += NT) {
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
  for (int j = 0; j < NW; ++j) L += red[j];
  float o = 0.f;
  if (M != -INFINITY) {
    const float* acc = ws_acc + hrow * n_split * D + d;
#pragma unroll 8
    for (int s = grp; s < n_split; s += COMB_GROUPS) o += acc[int64_t(s) * D] * w[s];
  }
  if (grp > 0) part[grp - 1][d] = o;
  __syncthreads();
  if (grp == 0) {
#pragma unroll
    for (int j = 0; j < COMB_GROUPS - 1; ++j) o += part[j][d];
    out[hrow * D + d] = L > 0.f ? o / L : 0.f;
  }
}

static int decode_chunk(int64_t n_seq, int kv_heads, int64_t max_len) {
  // Aim for one wave of resident blocks (3 per SM, 132 SMs on an H100); chunks a multiple of 64 keys (16 per warp
  // at least), which bounds the splits by max_len / 64 as the workspace assumes.
  int dev = 0, sms = 132;
  if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  cudaGetLastError();
  int64_t want_blocks = int64_t(sms) * 3;
  int64_t per = (max_len * n_seq * kv_heads + want_blocks - 1) / want_blocks;
  int64_t chunk = ((per + DEC_MIN_CHUNK - 1) / DEC_MIN_CHUNK) * DEC_MIN_CHUNK;
  return int(chunk < DEC_MIN_CHUNK ? DEC_MIN_CHUNK : chunk);
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
           "mxc_attention_prefill: raising the shared-memory limit (needs a device with >= 68 KiB per block)");
  // x = head (the heads of one kv head are neighbours, so their K/V tiles meet in L2), y = query tile.
  dim3 grid(unsigned(heads), unsigned((tokens + PF_BQ - 1) / PF_BQ));
  attention_prefill_kernel<T, D><<<grid, PF_THREADS, smem, st>>>(
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
  attention_decode_combine<D><<<unsigned(n_seq * heads), D * COMB_GROUPS, wbytes, st>>>(ws_acc, ws_ml, n_split, out);
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
  MXC_CHECK_ARG((tokens + PF_BQ - 1) / PF_BQ < 65536, "mxc_attention_prefill: %lld tokens in one call, over the %d supported",
                (long long)tokens, 65535 * PF_BQ);
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
