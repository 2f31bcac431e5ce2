// A dense linear layer on packed panels (attention projections and lm_head in prefill):
//   1 convert  tasks = 16-row blocks of x -> A [n_pad][lda] (BF16, or INT8 per token per group)
//   2 panels   tasks = (32-column panel, 128-row chunk), panel-major so the threads working on
//              one panel at a time share it in L3 and each panel streams from DRAM about once;
//              the kernels block K so the panel stays in L1 while the chunk's row pairs run.
// Rows are padded to 16 with zeros (AMX tiles are 16 rows); only real rows are written to y.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "cpu/amx/amx.h"
#include "cpu/amx/kernels.h"
#include "threadpool.h"

namespace mixtile::amx {

namespace {

constexpr int kChunkRows = 128;

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

struct AlignedScratch {
  void* p = nullptr;
  size_t size = 0;
  template <class T>
  T* get(size_t n) {
    const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    if (bytes > size) {
      std::free(p);
      p = std::aligned_alloc(64, bytes);
      if (!p) {
        size = 0;
        throw std::bad_alloc();
      }
      size = bytes;
    }
    return static_cast<T*>(p);
  }
};

thread_local std::vector<float> tls_c;
float* thread_c() {
  if (tls_c.empty()) tls_c.resize(kChunkRows * kPanelCols + 16);
  return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(tls_c.data()) + 63) & ~uintptr_t(63));
}

std::mutex linear_mutex;  // guards the shared activation scratch

}  // namespace

void linear_forward(const PackedLinear& pl, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
  static AlignedScratch s_act, s_scale;
  std::lock_guard<std::mutex> lock(linear_mutex);
  const PackedMatrix& w = pl.w;
  const bool int8 = pl.dtype == Dtype::int8;
  const int64_t k = w.k, n_out = w.n_out;
  // K padded by one cache line so the 16 rows of an A tile do not share one L1 set (forward-amx.cc).
  const int64_t lda = w.k_pad + (int8 ? 64 : 32);
  const int64_t n_pad = round_up(n, 16);
  uint8_t* act = s_act.get<uint8_t>(size_t(n_pad) * size_t(lda) * (int8 ? 1 : 2));
  float* a_scale = int8 ? s_scale.get<float>(size_t(n_pad) * size_t(w.n_groups)) : nullptr;

  parallel_for(n_pad / 16, [&](int64_t b, int) {
    for (int64_t r = b * 16; r < (b + 1) * 16; ++r) {
      static const float zero_row[1] = {0.0f};
      const bool real = r < n;
      const float* xr = real ? x + r * k : zero_row;
      if (int8) {
        quantize_row_int8(xr, real ? k : 0, w.k_pad, pl.group, reinterpret_cast<int8_t*>(act) + r * lda,
                          a_scale + r * w.n_groups);
      } else {
        convert_row_bf16(xr, real ? k : 0, w.k_pad, reinterpret_cast<uint16_t*>(act) + r * lda);
      }
    }
  });

  const int64_t n_chunks = (n_pad + kChunkRows - 1) / kChunkRows;
  parallel_for(w.n_panels * n_chunks, [&](int64_t task, int) {
    const int64_t p = task / n_chunks, m0 = (task % n_chunks) * kChunkRows;
    const int mrows = int(std::min<int64_t>(kChunkRows, n_pad - m0));
    const uint8_t* panel = w.data + p * w.panel_bytes;
    float* C = thread_c();
    if (int8) {
      panel_int8_amx(reinterpret_cast<const int8_t*>(act) + m0 * lda, lda, a_scale + m0 * w.n_groups, mrows, panel,
                     w.scales + p * w.n_groups * kPanelCols, w.colsum + p * w.n_groups * kPanelCols, w.n_groups,
                     pl.group, C);
    } else {
      panel_bf16_amx(reinterpret_cast<const uint16_t*>(act) + m0 * lda, lda, mrows, panel, w.k_steps, C);
    }
    const int64_t c0 = p * kPanelCols, nc = std::min<int64_t>(kPanelCols, n_out - c0);
    const int64_t rows = std::min<int64_t>(mrows, n - m0);
    for (int64_t m = 0; m < rows; ++m) std::memcpy(y + (m0 + m) * n_out + c0, C + m * kPanelCols, size_t(nc) * 4);
  });
}

}  // namespace mixtile::amx
