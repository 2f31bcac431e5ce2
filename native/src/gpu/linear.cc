// GPU linear weights; see linear.h.
#include "gpu/linear.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "gpu/weights-upload.h"

namespace mixtile::gpu {

GpuWeightMode gpu_weight_mode() {
  const char* e = std::getenv("MIXTILE_GPU_WEIGHTS");
  if (!e || !*e || std::string(e) == "quantized") return GpuWeightMode::quantized;
  if (std::string(e) == "bf16") return GpuWeightMode::bf16;
  throw std::invalid_argument(std::string("MIXTILE_GPU_WEIGHTS must be 'quantized' or 'bf16', got '") + e + "'");
}

static bool gemv_reads(GgmlType t) {
  return t == GgmlType::Q8_0 || t == GgmlType::Q4_K || t == GgmlType::Q5_K || t == GgmlType::Q6_K;
}

static bool is_quant(mxc_dtype t) { return t != MXC_BF16; }

GpuLinear gpu_linear_upload(GpuContext& g, const std::vector<const Weight*>& parts, const char* what, bool gemv_only) {
  GpuLinear l;
  l.k = parts.at(0)->ne[0];
  l.gemv_only = gemv_only;
  for (const Weight* w : parts) {
    if (w->ne[0] != l.k) throw std::invalid_argument(std::string(what) + ": parts have different row lengths");
    l.rows += w->rows();
  }
  bool any_quant = false;
  for (const Weight* w : parts) any_quant = any_quant || gemv_reads(w->type);
  if (gpu_weight_mode() == GpuWeightMode::bf16 || !any_quant) {  // one stacked BF16 matrix
    l.parts.push_back({upload_bf16_stacked(g, parts, what), MXC_BF16, 0, l.rows});
    return l;
  }
  int64_t at = 0;
  for (const Weight* w : parts) {
    if (gemv_reads(w->type)) l.parts.push_back({upload_raw(g, *w, what), mxc_dtype(w->type), at, w->rows()});
    else l.parts.push_back({upload_bf16_stacked(g, {w}, what), MXC_BF16, at, w->rows()});
    at += w->rows();
  }
  const size_t need = size_t(l.rows * l.k) * 2;
  if (!gemv_only && g.weight_scratch.bytes() < need) {
    g.sync();
    g.weight_scratch.reset();
    g.weight_scratch = g.alloc(need, "GPU weight dequantization scratch");
  }
  return l;
}

size_t gpu_linear_bytes(const GpuLinear& w) {
  size_t b = 0;
  for (const auto& p : w.parts) b += p.data.bytes();
  return b;
}

void gpu_linear(GpuContext& g, const GpuLinear& w, int64_t row0, int64_t n, int64_t m, const uint16_t* x, float* y,
                float beta, const char* what) {
  const CudaApi& api = *g.api;
  if (row0 < 0 || n <= 0 || row0 + n > w.rows) throw std::logic_error(std::string(what) + ": row range out of the weight");
  struct Span {
    const GpuLinear::Part* p;
    int64_t r0, rows, col;  // rows [r0, r0 + rows) of the part go to y's columns [col, col + rows)
  };
  Span spans[8];
  int ns = 0;
  bool all_quant = true;
  for (const auto& p : w.parts) {
    const int64_t a = std::max(row0, p.row0), b = std::min(row0 + n, p.row0 + p.rows);
    if (a >= b) continue;
    if (ns == 8) throw std::logic_error(std::string(what) + ": more than 8 parts");
    spans[ns++] = Span{&p, a - p.row0, b - a, a - row0};
    all_quant = all_quant && is_quant(p.type);
  }
  auto part_at = [&](const Span& s) -> const uint8_t* {
    return s.p->data.as<uint8_t>() + api.mxc_dtype_bytes(s.p->type, s.r0 * w.k);
  };
  if (ns == 1 && !is_quant(spans[0].p->type)) {  // BF16 as uploaded: cuBLAS (our GEMV at one row)
    g.ok(api.mxc_gemm_bf16(g.blas, m, n, w.k, x, reinterpret_cast<const uint16_t*>(part_at(spans[0])), y, MXC_F32, beta),
         what);
    return;
  }
  if (m == 1 || (w.gemv_only && all_quant)) {
    if (w.gemv_only && m > GpuContext::LOGIT_ROWS) throw std::logic_error(std::string(what) + ": too many rows for the GEMV");
    // The quantized parts in launches of up to MXC_GEMV_MAX_JOBS (fused q/k/v: one launch), the others by cuBLAS.
    mxc_gemv_job jobs[MXC_GEMV_MAX_JOBS];
    int nj = 0;
    auto flush = [&] {
      if (nj) g.ok(api.mxc_gemv_quant_multi(m, w.k, x, jobs, nj, MXC_F32, beta, g.stream), what);
      nj = 0;
    };
    for (int i = 0; i < ns; ++i) {
      const Span& s = spans[i];
      if (is_quant(s.p->type)) {
        jobs[nj++] = mxc_gemv_job{part_at(s), s.p->type, s.rows, y + s.col, n};
        if (nj == MXC_GEMV_MAX_JOBS) flush();
      } else {  // m == 1 here: y's row stride does not matter
        g.ok(api.mxc_gemm_bf16(g.blas, 1, s.rows, w.k, x, reinterpret_cast<const uint16_t*>(part_at(s)), y + s.col,
                               MXC_F32, beta),
             what);
      }
    }
    flush();
    return;
  }
  // A batch: the rows dequantized into the scratch, then one GEMM.
  if (g.weight_scratch.bytes() < size_t(n * w.k) * 2) {
    throw std::logic_error(std::string(what) + ": the GPU weight scratch is smaller than the weight");
  }
  auto* scratch = g.weight_scratch.as<uint16_t>();
  for (int i = 0; i < ns; ++i) {
    const Span& s = spans[i];
    g.ok(api.mxc_dequant_bf16(part_at(s), s.p->type, s.rows * w.k, scratch + s.col * w.k, g.stream), what);
  }
  g.ok(api.mxc_gemm_bf16(g.blas, m, n, w.k, x, scratch, y, MXC_F32, beta), what);
}

}  // namespace mixtile::gpu
