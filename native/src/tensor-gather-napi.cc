// weightGather / weightGatherFp8: one weight assembled from several byte ranges of mapped files
// into one owned, 64-byte-aligned Buffer. Hugging Face folders store each expert as its own tensor,
// while the kernels take one [experts, rows, cols] weight (a view into a mapping cannot span them);
// FP8 checkpoints (F8_E4M3 + block scales) become BF16 on the way, as `mixtile convert` writes them.
// Handles and the Weight/Buffer types come from napi-util.h and tensor.h.
#include <algorithm>
#include <cmath>
#include <new>
#include <vector>

#include "napi-registry.h"
#include "napi-util.h"
#include "threadpool.h"

namespace mixtile {
namespace {

// Copy tasks are at most this large so a few big experts still spread over every pool thread
// (the copy is bound by page faults on the mapping, which scale with threads).
constexpr size_t GATHER_CHUNK_BYTES = size_t(4) << 20;

struct CopyTask {
  const uint8_t* src;
  uint8_t* dst;
  size_t len;
};

// A checked byte range of a mapped file (the file is kept alive by the caller's handle list).
struct Range {
  const MappedFile* file;
  size_t offset, len;
};

// Type and dims (ggml order) as weightFromFile checks them; fills w.type/ne/row_bytes.
void gather_shape(Napi::Env env, const Napi::Value& type_v, const Napi::Value& dims_v, Weight& w) {
  int64_t type = int_arg(type_v, 1000, "weightGather: type");
  w.type = GgmlType(type);
  if (!type_supported(w.type)) {
    throw Napi::TypeError::New(env, "weightGather: ggml type " + std::to_string(type) +
                                        " is not supported (supported: F32 F16 BF16 Q8_0 Q4_K Q5_K Q6_K)");
  }
  if (!dims_v.IsArray()) throw Napi::TypeError::New(env, "weightGather: dims must be an array");
  auto dims = dims_v.As<Napi::Array>();
  if (dims.Length() < 1 || dims.Length() > 4) throw Napi::RangeError::New(env, "weightGather: dims must have 1 to 4 entries");
  for (uint32_t i = 0; i < dims.Length(); ++i) {
    w.ne[i] = int_arg(dims.Get(i), int64_t(1) << 40, "weightGather: dims");
    if (w.ne[i] == 0) throw Napi::RangeError::New(env, "weightGather: dims must be positive");
  }
  // 2^48 elements bounds every byte count below away from overflow.
  double total = double(w.ne[0]) * double(w.ne[1]) * double(w.ne[2]) * double(w.ne[3]);
  if (total > double(int64_t(1) << 48)) throw Napi::RangeError::New(env, "weightGather: tensor is too large");
  try {
    w.row_bytes = row_bytes(w.type, w.ne[0]);
  } catch (const std::exception& e) {
    throw Napi::RangeError::New(env, std::string("weightGather: ") + e.what());
  }
}

// The mapped files of args[0] and the (fileIndex, offset, nBytes) triples of args[1], each range
// inside its file and together exactly `need` bytes. `files` keeps the mappings alive.
std::vector<Range> parse_ranges(const Napi::Value& files_a, const Napi::Value& ranges_a, const std::string& name, size_t need,
                                std::vector<std::shared_ptr<MappedFile>>& files) {
  Napi::Env env = files_a.Env();
  if (!files_a.IsArray()) throw Napi::TypeError::New(env, "weightGather: files must be an array of mapped-file handles");
  if (!ranges_a.IsArray()) throw Napi::TypeError::New(env, "weightGather: ranges must be an array of numbers");
  auto files_v = files_a.As<Napi::Array>();
  for (uint32_t i = 0; i < files_v.Length(); ++i) files.push_back(handle_get<MappedFile>(files_v.Get(i), HandleKind::mapped_file, "weightGather: files"));
  auto ranges_v = ranges_a.As<Napi::Array>();
  if (files.empty() || ranges_v.Length() == 0 || ranges_v.Length() % 3 != 0) {
    throw Napi::RangeError::New(env, "weightGather: " + name + ": expected files and non-empty (fileIndex, offset, nBytes) triples");
  }
  std::vector<Range> ranges;
  size_t given = 0;
  for (uint32_t r = 0; r < ranges_v.Length(); r += 3) {
    int64_t fi = int_arg(ranges_v.Get(r), int64_t(files.size()) - 1, "weightGather: fileIndex");
    int64_t off = int_arg(ranges_v.Get(r + 1), int64_t(1) << 52, "weightGather: offset");
    int64_t len = int_arg(ranges_v.Get(r + 2), int64_t(1) << 52, "weightGather: nBytes");
    const MappedFile& mf = *files[size_t(fi)];
    if (size_t(off) > mf.size || size_t(len) > mf.size - size_t(off)) {
      throw Napi::RangeError::New(env, mf.path + ": tensor " + name + ": range at byte " + std::to_string(off) + " of " +
                                           std::to_string(len) + " bytes ends past the file's " + std::to_string(mf.size) +
                                           " bytes; the file looks truncated");
    }
    // Compared before adding, so `given` never exceeds `need` and cannot overflow.
    if (size_t(len) > need - given) {
      throw Napi::RangeError::New(env, "weightGather: " + name + ": the ranges hold more than the " + std::to_string(need) +
                                           " bytes the shape needs");
    }
    ranges.push_back({&mf, size_t(off), size_t(len)});
    given += size_t(len);
  }
  if (given != need) {
    throw Napi::RangeError::New(env, "weightGather: " + name + ": the ranges hold " + std::to_string(given) +
                                         " bytes but the shape needs " + std::to_string(need));
  }
  return ranges;
}

std::shared_ptr<Buffer> alloc_buffer(Napi::Env env, size_t bytes, const std::string& name) {
  try {
    return std::make_shared<Buffer>(bytes);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "weightGather: " + name + ": cannot allocate " + std::to_string(bytes) + " bytes");
  }
}

// weightGather(files: MappedFile handles[], ranges: number[], type, dims, name): ranges holds
// triples (fileIndex, offset, nBytes); their concatenation is the tensor's bytes in ggml layout.
// `name` (the tensor) only labels errors. Checks everything before copying anything.
Napi::Value weight_gather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "(unnamed)";
  auto w = std::make_shared<Weight>();
  gather_shape(env, info[2], info[3], *w);
  std::vector<std::shared_ptr<MappedFile>> files;
  std::vector<Range> ranges = parse_ranges(info[0], info[1], name, w->bytes(), files);

