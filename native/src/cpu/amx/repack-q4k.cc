// Load-time re-layout of Q4_K experts into Q4K panels (amx.h, "Q4K"): the Q4_K nibbles moved into
// the INT8 panel order, two per byte, with the sub-block scales/mins as integers and d/dmin as F32.
// No value changes (no requantization): the panels decode to exactly the source's Q4_K weights.
// A down matrix of another type (Q6_K in Q4_K_M files) becomes INT8 group-32 panels (repack.cc).
// Plain x86-64 code: it runs (and is tested) on CPUs without AMX.
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/amx/amx.h"
#include "cpu/amx/kernels.h"
#include "cpu/amx/repack-matrix.h"
#include "repack-cache.h"
#include "tensor.h"
#include "threadpool.h"

namespace mixtile::amx {

namespace {

constexpr int kQ4Group = 32;  // one Q4_K sub-block

size_t align64(size_t v) { return (v + 63) / 64 * 64; }

// Shape of one Q4K matrix and its byte offsets: panels, then q4_sm, then q4_d (64-byte aligned).
struct Q4Plan {
  int64_t n_out, k, n_panels, k_steps, n_groups, n_super;
  size_t panel_bytes, data_bytes, sm_bytes, d_bytes;
  size_t total() const { return data_bytes + align64(sm_bytes) + align64(d_bytes); }
};

Q4Plan q4_plan(int64_t n_out, int64_t k, bool fused) {
  Q4Plan p{};
  p.n_out = n_out;
  p.k = k;
  p.k_steps = k / kInt8Step;
  p.n_groups = k / kQ4Group;
  p.n_super = k / QK_K;
  p.n_panels = fused ? (n_out / 2 + 15) / 16 : (n_out + kPanelCols - 1) / kPanelCols;
  p.panel_bytes = size_t(p.k_steps) * kQ4StepBytes;
  p.data_bytes = p.panel_bytes * size_t(p.n_panels);
  p.sm_bytes = size_t(p.n_panels) * size_t(p.n_groups) * 64;
  p.d_bytes = size_t(p.n_panels) * size_t(p.n_super) * 64 * sizeof(float);
  return p;
}

PackedMatrix q4_view(const Q4Plan& p, const uint8_t* base) {
  PackedMatrix m;
  m.n_out = p.n_out;
  m.k = p.k;
  m.n_panels = p.n_panels;
  m.k_steps = p.k_steps;
  m.k_pad = p.k;
  m.panel_bytes = p.panel_bytes;
  m.n_groups = p.n_groups;
  m.data = base;
  m.q4_sm = base + p.data_bytes;
  m.q4_d = reinterpret_cast<const float*>(base + p.data_bytes + align64(p.sm_bytes));
  return m;
}

// Packs panels [0, n_panels) of one matrix of expert e. fused: columns 0-15 of panel p are rows
// 16p.. of a (gate), 16-31 the same rows of b (up); else columns are rows 32p.. of a.
void q4_pack(const Q4Plan& p, int64_t e, const BlockRowFn& a, const BlockRowFn* b, uint8_t* base) {
  uint8_t* sm = base + p.data_bytes;
  float* dd = reinterpret_cast<float*>(base + p.data_bytes + align64(p.sm_bytes));
  std::memset(base, 0, p.total());
  const int64_t n_src = b ? p.n_out / 2 : p.n_out;
  std::vector<uint8_t> q(size_t(kPanelCols) * p.k);  // one panel's nibbles, [column][k]
  for (int64_t pi = 0; pi < p.n_panels; ++pi) {
    std::fill(q.begin(), q.end(), uint8_t(0));
    uint8_t* psm = sm + pi * p.n_groups * 64;
    float* pd = dd + pi * p.n_super * 64;
    for (int c = 0; c < kPanelCols; ++c) {
      const int64_t r = b ? pi * 16 + (c & 15) : pi * kPanelCols + c;
      if (r >= n_src) continue;  // zero padding: q, sc, m, d, dmin all 0
      const auto* blk = reinterpret_cast<const block_q4_K*>((b && c >= 16 ? *b : a)(e, r));
      uint8_t* qc = q.data() + size_t(c) * p.k;
      for (int64_t sb = 0; sb < p.n_super; ++sb) {
        const block_q4_K& x = blk[sb];
        pd[sb * 64 + c] = fp16_to_fp32(x.d);
        pd[sb * 64 + 32 + c] = fp16_to_fp32(x.dmin);
        for (int j = 0; j < 8; ++j) {
          uint8_t s, m;
          get_scale_min_k4(j, x.scales, &s, &m);
          psm[(sb * 8 + j) * 64 + c] = s;
          psm[(sb * 8 + j) * 64 + 32 + c] = m;
          const uint8_t* qs = x.qs + 32 * (j / 2);
          for (int l = 0; l < 32; ++l) qc[sb * QK_K + 32 * j + l] = (j & 1) ? qs[l] >> 4 : qs[l] & 0xF;
        }
      }
    }
    // INT8 tile byte i of a step (row i / 64 = K quad, column (i % 64) / 4, K (i / 64) * 4 + i % 4)
    // goes to the low nibble of packed byte i (i < 512) or the high nibble of byte i - 512.
    uint8_t* dst = base + pi * p.panel_bytes;
    for (int64_t ks = 0; ks < p.k_steps; ++ks)
      for (int t = 0; t < 2; ++t) {
        uint8_t* tile = dst + ks * kQ4StepBytes + t * kQ4TileBytes;
        for (int i = 0; i < int(kTileBytes); ++i) {
          const int n = t * 16 + (i % 64) / 4;
          const int64_t kk = ks * kInt8Step + (i / 64) * 4 + i % 4;
          const uint8_t v = q[size_t(n) * p.k + kk];
          tile[i % 512] |= i < 512 ? v : uint8_t(v << 4);
        }
      }
  }
}

}  // namespace

std::shared_ptr<PackedExperts> pack_experts_q4k(int64_t n_expert, int64_t hidden, int64_t ffn, const BlockRowFn& gate,
                                                const BlockRowFn& up, const BlockRowFn* down_q4k,
                                                const RowFn& down_rows, const CacheKey& cache, int act_group) {
  if (act_group != 32 && act_group != 64 && act_group != 128 && act_group != 256) {
    throw std::invalid_argument("AMX Q4K: activation group must be 32, 64, 128 or 256, got " + std::to_string(act_group));
  }
  if (n_expert <= 0 || hidden <= 0 || ffn <= 0) throw std::invalid_argument("AMX Q4K pack: empty expert shapes");
  // K of a Q4K matrix is whole Q4_K rows: hidden for gate/up, ffn for a Q4_K down.
  if (hidden % QK_K || (down_q4k && ffn % QK_K)) {
    throw std::invalid_argument("AMX Q4K pack: Q4_K rows must be multiples of 256 elements, got hidden " +
                                std::to_string(hidden) + ", ffn " + std::to_string(ffn));
  }
  auto pe = std::make_shared<PackedExperts>();
  pe->dtype = Dtype::q4k;
  pe->down_dtype = down_q4k ? Dtype::q4k : Dtype::int8;
  pe->group = kQ4Group;
  pe->q4_act_group = act_group;
  pe->n_expert = n_expert;
  pe->hidden = hidden;
  pe->ffn = ffn;
  const Q4Plan gu = q4_plan(2 * ffn, hidden, true);
  const Q4Plan dn = q4_plan(hidden, ffn, false);
  const size_t down_bytes = down_q4k ? dn.total() : packed_matrix_bytes(Dtype::int8, kQ4Group, hidden, ffn);
  const size_t per_expert = gu.total() + down_bytes;
  pe->storage_bytes = per_expert * size_t(n_expert);
  const repack_cache::Result r =
      repack_cache::obtain(cache.slot, cache.key, pe->storage_bytes, cache.source_bytes, [&](uint8_t* base) {
        parallel_for(n_expert, [&](int64_t e, int) {
          uint8_t* eb = base + size_t(e) * per_expert;
          q4_pack(gu, e, gate, &up, eb);
          if (down_q4k) {
            q4_pack(dn, e, *down_q4k, nullptr, eb + gu.total());
          } else {
            pack_matrix(Dtype::int8, kQ4Group, hidden, ffn, e, down_rows, eb + gu.total());
          }
        });
      });
  pe->storage = r.data;
  pe->cache_outcome = repack_cache::outcome_name(r.outcome);
  pe->gate_up.reset(new PackedMatrix[n_expert]);
  pe->down.reset(new PackedMatrix[n_expert]);
  for (int64_t e = 0; e < n_expert; ++e) {
    const uint8_t* eb = pe->storage.get() + size_t(e) * per_expert;
    pe->gate_up[e] = q4_view(gu, eb);
    if (down_q4k) {
      pe->down[e] = q4_view(dn, eb + gu.total());
    } else {
      pe->down[e] = packed_matrix_view(Dtype::int8, kQ4Group, hidden, ffn, eb + gu.total());
    }
  }
  return pe;
}

}  // namespace mixtile::amx
