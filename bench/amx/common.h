// Shared by the AMX harness programs: random weights and routing, and float64 references of the
// experts op (exact: replaying the kernels' BF16 / INT8 rounding; plain: unquantized weights).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu/amx/amx.h"
#include "cpu/dequant/dequant.h"
#include "tensor.h"

namespace bench {

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
  double normal() {
    double u = std::max(uniform(), 1e-300), v = uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
};

// Heavy-tailed weights (mostly N(0, s), 1% of entries x8), as trained FFN weights look.
inline void random_weights(std::vector<float>& w, size_t n, float s, uint64_t seed) {
  w.resize(n);
  Rng r(seed);
  for (size_t i = 0; i < n; ++i) {
    double v = r.normal() * s;
    if (r.uniform() < 0.01) v *= 8;
    w[i] = float(v);
  }
}
// Activations: N(0, 1) with a few outlier channels (every 97th, x outlier), as post-norm hidden
// states have.
inline void random_acts(std::vector<float>& x, int64_t n, int64_t k, uint64_t seed, double outlier = 20.0) {
  x.resize(size_t(n * k));
  Rng r(seed);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < k; ++i) x[size_t(t * k + i)] = float(r.normal() * ((i % 97) == 5 ? outlier : 1.0));
}

inline float bf16_round(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  x = (x + (0x7FFF + ((x >> 16) & 1))) & 0xFFFF0000u;
  std::memcpy(&f, &x, 4);
  return f;
}

// Replays the kernels' rounding of one row: BF16, or INT8 per group (group along k, zero padded).
// Out: values as the kernel sees them (q * scale), as doubles, k_pad long.
inline void quantized_row(mixtile::amx::Dtype dt, int group, const float* x, int64_t k, std::vector<double>& out) {
  if (dt == mixtile::amx::Dtype::bf16) {
    out.assign(size_t(k), 0.0);
    for (int64_t i = 0; i < k; ++i) out[size_t(i)] = bf16_round(x[i]);
    return;
  }
  const int64_t k_pad = (k + group - 1) / group * group;
  out.assign(size_t(k_pad), 0.0);
  for (int64_t g = 0; g < k_pad; g += group) {
    float amax = 0;
    for (int64_t i = g; i < std::min(k, g + group); ++i) amax = std::max(amax, std::fabs(x[i]));
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    const float scale = amax / 127.0f;
    for (int64_t i = g; i < std::min(k, g + group); ++i) {
      const float q = std::nearbyint(x[i] * inv);
      out[size_t(i)] = double(std::clamp(q, -127.0f, 127.0f)) * double(scale);
    }
  }
}

struct Experts {  // float source weights, ggml order: gate/up [E][F][H], down [E][H][F]
  int64_t E, H, F;
  std::vector<float> gate, up, down;
};

// y[n][H] in float64. exact: weights and activations rounded as the kernels round them;
// down_bf16: h and the down weights rounded to BF16 (INT8 gate+up with BF16 down panels).
inline void reference(const Experts& w, bool exact, mixtile::amx::Dtype dt, int group, const float* x, int64_t n,
                      const int32_t* ids, const float* rw, int top_k, std::vector<double>& y,
                      bool down_bf16 = false) {
  const int64_t H = w.H, F = w.F;
  y.assign(size_t(n * H), 0.0);
  auto row = [&](const float* src, int64_t k, std::vector<double>& out, bool down_side = false) {
    if (exact) {
      quantized_row(down_side && down_bf16 ? mixtile::amx::Dtype::bf16 : dt, group, src, k, out);
    } else {
      out.assign(src, src + k);
    }
  };
  std::vector<double> xq, wq, hq;
  std::vector<float> h(static_cast<size_t>(F));
  for (int64_t t = 0; t < n; ++t) {
    row(x + t * H, H, xq);
    for (int j = 0; j < top_k; ++j) {
      const int64_t e = ids[t * top_k + j];
      for (int64_t f = 0; f < F; ++f) {
        double g = 0, u = 0;
        row(&w.gate[size_t((e * F + f) * H)], H, wq);
        for (int64_t i = 0; i < H; ++i) g += wq[size_t(i)] * xq[size_t(i)];
        row(&w.up[size_t((e * F + f) * H)], H, wq);
        for (int64_t i = 0; i < H; ++i) u += wq[size_t(i)] * xq[size_t(i)];
        h[size_t(f)] = float(g / (1 + std::exp(-g)) * u);
      }
      row(h.data(), F, hq, true);
      for (int64_t o = 0; o < H; ++o) {
        row(&w.down[size_t((e * H + o) * F)], F, wq, true);
        double s = 0;
        for (int64_t i = 0; i < F; ++i) s += wq[size_t(i)] * hq[size_t(i)];
        y[size_t(t * H + o)] += rw[t * top_k + j] * s;
      }
    }
  }
}