  auto buf = alloc_buffer(env, w->bytes(), name);
  std::vector<CopyTask> tasks;
  size_t at = 0;
  for (const Range& r : ranges) {
    for (size_t done = 0; done < r.len; done += GATHER_CHUNK_BYTES) {
      tasks.push_back({r.file->data + r.offset + done, buf->data + at + done, std::min(GATHER_CHUNK_BYTES, r.len - done)});
    }
    at += r.len;
  }
  parallel_for(int64_t(tasks.size()), [&](int64_t i, int) { std::memcpy(tasks[size_t(i)].dst, tasks[size_t(i)].src, tasks[size_t(i)].len); });

  w->owner = buf;
  w->data = buf->data;
  return make_weight_handle(env, w);
}

// float8 e4m3fn (PyTorch float8_e4m3fn: bias 7, no infinities, 0x7f/0xff NaN) -> float, exact.
float fp8_e4m3_to_fp32(uint8_t b) {
  int exp = (b >> 3) & 0xF, man = b & 7;
  float mag = (b & 0x7F) == 0x7F ? NAN : exp == 0 ? std::ldexp(float(man), -9) : std::ldexp(float(8 + man), exp - 10);
  return (b & 0x80) ? -mag : mag;
}

// All 256 values, built once at load of the addon.
const struct Fp8Table {
  float v[256];
  Fp8Table() {
    for (int b = 0; b < 256; ++b) v[b] = fp8_e4m3_to_fp32(uint8_t(b));
  }
  float operator[](uint8_t b) const { return v[b]; }
} FP8_E4M3;

