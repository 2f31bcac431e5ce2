// AVX-512 attention: one task per (token, KV head) serves the whole GQA group of query heads,
// so each K/V row is loaded and widened once per group (or per part of it, see group_parts). Positions go in blocks of 16 with an
// online softmax (running max m, sum l, accumulator rescaled when the max grows).
#include <immintrin.h>

#include <cmath>

#include "cpu/attention/attention.h"
#include "threadpool.h"

namespace mixtile {

namespace {

constexpr int BLOCK = 16;     // positions per softmax block
constexpr int MAX_CHUNKS = 16;  // head_dim <= 256
constexpr int MAX_GROUP = 16;   // query heads per KV head

template <KvType T>
inline __m512 load16(const uint8_t* base, int64_t i) {
  if constexpr (T == KvType::f32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(base) + i);
  } else if constexpr (T == KvType::f16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const uint16_t*>(base) + i)));
  } else {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const uint16_t*>(base) + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// Query heads of a GQA group split into this many parts (each a task that loads the group's K/V
// rows itself) until the tasks reach half the pool: a decode token has 4 KV heads for 16 threads.
// Test machine, 48-layer tg128 at 16 threads (bench/RESULTS.md): 2 parts took the attention over
// the cache from ~1.4 to 0.8-1.0 ms per token; a full pool (4 parts) was not measured. Each head's
// arithmetic is the same whatever the split.
int group_parts(const AttentionArgs& a, int group) {
  const int64_t pairs = a.n * a.n_kv_heads, want = pool_threads() / 2;
  int parts = 1;
  while (pairs * parts * 2 <= want && group % (parts * 2) == 0) parts *= 2;
  return parts;
}

template <KvType T>
void run(const AttentionArgs& a) {
  const int d = a.head_dim;
  const int nc = d / 16;
  const int parts = group_parts(a, a.n_heads / a.n_kv_heads);
  const int group = a.n_heads / a.n_kv_heads / parts;  // query heads per task
  attention_for(a, a.n * a.n_kv_heads * parts, [&](int64_t task, int) {
    const int64_t i = task / (int64_t(a.n_kv_heads) * parts);
    const int kvh = int(task / parts % a.n_kv_heads);
    const int h0 = kvh * group * parts + int(task % parts) * group;
    const float* q = a.q + (i * a.n_heads + h0) * d;  // the group's heads are contiguous
    const int64_t n_ctx = int64_t(a.pos[i]) + 1;
    const int64_t base = int64_t(a.seq[i]) * a.seq_stride + int64_t(kvh) * d;

    alignas(64) float acc[MAX_GROUP][MAX_CHUNKS * 16];
    alignas(64) float s[MAX_GROUP][BLOCK];
    float m[MAX_GROUP], l[MAX_GROUP];
    for (int g = 0; g < group; ++g) {
      m[g] = -INFINITY;
      l[g] = 0;
      for (int c = 0; c < nc; ++c) _mm512_store_ps(&acc[g][c * 16], _mm512_setzero_ps());
    }
    __m512 row[MAX_CHUNKS];
    for (int64_t t0 = 0; t0 < n_ctx; t0 += BLOCK) {
      const int bt = int(std::min<int64_t>(BLOCK, n_ctx - t0));
      // Scores s[g][t] = q_g . k_t * scale.
      for (int t = 0; t < bt; ++t) {
        const int64_t r = base + (t0 + t) * a.pos_stride;
        for (int c = 0; c < nc; ++c) row[c] = load16<T>(a.k, r + c * 16);
        for (int g = 0; g < group; ++g) {
          const float* qg = q + g * d;
          __m512 sum = _mm512_mul_ps(_mm512_loadu_ps(qg), row[0]);
          for (int c = 1; c < nc; ++c) sum = _mm512_fmadd_ps(_mm512_loadu_ps(qg + c * 16), row[c], sum);
          s[g][t] = _mm512_reduce_add_ps(sum) * a.scale;
        }
      }
      // Online softmax update: p = exp(s - m_new), earlier terms scaled by exp(m_old - m_new).
      for (int g = 0; g < group; ++g) {
        float bm = s[g][0];
        for (int t = 1; t < bt; ++t) bm = std::max(bm, s[g][t]);
        if (bm > m[g]) {
          const float corr = std::exp(m[g] - bm);  // 0 on the first block (m = -inf)
          l[g] *= corr;
          const __m512 vc = _mm512_set1_ps(corr);
          for (int c = 0; c < nc; ++c) _mm512_store_ps(&acc[g][c * 16], _mm512_mul_ps(_mm512_load_ps(&acc[g][c * 16]), vc));
          m[g] = bm;
        }
        for (int t = 0; t < bt; ++t) {
          s[g][t] = std::exp(s[g][t] - m[g]);
          l[g] += s[g][t];
        }
      }
      // acc_g += sum_t p[g][t] * v_t.
      for (int t = 0; t < bt; ++t) {
        const int64_t r = base + (t0 + t) * a.pos_stride;
        for (int c = 0; c < nc; ++c) row[c] = load16<T>(a.v, r + c * 16);
        for (int g = 0; g < group; ++g) {
          const __m512 p = _mm512_set1_ps(s[g][t]);
          for (int c = 0; c < nc; ++c) {
            _mm512_store_ps(&acc[g][c * 16], _mm512_fmadd_ps(p, row[c], _mm512_load_ps(&acc[g][c * 16])));
          }
        }
      }
    }
    for (int g = 0; g < group; ++g) {
      float* out = a.out + (i * a.n_heads + h0 + g) * d;
      const __m512 inv = _mm512_set1_ps(1.0f / l[g]);
      for (int c = 0; c < nc; ++c) _mm512_storeu_ps(out + c * 16, _mm512_mul_ps(_mm512_load_ps(&acc[g][c * 16]), inv));
    }
  });
}

}  // namespace

bool attention_avx512_accepts(const AttentionArgs& a) {
  return a.head_dim % 16 == 0 && a.head_dim <= MAX_CHUNKS * 16 && a.n_heads / a.n_kv_heads <= MAX_GROUP;
}

void attention_avx512(const AttentionArgs& a) {
  switch (a.kv_type) {
    case KvType::f32: run<KvType::f32>(a); break;
    case KvType::f16: run<KvType::f16>(a); break;
    case KvType::bf16: run<KvType::bf16>(a); break;
  }
}

}  // namespace mixtile
