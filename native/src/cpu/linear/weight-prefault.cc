// See weight-prefault.h.
#include "cpu/linear/weight-prefault.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14; older kernels answer EINVAL and pages stay lazy
#endif

namespace mixtile {

void weight_prefault(const Weight& w) {
  static const bool enabled = [] {
    const char* e = std::getenv("MIXTILE_PREFAULT");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  static const size_t budget = size_t(sysconf(_SC_PHYS_PAGES)) / 4 * 3 * size_t(sysconf(_SC_PAGESIZE));
  static std::atomic<size_t> populated{0};
  const size_t bytes = w.bytes();
  if (!enabled || !w.data || bytes == 0) return;
  if (populated.fetch_add(bytes, std::memory_order_relaxed) + bytes > budget) return;
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  uintptr_t start = reinterpret_cast<uintptr_t>(w.data) / page * page;
  uintptr_t end = reinterpret_cast<uintptr_t>(w.data) + bytes;
  madvise(reinterpret_cast<void*>(start), end - start, MADV_POPULATE_READ);
}

}  // namespace mixtile
