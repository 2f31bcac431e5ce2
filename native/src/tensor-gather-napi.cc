// weightGather: one weight assembled from several byte ranges of mapped files into one owned,
// 64-byte-aligned Buffer. Hugging Face folders store each expert as its own tensor, while the
// kernels take one [experts, rows, cols] weight; a view into the mapping cannot span them.
// Handles and the Weight/Buffer types come from napi-util.h and tensor.h.
#include <algorithm>
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

// weightGather(files: MappedFile handles[], ranges: number[], type, dims, name): ranges holds
// triples (fileIndex, offset, nBytes); their concatenation is the tensor's bytes in ggml layout.
// `name` (the tensor) only labels errors. Checks everything before copying anything.
Napi::Value weight_gather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "weightGather: files must be an array of mapped-file handles");
  if (!info[1].IsArray()) throw Napi::TypeError::New(env, "weightGather: ranges must be an array of numbers");
  std::string name = info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "(unnamed)";
  auto files_v = info[0].As<Napi::Array>();
  std::vector<std::shared_ptr<MappedFile>> files;
  for (uint32_t i = 0; i < files_v.Length(); ++i) files.push_back(handle_get<MappedFile>(files_v.Get(i), HandleKind::mapped_file, "weightGather: files"));

  auto w = std::make_shared<Weight>();
  gather_shape(env, info[2], info[3], *w);
  const size_t need = w->bytes();

  auto ranges_v = info[1].As<Napi::Array>();
  if (files.empty() || ranges_v.Length() == 0 || ranges_v.Length() % 3 != 0) {
    throw Napi::RangeError::New(env, "weightGather: " + name + ": expected files and non-empty (fileIndex, offset, nBytes) triples");
  }
  struct Range {
    const MappedFile* file;
    size_t offset, len;
  };
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

  std::shared_ptr<Buffer> buf;
  try {
    buf = std::make_shared<Buffer>(need);
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "weightGather: " + name + ": cannot allocate " + std::to_string(need) + " bytes");
  }
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

}  // namespace

MIXTILE_EXPORT("weightGather", weight_gather);

}  // namespace mixtile
