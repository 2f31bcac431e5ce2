// Attention of libmixtile-cuda-host over a KV cache in "device" memory (layout and contracts in
// mixtile-cuda.h): KV store, causal prefill and decode, with the GPU kernels' roundings: prefill
// multiplies on tensor cores, so q and the softmax numerators p are rounded to the cache type there
// (the denominator sums p unrounded); decode keeps q and p in f32. Keys and values are widened to f32
// once per (call, sequence, kv head) and shared by the query heads of the group.
#include <cmath>
#include <vector>

#include "host-common.h"

using namespace mixtile::cuda_host;

namespace {

constexpr int DEC_MAX_G = 16;                 // query heads per kv head the decode kernel supports
constexpr int64_t DEC_MIN_CHUNK = 64;         // keys per split, least: sizes the workspace
constexpr int64_t DEC_MAX_LEN = 12288 * 64;   // the combine's split limit at the least chunk
constexpr float LOG2E = 1.4426950408889634f;

mxc_status check_kv(const mxc_kv_layer* kv, const char* what) {
  MXH_CHECK_ARG(kv && kv->k && kv->v, "%s: null KV layer or cache pointer", what);
  MXH_CHECK_ARG(kv->type == MXC_F16 || kv->type == MXC_BF16, "%s: KV cache type %d must be F16 or BF16", what,
                int(kv->type));
  MXH_CHECK_ARG(kv->head_dim == 64 || kv->head_dim == 128, "%s: head_dim %d not supported (64 or 128)", what,
                kv->head_dim);
  MXH_CHECK_ARG(kv->kv_heads > 0 && kv->n_seq > 0 && kv->capacity > 0,
                "%s: bad KV shape n_seq=%d capacity=%lld kv_heads=%d", what, kv->n_seq, (long long)kv->capacity,
                kv->kv_heads);
  const size_t bytes = size_t(kv->n_seq) * size_t(kv->capacity) * size_t(kv->kv_heads) * size_t(kv->head_dim) * 2;
  MXH_TRY(check_device_range(kv->k, bytes, what, "kv->k"));
  MXH_TRY(check_device_range(kv->v, bytes, what, "kv->v"));
  return MXC_OK;
}

float dot(const float* a, const float* b, int n) {
  float acc[8] = {};
  for (int i = 0; i < n; i += 8)  // n is 64 or 128
    for (int u = 0; u < 8; ++u) acc[u] += a[i + u] * b[i + u];
  float s = 0.f;
  for (float v : acc) s += v;
  return s;
}

// K or V rows [0, n) of sequence `seq`, kv head `kvh`, widened to f32 [n][D].
template <class T>
void widen(const mxc_kv_layer& kv, const void* cache, int seq, int kvh, int64_t n, std::vector<float>& out) {
  const int D = kv.head_dim;
  const int64_t row = int64_t(kv.kv_heads) * D;
  const T* base = static_cast<const T*>(cache) + int64_t(seq) * kv.capacity * row + int64_t(kvh) * D;
  out.resize(size_t(n * D));
  for (int64_t p = 0; p < n; ++p)
    for (int i = 0; i < D; ++i) out[size_t(p * D + i)] = to_f32(base[p * row + i]);
}

template <class T>
void kv_store(const mxc_kv_layer kv, int seq, const float* k, const float* v, const int32_t* pos, int64_t tokens) {
  const int64_t row = int64_t(kv.kv_heads) * kv.head_dim;
  T* kc = static_cast<T*>(kv.k);
  T* vc = static_cast<T*>(kv.v);
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t p = pos[t];
    if (p < 0 || p >= kv.capacity) continue;  // out-of-range positions are dropped, as on the GPU
    const int64_t dst = (int64_t(seq) * kv.capacity + p) * row;
    for (int64_t e = 0; e < row; ++e) {
      kc[dst + e] = from_f32<T>(k[t * row + e]);
      vc[dst + e] = from_f32<T>(v[t * row + e]);
    }
  }
}