inline std::shared_ptr<mixtile::amx::PackedExperts> pack(const Experts& w, mixtile::amx::Dtype dt, int group,
                                                         bool down_bf16 = false) {
  auto rows = [](const std::vector<float>& m, int64_t n_rows, int64_t k) {
    return [&m, n_rows, k](int64_t e, int64_t r, float* dst) {
      std::memcpy(dst, &m[size_t((e * n_rows + r) * k)], size_t(k) * 4);
    };
  };
  return mixtile::amx::pack_experts(dt, group, w.E, w.H, w.F, rows(w.gate, w.F, w.H), rows(w.up, w.F, w.H),
                                    rows(w.down, w.H, w.F), {}, down_bf16);
}

// Random Q4_K rows [rows][k] (k a multiple of 256): random nibbles and 6-bit scales/mins, d about
// 1e-4 and dmin about 8e-4, so weights are of the order of 0.05 around a per-sub-block offset.
inline void random_q4k(std::vector<uint8_t>& bytes, int64_t rows, int64_t k, uint64_t seed) {
  const int64_t nb = rows * (k / mixtile::QK_K);
  bytes.assign(size_t(nb) * sizeof(mixtile::block_q4_K), 0);
  Rng r(seed);
  auto* b = reinterpret_cast<mixtile::block_q4_K*>(bytes.data());
  for (int64_t i = 0; i < nb; ++i) {
    b[i].d = mixtile::fp32_to_fp16(float(1e-4 * (0.5 + r.uniform())));
    b[i].dmin = mixtile::fp32_to_fp16(float(8e-4 * (0.5 + r.uniform())));
    for (auto& s : b[i].scales) s = uint8_t(r.next());
    for (auto& q : b[i].qs) q = uint8_t(r.next());
  }
}
// Rows of Q4_K bytes as F32 (dequantize_row), for references and the other packers.
inline void dequantize_q4k(const std::vector<uint8_t>& bytes, int64_t rows, int64_t k, std::vector<float>& out) {
  out.resize(size_t(rows * k));
  const size_t row_bytes = size_t(k / mixtile::QK_K) * sizeof(mixtile::block_q4_K);
  for (int64_t r = 0; r < rows; ++r)
    mixtile::dequantize_row(mixtile::GgmlType::Q4_K, bytes.data() + size_t(r) * row_bytes, &out[size_t(r * k)], k);
}

// Q4K panels: y[n][H] in float64 replaying the kernels' rounding: x INT8 per act_group, gate/up
// weights exactly their Q4_K values (w holds them dequantized), down weights exact too with h per
// act_group, or INT8 per 32 with h per 32 (down_int8: a down of another type in INT8 g32 panels).
inline void reference_q4k(const Experts& w, bool down_int8, const float* x, int64_t n, const int32_t* ids,
                          const float* rw, int top_k, std::vector<double>& y, int act_group = 32) {
  const int64_t H = w.H, F = w.F;
  using mixtile::amx::Dtype;
  y.assign(size_t(n * H), 0.0);
  std::vector<double> xq, hq, wq;
  std::vector<float> h(static_cast<size_t>(F));
  for (int64_t t = 0; t < n; ++t) {
    quantized_row(Dtype::int8, act_group, x + t * H, H, xq);
    for (int j = 0; j < top_k; ++j) {
      const int64_t e = ids[t * top_k + j];
      for (int64_t f = 0; f < F; ++f) {
        double g = 0, u = 0;
        const float* gr = &w.gate[size_t((e * F + f) * H)];
        const float* ur = &w.up[size_t((e * F + f) * H)];
        for (int64_t i = 0; i < H; ++i) g += double(gr[i]) * xq[size_t(i)], u += double(ur[i]) * xq[size_t(i)];
        h[size_t(f)] = float(g / (1 + std::exp(-g)) * u);
      }
      quantized_row(Dtype::int8, down_int8 ? 32 : act_group, h.data(), F, hq);
      for (int64_t o = 0; o < H; ++o) {
        const float* dr = &w.down[size_t((e * H + o) * F)];
        if (down_int8) {
          quantized_row(Dtype::int8, 32, dr, F, wq);
        } else {
          wq.assign(dr, dr + F);
        }
        double s = 0;
        for (int64_t i = 0; i < F; ++i) s += wq[size_t(i)] * hq[size_t(i)];
        y[size_t(t * H + o)] += rw[t * top_k + j] * s;
      }
    }
  }
}

// ||a - b|| / ||b||
inline double rel_l2(const float* a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    const double d = double(a[i]) - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace bench