// weightGatherFp8(files, ranges, scales: Float32Array[], blockRows, blockCols, dims, name): a BF16
// weight from F8_E4M3 ranges. Range i is a [nBytes / dims[0], dims[0]] matrix whose element
// (r, c) is fp8 * scales[i][(r / blockRows) * ceil(dims[0] / blockCols) + c / blockCols], computed in
// float and rounded to BF16 (the same value `mixtile convert` writes).
Napi::Value weight_gather_fp8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[6].IsString() ? info[6].As<Napi::String>().Utf8Value() : "(unnamed)";
  auto w = std::make_shared<Weight>();
  gather_shape(env, Napi::Number::New(env, double(GgmlType::BF16)), info[5], *w);
  const size_t cols = size_t(w->ne[0]);
  const int64_t bh = int_arg(info[3], int64_t(1) << 30, "weightGatherFp8: blockRows");
  const int64_t bw = int_arg(info[4], int64_t(1) << 30, "weightGatherFp8: blockCols");
  if (bh == 0 || bw == 0) throw Napi::RangeError::New(env, "weightGatherFp8: " + name + ": block sizes must be positive");
  std::vector<std::shared_ptr<MappedFile>> files;
  std::vector<Range> ranges = parse_ranges(info[0], info[1], name, w->bytes() / 2, files);  // one source byte per BF16 element
  if (!info[2].IsArray() || info[2].As<Napi::Array>().Length() != ranges.size()) {
    throw Napi::TypeError::New(env, "weightGatherFp8: " + name + ": expected one Float32Array of scales per range");
  }
  const size_t nbc = (cols + size_t(bw) - 1) / size_t(bw);
  struct Job {
    const uint8_t* src;
    uint16_t* dst;
    const float* scales;
    size_t rows;
  };
  std::vector<Job> jobs;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const Range& r = ranges[i];
    if (r.len % cols != 0) {
      throw Napi::RangeError::New(env, "weightGatherFp8: " + name + ": range " + std::to_string(i) + " of " + std::to_string(r.len) +
                                           " bytes is not whole rows of " + std::to_string(cols));
    }
    size_t rows = r.len / cols;
    size_t nbr = (rows + size_t(bh) - 1) / size_t(bh);
    const float* sc = f32_array(info[2].As<Napi::Array>().Get(uint32_t(i)), nbr * nbc, "weightGatherFp8: scales");
    jobs.push_back({r.file->data + r.offset, nullptr, sc, rows});
  }

  auto buf = alloc_buffer(env, w->bytes(), name);
  // Tasks of up to 64 rows: enough per task to amortise the hand-out, small enough to balance.
  struct Task {
    const Job* job;
    size_t row0, rows;
  };
  std::vector<Task> tasks;
  size_t at = 0;
  for (Job& j : jobs) {
    j.dst = reinterpret_cast<uint16_t*>(buf->data) + at;
    for (size_t r = 0; r < j.rows; r += 64) tasks.push_back({&j, r, std::min<size_t>(64, j.rows - r)});
    at += j.rows * cols;
  }
  parallel_for(int64_t(tasks.size()), [&](int64_t t, int) {
    const Task& k = tasks[size_t(t)];
    for (size_t r = k.row0; r < k.row0 + k.rows; ++r) {
      const float* srow = k.job->scales + (r / size_t(bh)) * nbc;
      const uint8_t* in = k.job->src + r * cols;
      uint16_t* out = k.job->dst + r * cols;
      // Block by block, so the inner loop has one scale and no division.
      for (size_t c0 = 0, b = 0; c0 < cols; c0 += size_t(bw), ++b) {
        const float scale = srow[b];
        const size_t c1 = std::min(cols, c0 + size_t(bw));
        for (size_t c = c0; c < c1; ++c) out[c] = fp32_to_bf16(FP8_E4M3[in[c]] * scale);
      }
    }
  });

  w->owner = buf;
  w->data = buf->data;
  return make_weight_handle(env, w);
}

}  // namespace

MIXTILE_EXPORT("weightGather", weight_gather);
MIXTILE_EXPORT("weightGatherFp8", weight_gather_fp8);

}  // namespace mixtile
