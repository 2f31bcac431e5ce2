// JS exports for mapped files and weight handles: mappedFileOpen/Size/Close, weightFromFile,
// weightFromBytes (tests, synthetic weights), weightDispose, dequantizeRows.
#include <sys/mman.h>

#include "cpu/dequant/dequant.h"
#include "napi-registry.h"
#include "napi-util.h"

namespace mixtile {
namespace {

Napi::Value mapped_file_open(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "mappedFileOpen: expected a path string");
  std::shared_ptr<MappedFile> mf;
  try {
    mf = MappedFile::open(info[0].As<Napi::String>().Utf8Value());
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
  return make_handle<MappedFile>(info.Env(), HandleKind::mapped_file, mf);
}

Napi::Value mapped_file_size(const Napi::CallbackInfo& info) {
  auto mf = handle_get<MappedFile>(info[0], HandleKind::mapped_file, "mappedFileSize");
  return Napi::Number::New(info.Env(), double(mf->size));
}

// mappedFileAdvise(file, offset, length, advice): madvise over a byte range, advice one of
// "willneed" (prefetch tensors about to be used), "random" (no readahead: experts are read
// sparsely), "sequential", "dontneed" (drop pages of tensors moved elsewhere, e.g. to the GPU).
Napi::Value mapped_file_advise(const Napi::CallbackInfo& info) {
  auto mf = handle_get<MappedFile>(info[0], HandleKind::mapped_file, "mappedFileAdvise");
  int64_t offset = int_arg(info[1], int64_t(1) << 52, "mappedFileAdvise: offset");
  int64_t len = int_arg(info[2], int64_t(1) << 52, "mappedFileAdvise: length");
  if (!info[3].IsString()) throw Napi::TypeError::New(info.Env(), "mappedFileAdvise: advice must be a string");
  std::string a = info[3].As<Napi::String>().Utf8Value();
  int advice;
  if (a == "willneed") advice = MADV_WILLNEED;
  else if (a == "random") advice = MADV_RANDOM;
  else if (a == "sequential") advice = MADV_SEQUENTIAL;
  else if (a == "dontneed") advice = MADV_DONTNEED;
  else throw Napi::RangeError::New(info.Env(), "mappedFileAdvise: unknown advice \"" + a + "\" (willneed, random, sequential, dontneed)");
  mf->advise(size_t(offset), size_t(len), advice);
  return info.Env().Undefined();
}

Napi::Value mapped_file_close(const Napi::CallbackInfo& info) {
  handle_arg<MappedFile>(info[0], HandleKind::mapped_file, "mappedFileClose")->ptr.reset();
  return info.Env().Undefined();
}

// Reads dims (ggml order, 1..4 entries) and checks type + row length; fills w.ne/type/row_bytes.
void parse_shape(const Napi::CallbackInfo& info, int type_arg, int dims_arg, Weight& w, const char* fn) {
  Napi::Env env = info.Env();
  int64_t type = int_arg(info[type_arg], 1000, fn);
  w.type = GgmlType(type);
  if (!type_supported(w.type)) {
    throw Napi::TypeError::New(env, std::string(fn) + ": ggml type " + std::to_string(type) +
                                        " is not supported (supported: F32 F16 BF16 Q8_0 Q4_K Q5_K Q6_K)");
  }
  if (!info[dims_arg].IsArray()) throw Napi::TypeError::New(env, std::string(fn) + ": dims must be an array");
  auto dims = info[dims_arg].As<Napi::Array>();
  if (dims.Length() < 1 || dims.Length() > 4) {
    throw Napi::RangeError::New(env, std::string(fn) + ": dims must have 1 to 4 entries");
  }
  for (uint32_t i = 0; i < dims.Length(); ++i) {
    w.ne[i] = int_arg(dims.Get(i), int64_t(1) << 40, fn);
    if (w.ne[i] == 0) throw Napi::RangeError::New(env, std::string(fn) + ": dims must be positive");
  }
  // Bound the total so byte counts below cannot overflow (2^48 elements is far beyond any model).
  double total = double(w.ne[0]) * double(w.ne[1]) * double(w.ne[2]) * double(w.ne[3]);
  if (total > double(int64_t(1) << 48)) {
    throw Napi::RangeError::New(env, std::string(fn) + ": tensor of " + std::to_string(total) + " elements is too large");
  }
  try {
    w.row_bytes = row_bytes(w.type, w.ne[0]);
  } catch (const std::exception& e) {
    throw Napi::RangeError::New(env, std::string(fn) + ": " + e.what());
  }
}

// weightFromFile(file, offset, type, dims): a view into the mapping; keeps the mapping alive.
Napi::Value weight_from_file(const Napi::CallbackInfo& info) {
  auto mf = handle_get<MappedFile>(info[0], HandleKind::mapped_file, "weightFromFile");
  int64_t offset = int_arg(info[1], int64_t(1) << 52, "weightFromFile: offset");
  auto w = std::make_shared<Weight>();
  parse_shape(info, 2, 3, *w, "weightFromFile");
  size_t need = w->bytes();
  if (size_t(offset) > mf->size || need > mf->size - size_t(offset)) {
    throw Napi::RangeError::New(info.Env(), mf->path + ": tensor at byte " + std::to_string(offset) + " needs " +
                                                std::to_string(need) + " bytes but the file has " +
                                                std::to_string(mf->size) + "; the file looks truncated");
  }
  w->owner = mf;
  w->data = mf->data + offset;
  return make_weight_handle(info.Env(), w);
}

// weightFromBytes(bytes: Uint8Array, type, dims): copies into an aligned native buffer.
Napi::Value weight_from_bytes(const Napi::CallbackInfo& info) {
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(info.Env(), "weightFromBytes: expected a Uint8Array");
  }
  auto bytes = info[0].As<Napi::Uint8Array>();
  auto w = std::make_shared<Weight>();
  parse_shape(info, 1, 2, *w, "weightFromBytes");
  if (bytes.ByteLength() != w->bytes()) {
    throw Napi::RangeError::New(info.Env(), "weightFromBytes: shape needs " + std::to_string(w->bytes()) +
                                                " bytes, got " + std::to_string(bytes.ByteLength()));
  }
  auto buf = std::make_shared<Buffer>(w->bytes());
  std::memcpy(buf->data, bytes.Data(), w->bytes());
  w->owner = buf;
  w->data = buf->data;
  return make_weight_handle(info.Env(), w);
}

Napi::Value weight_dispose(const Napi::CallbackInfo& info) {
  handle_arg<Weight>(info[0], HandleKind::weight, "weightDispose")->ptr.reset();
  return info.Env().Undefined();
}

// dequantizeRows(weight, row0, nRows): F32 copy of rows [row0, row0 + nRows) (rows over all dims).
Napi::Value dequantize_rows(const Napi::CallbackInfo& info) {
  auto w = weight_arg(info[0], "dequantizeRows");
  int64_t row0 = int_arg(info[1], w->rows(), "dequantizeRows: row0");
  int64_t n = int_arg(info[2], w->rows() - row0, "dequantizeRows: nRows");
  auto out = Napi::Float32Array::New(info.Env(), size_t(n * w->ne[0]));
  for (int64_t r = 0; r < n; ++r) {
    dequantize_row(w->type, w->data + size_t(row0 + r) * w->row_bytes, out.Data() + r * w->ne[0], w->ne[0]);
  }
  return out;
}

}  // namespace

MIXTILE_EXPORT("mappedFileOpen", mapped_file_open);
MIXTILE_EXPORT("mappedFileSize", mapped_file_size);
MIXTILE_EXPORT("mappedFileClose", mapped_file_close);
MIXTILE_EXPORT("mappedFileAdvise", mapped_file_advise);
MIXTILE_EXPORT("weightFromFile", weight_from_file);
MIXTILE_EXPORT("weightFromBytes", weight_from_bytes);
MIXTILE_EXPORT("weightDispose", weight_dispose);
MIXTILE_EXPORT("dequantizeRows", dequantize_rows);

}  // namespace mixtile
