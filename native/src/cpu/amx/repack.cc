// Load-time repack of expert and linear weights into the AMX panel layout (amx.h): BF16 VNNI
// pairs, or INT8 VNNI quads with symmetric per-row, per-group scales. Source rows come as F32
// from a RowFn (the caller dequantizes BF16 / F16 / Q8_0 / Q4_K / Q6_K rows with dequantize_row).
// The packed bytes go through the repack cache (repack-cache.h): built here once, mapped from
// disk on later starts. Plain x86-64 code: it runs (and is tested) on CPUs without AMX.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/amx/amx.h"
#include "cpu/amx/kernels.h"
#include "cpu/amx/repack-matrix.h"
#include "repack-cache.h"
#include "threadpool.h"

namespace mixtile::amx {

namespace {

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

uint16_t to_bf16(float f) {  // round to nearest even, NaN kept
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return uint16_t((x >> 16) | 64);
  return uint16_t((x + (0x7FFF + ((x >> 16) & 1))) >> 16);
}

// Shape of one packed matrix; offsets of its data, scales and colsum inside one expert's bytes.
struct MatrixPlan {
  int64_t n_out, k, n_panels, k_steps, k_pad, n_groups;
  size_t panel_bytes, data_bytes, scale_bytes;
};

MatrixPlan plan(Dtype dt, int group, int64_t n_out, int64_t k, bool fused) {
  MatrixPlan p{};
  p.n_out = n_out;
  p.k = k;
  const int step = dt == Dtype::bf16 ? kBf16Step : kInt8Step;
  p.k_pad = round_up(k, dt == Dtype::bf16 ? step : std::max(group, kInt8Step));
  p.k_steps = p.k_pad / step;
  p.n_panels = fused ? (n_out / 2 + 15) / 16 : (n_out + kPanelCols - 1) / kPanelCols;
  p.panel_bytes = size_t(p.k_steps) * kStepBytes;
  p.data_bytes = p.panel_bytes * size_t(p.n_panels);
  p.n_groups = dt == Dtype::int8 ? p.k_pad / group : 0;
  p.scale_bytes = size_t(p.n_panels) * size_t(p.n_groups) * kPanelCols * 4;  // scales; colsum the same again
  return p;
}

size_t expert_bytes(const MatrixPlan& p) { return p.data_bytes + 2 * round_up(int64_t(p.scale_bytes), 64); }

// Fills one panel from its 32 source rows (F32, k_pad each; rows past the matrix are zeros).
void pack_panel(Dtype dt, int group, const MatrixPlan& p, const float* rows, uint8_t* dst, float* scales,
                int32_t* colsum, std::vector<int8_t>& q) {
  if (dt == Dtype::bf16) {
    auto* out = reinterpret_cast<uint16_t*>(dst);
    for (int64_t ks = 0; ks < p.k_steps; ++ks)
      for (int t = 0; t < 2; ++t)
        for (int r = 0; r < 16; ++r)
          for (int n = 0; n < 16; ++n) {
            const float* src = rows + (t * 16 + n) * p.k_pad + ks * kBf16Step + 2 * r;
            uint16_t* o = out + (ks * kStepBytes + t * kTileBytes + r * 64 + n * 4) / 2;
            o[0] = to_bf16(src[0]);
            o[1] = to_bf16(src[1]);
          }
    return;
  }
  // INT8: quantize each row per group (scale = max|w| / 127), then place the quads.
  q.resize(size_t(kPanelCols) * p.k_pad);
  for (int c = 0; c < kPanelCols; ++c) {
    const float* src = rows + c * p.k_pad;
    int8_t* qc = q.data() + c * p.k_pad;
    for (int64_t g = 0; g < p.n_groups; ++g) {
      float amax = 0;
      for (int i = 0; i < group; ++i) amax = std::max(amax, std::fabs(src[g * group + i]));
      const float inv = amax > 0 ? 127.0f / amax : 0.0f;
      int32_t sum = 0;
      for (int i = 0; i < group; ++i) {
        const int v = int(std::nearbyint(src[g * group + i] * inv));
        qc[g * group + i] = int8_t(std::clamp(v, -127, 127));
        sum += qc[g * group + i];
      }
      scales[g * kPanelCols + c] = amax / 127.0f;
      colsum[g * kPanelCols + c] = sum;
    }
  }
  for (int64_t ks = 0; ks < p.k_steps; ++ks)
    for (int t = 0; t < 2; ++t)
      for (int r = 0; r < 16; ++r)
        for (int n = 0; n < 16; ++n)
          std::memcpy(dst + ks * kStepBytes + t * kTileBytes + r * 64 + n * 4,
                      q.data() + (t * 16 + n) * p.k_pad + ks * kInt8Step + 4 * r, 4);
}

// Metadata of one packed matrix whose bytes start at base (layout: amx.h).
PackedMatrix matrix_view(Dtype dt, const MatrixPlan& p, const uint8_t* base) {
  PackedMatrix out;
  out.n_out = p.n_out;
  out.k = p.k;
  out.n_panels = p.n_panels;
  out.k_steps = p.k_steps;
  out.k_pad = p.k_pad;
  out.panel_bytes = p.panel_bytes;
  out.n_groups = p.n_groups;
  out.data = base;
  out.scales = dt == Dtype::int8 ? reinterpret_cast<const float*>(base + p.data_bytes) : nullptr;
  out.colsum = dt == Dtype::int8
                   ? reinterpret_cast<const int32_t*>(base + p.data_bytes + round_up(int64_t(p.scale_bytes), 64))
                   : nullptr;
  return out;
}

// Packs panels [p0, p1) of one matrix of expert e into base. fused: source rows come from gate
// (tile0) and up (tile1).
void pack_panels(Dtype dt, int group, const MatrixPlan& p, int64_t e, const RowFn& a, const RowFn* b, uint8_t* base,
                 int64_t p0, int64_t p1) {
  float* scales = reinterpret_cast<float*>(base + p.data_bytes);
  int32_t* colsum = reinterpret_cast<int32_t*>(base + p.data_bytes + round_up(int64_t(p.scale_bytes), 64));
  std::vector<float> rows(size_t(kPanelCols) * p.k_pad);
  std::vector<int8_t> q;
  const int64_t n_src = b ? p.n_out / 2 : p.n_out;  // rows per source matrix
  for (int64_t pi = p0; pi < p1; ++pi) {
    std::fill(rows.begin(), rows.end(), 0.0f);
    for (int c = 0; c < kPanelCols; ++c) {
      const RowFn& src = b && c >= 16 ? *b : a;
      const int64_t r = b ? pi * 16 + (c & 15) : pi * kPanelCols + c;
      if (r < n_src) src(e, r, rows.data() + c * p.k_pad);
    }
    pack_panel(dt, group, p, rows.data(), base + pi * p.panel_bytes, scales + pi * p.n_groups * kPanelCols,
               colsum + pi * p.n_groups * kPanelCols, q);
  }
  // Scale/colsum padding up to the 64-byte boundary is never read, but a cache file should not
  // depend on what the allocator left there.
  if (dt == Dtype::int8 && p1 == p.n_panels) {
    const size_t used = size_t(p.n_panels) * size_t(p.n_groups) * kPanelCols * 4;
    const size_t pad = size_t(round_up(int64_t(p.scale_bytes), 64)) - used;
    std::memset(reinterpret_cast<uint8_t*>(scales) + used, 0, pad);
    std::memset(reinterpret_cast<uint8_t*>(colsum) + used, 0, pad);
  }
}

void check_group(Dtype dtype, int group) {
  if (dtype == Dtype::int8 && group != 32 && (group < 64 || group % 64 != 0 || group > 4096)) {
    throw std::invalid_argument("AMX INT8 group size must be 32 or a multiple of 64 (64, 128, 256 ...), got " +
                                std::to_string(group));
  }
}

}  // namespace

size_t packed_matrix_bytes(Dtype dt, int group, int64_t n_out, int64_t k) {
  return expert_bytes(plan(dt, group, n_out, k, false));
}

void pack_matrix(Dtype dt, int group, int64_t n_out, int64_t k, int64_t e, const RowFn& rows, uint8_t* base) {
  check_group(dt, group);
  const MatrixPlan p = plan(dt, group, n_out, k, false);
  pack_panels(dt, group, p, e, rows, nullptr, base, 0, p.n_panels);
}

PackedMatrix packed_matrix_view(Dtype dt, int group, int64_t n_out, int64_t k, const uint8_t* base) {
  return matrix_view(dt, plan(dt, group, n_out, k, false), base);
}

std::shared_ptr<PackedExperts> pack_experts(Dtype dtype, int group, int64_t n_expert, int64_t hidden, int64_t ffn,
                                            const RowFn& gate, const RowFn& up, const RowFn& down,
                                            const CacheKey& cache, bool down_bf16) {
  check_group(dtype, group);
  const Dtype ddt = dtype == Dtype::int8 && down_bf16 ? Dtype::bf16 : dtype;
  if (n_expert <= 0 || hidden <= 0 || ffn <= 0) throw std::invalid_argument("AMX pack: empty expert shapes");
  auto pe = std::make_shared<PackedExperts>();
  pe->dtype = dtype;
  pe->down_dtype = ddt;
  pe->group = dtype == Dtype::int8 ? group : 0;
  pe->n_expert = n_expert;
  pe->hidden = hidden;
  pe->ffn = ffn;
  const MatrixPlan gu = plan(dtype, group, 2 * ffn, hidden, true);
  const MatrixPlan dn = plan(ddt, group, hidden, ffn, false);
  const size_t per_expert = expert_bytes(gu) + expert_bytes(dn);
  pe->storage_bytes = per_expert * size_t(n_expert);
  const repack_cache::Result r =
      repack_cache::obtain(cache.slot, cache.key, pe->storage_bytes, cache.source_bytes, [&](uint8_t* base) {
        parallel_for(n_expert, [&](int64_t e, int) {
          uint8_t* eb = base + size_t(e) * per_expert;
          pack_panels(dtype, group, gu, e, gate, &up, eb, 0, gu.n_panels);
          pack_panels(ddt, group, dn, e, down, nullptr, eb + expert_bytes(gu), 0, dn.n_panels);
        });
      });
  pe->storage = r.data;
  pe->cache_outcome = repack_cache::outcome_name(r.outcome);
  pe->gate_up.reset(new PackedMatrix[n_expert]);
  pe->down.reset(new PackedMatrix[n_expert]);
  const uint8_t* base = pe->storage.get();
  for (int64_t e = 0; e < n_expert; ++e) {
    pe->gate_up[e] = matrix_view(dtype, gu, base + size_t(e) * per_expert);
    pe->down[e] = matrix_view(ddt, dn, base + size_t(e) * per_expert + expert_bytes(gu));
  }
  return pe;
}

std::shared_ptr<PackedLinear> pack_linear(Dtype dtype, int group, int64_t n_out, int64_t k, const RowFn& row,
                                          const CacheKey& cache) {
  check_group(dtype, group);
  if (n_out <= 0 || k <= 0) throw std::invalid_argument("AMX pack: empty linear shape");
  auto pl = std::make_shared<PackedLinear>();
  pl->dtype = dtype;
  pl->group = dtype == Dtype::int8 ? group : 0;
  const MatrixPlan p = plan(dtype, group, n_out, k, false);
  pl->storage_bytes = expert_bytes(p);
  // Tasks of a few panels each: a 151936-row lm_head is 4748 panels.
  constexpr int64_t kPanelsPerTask = 4;
  const repack_cache::Result r =
      repack_cache::obtain(cache.slot, cache.key, pl->storage_bytes, cache.source_bytes, [&](uint8_t* base) {
        parallel_for((p.n_panels + kPanelsPerTask - 1) / kPanelsPerTask, [&](int64_t t, int) {
          pack_panels(dtype, group, p, 0, row, nullptr, base, t * kPanelsPerTask,
                      std::min(p.n_panels, (t + 1) * kPanelsPerTask));
        });
      });
  pl->storage = r.data;
  pl->cache_outcome = repack_cache::outcome_name(r.outcome);
  pl->w = matrix_view(dtype, p, pl->storage.get());
  return pl;
}

}  // namespace mixtile::amx