// One query row q[D] over keys [0, n): out[D] = softmax(q K^T * scale) V. `round` rounds q and p to
// the cache type (prefill's tensor cores) or not (decode).
template <class T>
void attend(const float* q, const std::vector<float>& K, const std::vector<float>& V, int64_t n, int D, float scale,
            bool round, std::vector<float>& s, float* out) {
  std::vector<float> qr(q, q + D);
  if (round)
    for (float& x : qr) x = to_f32(from_f32<T>(x));
  s.resize(size_t(n));
  float mx = -INFINITY;
  for (int64_t p = 0; p < n; ++p) mx = std::fmax(mx, s[size_t(p)] = dot(qr.data(), &K[size_t(p * D)], D) * scale * LOG2E);
  std::vector<float> o(size_t(D), 0.f);
  double l = 0;
  for (int64_t p = 0; p < n; ++p) {
    const float e = std::exp2(s[size_t(p)] - mx);
    l += e;
    const float pv = round ? to_f32(from_f32<T>(e)) : e;
    const float* vr = &V[size_t(p * D)];
    for (int i = 0; i < D; ++i) o[size_t(i)] += pv * vr[i];
  }
  for (int i = 0; i < D; ++i) out[i] = l > 0 ? float(o[size_t(i)] / l) : 0.f;
}

template <class T>
void prefill(const mxc_kv_layer kv, int seq, const float* q, int64_t tokens, int heads, int64_t pos0, float scale,
             float* out) {
  const int D = kv.head_dim, G = heads / kv.kv_heads;
  const int64_t n_all = pos0 + tokens;
  std::vector<float> K, V, s;
  for (int kvh = 0; kvh < kv.kv_heads; ++kvh) {
    widen<T>(kv, kv.k, seq, kvh, n_all, K);
    widen<T>(kv, kv.v, seq, kvh, n_all, V);
    for (int g = 0; g < G; ++g) {
      const int h = kvh * G + g;
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t off = (t * heads + h) * D;
        attend<T>(q + off, K, V, pos0 + t + 1, D, scale, true, s, out + off);
      }
    }
  }
}

template <class T>
void decode(const mxc_kv_layer kv, const int32_t* seq_ids, const int32_t* lens, int64_t max_len, const float* q,
            int64_t n_seq, int heads, float scale, float* out) {
  const int D = kv.head_dim, G = heads / kv.kv_heads;
  std::vector<float> K, V, s;
  for (int64_t i = 0; i < n_seq; ++i) {
    const int sid = seq_ids[i];
    int64_t len = lens[i];
    len = len < 0 ? 0 : len > kv.capacity ? kv.capacity : len;
    if (len > max_len) len = max_len;  // the contract: max_len bounds every lens[i]
    if (sid < 0 || sid >= kv.n_seq) len = 0;
    for (int kvh = 0; kvh < kv.kv_heads; ++kvh) {
      widen<T>(kv, kv.k, sid < 0 || sid >= kv.n_seq ? 0 : sid, kvh, len, K);
      widen<T>(kv, kv.v, sid < 0 || sid >= kv.n_seq ? 0 : sid, kvh, len, V);
      for (int g = 0; g < G; ++g) {
        const int64_t off = (i * heads + kvh * G + g) * D;
        attend<T>(q + off, K, V, len, D, scale, false, s, out + off);
      }
    }
  }
}

}  // namespace

