// Weight upload at load; see weights-upload.h.
#include "gpu/weights-upload.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/dequant/dequant.h"

namespace mixtile::gpu {

// Two pinned host chunks and two raw device chunks: the host fills one while the GPU copies and
// dequantizes the other.
struct UploadStaging {
  static constexpr size_t CHUNK = size_t(16) << 20;
  PinnedBuffer host[2];
  DeviceBuffer raw[2];
  HostFence fence[2];
  int next = 0;
};

static UploadStaging& staging(GpuContext& g) {
  if (!g.upload) {
    auto s = std::make_shared<UploadStaging>();
    for (int i = 0; i < 2; ++i) {
      s->host[i] = PinnedBuffer(g.api, UploadStaging::CHUNK, "pinned upload staging");
      s->raw[i] = g.alloc(UploadStaging::CHUNK, "upload staging");
      s->fence[i].init(g.api);
    }
    g.upload = s;
  }
  return *g.upload;
}

void upload_release(GpuContext& g) {
  if (!g.upload) return;
  g.bind();
  g.sync();
  g.upload.reset();
}

static bool gpu_dequantizes(GgmlType t) {
  switch (t) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_K:
    case GgmlType::Q6_K: return true;
    default: return false;
  }
}

void upload_bf16(GpuContext& g, const Weight& w, uint16_t* dst) {
  g.bind();
  UploadStaging& s = staging(g);
  const int64_t ne0 = w.ne[0], rows = w.rows();
  const bool on_gpu = gpu_dequantizes(w.type);
  // Bytes one row takes in the staging buffer: as stored (GPU dequantizes) or as BF16 (CPU widened).
  const size_t stage_row = on_gpu ? w.row_bytes : size_t(ne0) * 2;
  if (stage_row > UploadStaging::CHUNK) throw std::invalid_argument("weight row larger than the upload staging");
  const int64_t per_chunk = int64_t(UploadStaging::CHUNK / stage_row);
  std::vector<float> row_f32(on_gpu ? 0 : size_t(ne0));
  for (int64_t r0 = 0; r0 < rows; r0 += per_chunk) {
    const int64_t nr = std::min(per_chunk, rows - r0);
    const int i = s.next;
    s.next ^= 1;
    s.fence[i].wait();  // the copy that last read this chunk is done
    uint8_t* h = s.host[i].as<uint8_t>();
    if (on_gpu) {
      const size_t bytes = size_t(nr) * w.row_bytes;
      std::memcpy(h, w.data + size_t(r0) * w.row_bytes, bytes);
      g.ok(g.api->mxc_memcpy_h2d(s.raw[i].as(), h, bytes, g.stream), "weight upload");
      g.ok(g.api->mxc_dequant_bf16(s.raw[i].as(), mxc_dtype(w.type), nr * ne0, dst + r0 * ne0, g.stream),
           "weight dequantization");
    } else {
      uint16_t* hb = reinterpret_cast<uint16_t*>(h);
      for (int64_t r = 0; r < nr; ++r) {
        dequantize_row(w.type, w.data + size_t(r0 + r) * w.row_bytes, row_f32.data(), ne0);
        for (int64_t c = 0; c < ne0; ++c) hb[r * ne0 + c] = fp32_to_bf16(row_f32[size_t(c)]);
      }
      g.ok(g.api->mxc_memcpy_h2d(dst + r0 * ne0, hb, size_t(nr * ne0) * 2, g.stream), "weight upload");
    }
    s.fence[i].record(g.stream);
    g.counters.h2d_bytes += size_t(nr) * stage_row;
  }
}

DeviceBuffer upload_bf16_stacked(GpuContext& g, const std::vector<const Weight*>& parts, const char* what) {
  int64_t rows = 0;
  const int64_t ne0 = parts.at(0)->ne[0];
  for (const Weight* w : parts) {
    if (w->ne[0] != ne0) throw std::invalid_argument(std::string(what) + ": parts have different row lengths");
    rows += w->rows();
  }
  DeviceBuffer out = g.alloc(size_t(rows * ne0) * 2, what);
  int64_t at = 0;
  for (const Weight* w : parts) {
    upload_bf16(g, *w, out.as<uint16_t>() + at * ne0);
    at += w->rows();
  }
  return out;
}

DeviceBuffer upload_f32(GpuContext& g, const Weight& w, const char* what) {
  g.bind();
  const int64_t ne0 = w.ne[0], rows = w.rows();
  DeviceBuffer out = g.alloc(size_t(ne0 * rows) * 4, what);
  // Small (norms, the router): widened on the CPU, copied synchronously.
  std::vector<float> f(size_t(ne0 * rows));
  for (int64_t r = 0; r < rows; ++r) dequantize_row(w.type, w.data + size_t(r) * w.row_bytes, f.data() + r * ne0, ne0);
  g.ok(g.api->mxc_memcpy_h2d(out.as(), f.data(), f.size() * 4, g.stream), what);
  g.sync();
  g.counters.h2d_bytes += f.size() * 4;
  return out;
}

DeviceBuffer upload_raw(GpuContext& g, const Weight& w, const char* what) {
  g.bind();
  UploadStaging& s = staging(g);
  DeviceBuffer out = g.alloc(w.bytes(), what);
  for (size_t off = 0; off < w.bytes(); off += UploadStaging::CHUNK) {
    const size_t bytes = std::min(UploadStaging::CHUNK, w.bytes() - off);
    const int i = s.next;
    s.next ^= 1;
    s.fence[i].wait();
    std::memcpy(s.host[i].as(), w.data + off, bytes);
    g.ok(g.api->mxc_memcpy_h2d(out.as<uint8_t>() + off, s.host[i].as(), bytes, g.stream), what);
    s.fence[i].record(g.stream);
  }
  g.counters.h2d_bytes += w.bytes();
  return out;
}

}  // namespace mixtile::gpu
