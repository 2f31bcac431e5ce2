// Type table, row sizes, mmapped files and aligned buffers (see tensor.h).
#include "tensor.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <new>

namespace mixtile {

TypeTraits type_traits(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return {1, 4, "F32"};
    case GgmlType::F16: return {1, 2, "F16"};
    case GgmlType::BF16: return {1, 2, "BF16"};
    case GgmlType::Q8_0: return {QK8_0, int(sizeof(block_q8_0)), "Q8_0"};
    case GgmlType::Q4_K: return {QK_K, int(sizeof(block_q4_K)), "Q4_K"};
    case GgmlType::Q5_K: return {QK_K, int(sizeof(block_q5_K)), "Q5_K"};
    case GgmlType::Q6_K: return {QK_K, int(sizeof(block_q6_K)), "Q6_K"};
    case GgmlType::Q8_K: return {QK_K, int(sizeof(block_q8_K)), "Q8_K"};
    default: return {0, 0, "unsupported"};
  }
}

bool type_supported(GgmlType t) {
  switch (t) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q8_0:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K: return true;
    default: return false;
  }
}

size_t row_bytes(GgmlType t, int64_t n) {
  TypeTraits tt = type_traits(t);
  if (tt.block_size == 0) {
    throw std::invalid_argument("ggml type " + std::to_string(int(t)) + " is not supported by the native kernels");
  }
  if (n <= 0 || n % tt.block_size != 0) {
    throw std::invalid_argument(std::string(tt.name) + " rows must be a positive multiple of " +
                                std::to_string(tt.block_size) + " elements, got " + std::to_string(n));
  }
  return size_t(n / tt.block_size) * size_t(tt.block_bytes);
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error(path + ": cannot stat: " + std::strerror(e));
  }
  auto mf = std::make_shared<MappedFile>();
  mf->path = path;
  mf->size = size_t(st.st_size);
  if (mf->size > 0) {
    void* p = mmap(nullptr, mf->size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw std::runtime_error(path + ": mmap failed: " + std::strerror(e));
    }
    mf->data = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file referenced
  return mf;
}

void MappedFile::advise(size_t offset, size_t len, int advice) const {
  if (!data || offset >= size) return;
  size_t page = size_t(sysconf(_SC_PAGESIZE));
  size_t start = offset / page * page;
  size_t end = std::min(size, offset + len);
  madvise(const_cast<uint8_t*>(data) + start, end - start, advice);
}

MappedFile::~MappedFile() {
  if (data) munmap(const_cast<uint8_t*>(data), size);
}

Buffer::Buffer(size_t bytes) : size(bytes) {
  size_t rounded = (bytes + 63) / 64 * 64;
  data = static_cast<uint8_t*>(std::aligned_alloc(64, rounded == 0 ? 64 : rounded));
  if (!data) throw std::bad_alloc();
}

Buffer::~Buffer() { std::free(data); }

}  // namespace mixtile
