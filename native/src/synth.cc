// Synthetic weights and the DRAM read-bandwidth probe (see synth.h).
#include "synth.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "threadpool.h"

namespace mixtile {
namespace {

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Random bytes, then per type: floats in [-1, 1) for F32/F16/BF16, and fp16 block scales of
// ~1e-2 (so dequantized values stay small and finite) for the quantized types.
void fill_rows(const Weight& w, uint8_t* data, int64_t row0, int64_t row1, uint64_t seed) {
  TypeTraits tt = type_traits(w.type);
  for (int64_t r = row0; r < row1; ++r) {
    uint64_t s = seed ^ (uint64_t(r) * 0xD1B54A32D192ED03ull);
    uint8_t* row = data + size_t(r) * w.row_bytes;
    size_t words = w.row_bytes / 8;
    for (size_t i = 0; i < words; ++i) {
      uint64_t v = splitmix(s);
      std::memcpy(row + 8 * i, &v, 8);
    }
    for (size_t i = words * 8; i < w.row_bytes; ++i) row[i] = uint8_t(splitmix(s));
    int64_t n = w.ne[0];
    auto rnd = [&] { return float(int64_t(splitmix(s) >> 40) - (int64_t(1) << 23)) / float(1 << 23); };
    int64_t nb = n / tt.block_size;
    uint16_t scale = fp32_to_fp16(0.01f);
    switch (w.type) {
      case GgmlType::F32:
        for (int64_t i = 0; i < n; ++i) reinterpret_cast<float*>(row)[i] = rnd();
        break;
      case GgmlType::F16:
        for (int64_t i = 0; i < n; ++i) reinterpret_cast<uint16_t*>(row)[i] = fp32_to_fp16(rnd());
        break;
      case GgmlType::BF16:
        for (int64_t i = 0; i < n; ++i) reinterpret_cast<uint16_t*>(row)[i] = fp32_to_bf16(rnd());
        break;
      case GgmlType::Q8_0:
        for (int64_t b = 0; b < nb; ++b) reinterpret_cast<block_q8_0*>(row)[b].d = scale;
        break;
      case GgmlType::Q4_K:
        for (int64_t b = 0; b < nb; ++b) reinterpret_cast<block_q4_K*>(row)[b].d = reinterpret_cast<block_q4_K*>(row)[b].dmin = scale;
        break;
      case GgmlType::Q5_K:
        for (int64_t b = 0; b < nb; ++b) reinterpret_cast<block_q5_K*>(row)[b].d = reinterpret_cast<block_q5_K*>(row)[b].dmin = scale;
        break;
      case GgmlType::Q6_K:
        for (int64_t b = 0; b < nb; ++b) reinterpret_cast<block_q6_K*>(row)[b].d = scale;
        break;
      default: break;
    }
  }
}

}  // namespace

std::shared_ptr<Weight> synth_weight(GgmlType type, const int64_t ne[4], uint64_t seed) {
  auto w = std::make_shared<Weight>();
  w->type = type;
  for (int i = 0; i < 4; ++i) w->ne[i] = ne[i];
  w->row_bytes = row_bytes(type, ne[0]);  // throws std::invalid_argument
  auto buf = std::make_shared<Buffer>(w->bytes());
  w->owner = buf;
  w->data = buf->data;
  int64_t rows = w->rows(), chunk = 256;
  parallel_for((rows + chunk - 1) / chunk, [&](int64_t c, int) {
    fill_rows(*w, buf->data, c * chunk, std::min(rows, (c + 1) * chunk), seed);
  });
  return w;
}

double mem_read_bandwidth(size_t mib, int reps) {
  size_t n = mib << 17;  // uint64 words
  Buffer buf(n * 8);
  auto* p = reinterpret_cast<uint64_t*>(buf.data);
  int threads = pool_threads();
  int64_t per = int64_t((n + size_t(threads) - 1) / size_t(threads));
  parallel_for(threads, [&](int64_t t, int) {
    uint64_t s = uint64_t(t) + 1;
    for (int64_t i = t * per; i < std::min<int64_t>(int64_t(n), (t + 1) * per); ++i) p[i] = splitmix(s);
  });
  std::vector<uint64_t> sink(size_t(threads) * 8);
  double best = 0;
  for (int rep = 0; rep < reps; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    parallel_for(threads, [&](int64_t t, int) {
      uint64_t acc[8] = {0};
      int64_t end = std::min<int64_t>(int64_t(n), (t + 1) * per);
      for (int64_t i = t * per; i + 8 <= end; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] ^= p[i + j];
      for (int j = 0; j < 8; ++j) sink[size_t(t) * 8 + size_t(j)] = acc[j];
    });
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, double(n * 8) / s / 1e9);
  }
  return best;
}

}  // namespace mixtile