extern "C" {

mxc_status mxc_kv_store(const mxc_kv_layer* kv, int seq, const float* k_new, const float* v_new, const int32_t* pos,
                        int64_t tokens, mxc_stream* s) {
  MXH_TRY(check_kv(kv, "mxc_kv_store"));
  MXH_CHECK_ARG(k_new && v_new && pos, "mxc_kv_store: null pointer");
  MXH_CHECK_ARG(seq >= 0 && seq < kv->n_seq, "mxc_kv_store: seq %d out of range [0, %d)", seq, kv->n_seq);
  MXH_CHECK_ARG(tokens >= 0, "mxc_kv_store: negative tokens");
  if (tokens == 0) return MXC_OK;
  const size_t rows_bytes = size_t(tokens) * kv->kv_heads * kv->head_dim * 4;
  MXH_DEV(k_new, rows_bytes, "mxc_kv_store");
  MXH_DEV(v_new, rows_bytes, "mxc_kv_store");
  MXH_DEV(pos, size_t(tokens) * 4, "mxc_kv_store");
  const mxc_kv_layer l = *kv;  // the struct is the caller's; its values are baked in, as kernel arguments are
  if (l.type == MXC_F16) return submit(s, [=] { kv_store<F16>(l, seq, k_new, v_new, pos, tokens); });
  return submit(s, [=] { kv_store<BF16>(l, seq, k_new, v_new, pos, tokens); });
}

mxc_status mxc_attention_prefill(const mxc_kv_layer* kv, int seq, const float* q, int64_t tokens, int heads,
                                 int64_t pos0, float scale, float* out, mxc_stream* s) {
  MXH_TRY(check_kv(kv, "mxc_attention_prefill"));
  MXH_CHECK_ARG(q && out, "mxc_attention_prefill: null pointer");
  MXH_CHECK_ARG(seq >= 0 && seq < kv->n_seq, "mxc_attention_prefill: seq %d out of range [0, %d)", seq, kv->n_seq);
  MXH_CHECK_ARG(heads > 0 && heads % kv->kv_heads == 0, "mxc_attention_prefill: heads %d not a multiple of kv_heads %d",
                heads, kv->kv_heads);
  MXH_CHECK_ARG(tokens >= 0 && pos0 >= 0 && pos0 + tokens <= kv->capacity,
                "mxc_attention_prefill: positions [%lld, %lld) exceed the cache capacity %lld", (long long)pos0,
                (long long)(pos0 + tokens), (long long)kv->capacity);
  if (tokens == 0) return MXC_OK;
  const size_t qbytes = size_t(tokens) * heads * kv->head_dim * 4;
  MXH_DEV(q, qbytes, "mxc_attention_prefill");
  MXH_DEV(out, qbytes, "mxc_attention_prefill");
  const mxc_kv_layer l = *kv;
  if (l.type == MXC_F16) return submit(s, [=] { prefill<F16>(l, seq, q, tokens, heads, pos0, scale, out); });
  return submit(s, [=] { prefill<BF16>(l, seq, q, tokens, heads, pos0, scale, out); });
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
  MXH_TRY(check_kv(kv, "mxc_attention_decode"));
  MXH_CHECK_ARG(seq_ids && lens && q && out && workspace, "mxc_attention_decode: null pointer");
  MXH_CHECK_ARG(heads > 0 && heads % kv->kv_heads == 0 && heads / kv->kv_heads <= DEC_MAX_G,
                "mxc_attention_decode: heads %d must be a multiple of kv_heads %d, at most %d times it", heads,
                kv->kv_heads, DEC_MAX_G);
  MXH_CHECK_ARG(n_seq >= 0 && n_seq < 65536, "mxc_attention_decode: n_seq %lld out of range", (long long)n_seq);
  MXH_CHECK_ARG(max_len >= 0 && max_len <= kv->capacity, "mxc_attention_decode: max_len %lld exceeds capacity %lld",
                (long long)max_len, (long long)kv->capacity);
  MXH_CHECK_ARG(max_len <= DEC_MAX_LEN, "mxc_attention_decode: max_len %lld over the %lld the split combine supports",
                (long long)max_len, (long long)DEC_MAX_LEN);
  const size_t need = mxc_attention_decode_workspace_bytes(n_seq, heads, kv->head_dim, max_len);
  MXH_CHECK_ARG(workspace_bytes >= need, "mxc_attention_decode: workspace of %zu bytes, needs %zu", workspace_bytes,
                need);
  if (n_seq == 0) return MXC_OK;
  const size_t qbytes = size_t(n_seq) * heads * kv->head_dim * 4;
  MXH_DEV(q, qbytes, "mxc_attention_decode");
  MXH_DEV(out, qbytes, "mxc_attention_decode");
  MXH_DEV(seq_ids, size_t(n_seq) * 4, "mxc_attention_decode");
  MXH_DEV(lens, size_t(n_seq) * 4, "mxc_attention_decode");
  MXH_DEV(workspace, need, "mxc_attention_decode");
  const mxc_kv_layer l = *kv;
  if (l.type == MXC_F16)
    return submit(s, [=] { decode<F16>(l, seq_ids, lens, max_len, q, n_seq, heads, scale, out); });
  return submit(s, [=] { decode<BF16>(l, seq_ids, lens, max_len, q, n_seq, heads, scale, out); });
}

}  // extern "C"
