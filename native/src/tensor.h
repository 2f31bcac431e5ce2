// Native tensors: ggml type ids and block layouts, mmapped files, aligned buffers, and the
// Weight view every kernel takes. N-API helpers for handles live in napi-util.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

namespace mixtile {

// Ids exactly as ggml numbers them (ggml.h enum ggml_type); same values as src/formats/ggml-types.ts.
enum class GgmlType : int32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

constexpr int QK8_0 = 32;   // elements per Q8_0 block
constexpr int QK_K = 256;   // elements per K-quant super-block
constexpr int K_SCALE_SIZE = 12;

#pragma pack(push, 1)
// ggml block layouts (ggml-common.h). fp16 fields are raw IEEE half bits.
struct block_q8_0 {
  uint16_t d;          // scale (fp16)
  int8_t qs[QK8_0];    // x[i] = d * qs[i]
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");

// 8 sub-blocks of 32; scales/mins are 6-bit, packed in `scales` (see get_scale_min_k4).
// qs: 4 chunks of 32 bytes; chunk j holds elements [64j, 64j+32) in low nibbles and
// [64j+32, 64j+64) in high nibbles.  x = d * sc * q - dmin * m.
struct block_q4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");

// As Q4_K plus a 5th bit per element: bit (2j + hi) of qh[l] for element 64j + 32*hi + l.
struct block_q5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};
static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");

// 16 sub-blocks of 16 with int8 scales; 6-bit quants (4 low bits in ql, 2 high bits in qh),
// x = d * scales[s] * (q - 32).
struct block_q6_K {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  uint16_t d;
};
static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");

// Activation blocks for K-quant dot products: x = d * qs; bsums[i] = sum of qs[16i .. 16i+16).
struct block_q8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];
};
static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");
#pragma pack(pop)

// Unpacks the 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block (ggml get_scale_min_k4).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

// IEEE half <-> float without F16C (the scalar path must run on any x86-64).
inline float fp16_to_fp32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        mant <<= 1;
        ++e;
      } while ((mant & 0x400) == 0);
      bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3FF) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even float -> half.
inline uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t ax = x & 0x7FFFFFFF;
  if (ax >= 0x7F800000) return uint16_t(sign | 0x7C00 | (ax > 0x7F800000 ? 0x200 : 0));
  if (ax >= 0x477FF000) return uint16_t(sign | 0x7C00);  // overflow -> inf
  if (ax < 0x38800000) {                                    // subnormal or zero half
    if (ax < 0x33000000) return uint16_t(sign);
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7FFFFF) | 0x800000;
    uint32_t shift = 126 - e;  // half subnormal unit is 2^-24: r = m * 2^(e - 150 + 24)
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = ax - 0x38000000;  // rebias exponent 127 -> 15 (in float bit positions)
  uint32_t h = r >> 13;
  uint32_t rem = r & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;
  return uint16_t(sign | h);
}

inline float bf16_to_fp32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even float -> bf16 (NaN stays NaN), as ggml_compute_fp32_to_bf16.
inline uint16_t fp32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return uint16_t((x >> 16) | 64);
  return uint16_t((x + (0x7FFF + ((x >> 16) & 1))) >> 16);
}

// Block size (elements) and bytes per block of the types the kernels handle; 0 for others.
struct TypeTraits {
  int block_size;
  int block_bytes;
  const char* name;
};
TypeTraits type_traits(GgmlType t);
// True for the weight types the kernels implement (F32 F16 BF16 Q8_0 Q4_K Q5_K Q6_K).
bool type_supported(GgmlType t);
// Bytes of one row of `n` elements; throws std::invalid_argument if n is not a whole number of blocks.
size_t row_bytes(GgmlType t, int64_t n);

// A read-only mmap of a whole file (MAP_SHARED: the page cache is shared, never copied).
// Owned through shared_ptr so weights that point into it keep it mapped.
struct MappedFile {
  std::string path;
  const uint8_t* data = nullptr;
  size_t size = 0;
  // Throws std::runtime_error with the path and errno text on failure.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  // Hints the kernel about a byte range (MADV_WILLNEED / MADV_RANDOM ...); errors are ignored.
  void advise(size_t offset, size_t len, int advice) const;
  ~MappedFile();
};

// An owned, 64-byte-aligned, uninitialised allocation (repacked weights, scratch).
struct Buffer {
  uint8_t* data = nullptr;
  size_t size = 0;
  explicit Buffer(size_t bytes);  // throws std::bad_alloc
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// How a weight's bytes are arranged. as_in_file = ggml row-major rows of `row_bytes`.
enum class Layout : int32_t {
  as_in_file = 0,
};

// A view of weight bytes plus what keeps them alive (a MappedFile or a Buffer).
// ne in ggml order: ne[0] = row length (elements), ne[1] = rows, ne[2] = experts (3-D), ne[3] = 1.
struct Weight {
  std::shared_ptr<void> owner;
  const uint8_t* data = nullptr;
  GgmlType type = GgmlType::F32;
  int64_t ne[4] = {1, 1, 1, 1};
  size_t row_bytes = 0;
  Layout layout = Layout::as_in_file;

  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  size_t bytes() const { return row_bytes * size_t(rows()); }
  // Bytes of one 2-D slice (one expert of a 3-D tensor).
  size_t matrix_bytes() const { return row_bytes * size_t(ne[1]); }
};

}  // namespace mixtile
