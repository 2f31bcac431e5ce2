// Host-to-device bandwidth the GPU experts path can get (issue 9 item 6), in expert-sized copies
// (3 MiB) on one stream: from a read-only MAP_SHARED file mapping pinned with mxc_host_register (as
// GpuExpertWeights pins a GGUF's expert tensors; does the driver accept a read-only mapping?), from
// cudaHostAlloc'd memory, and from pageable memory. Usage: h2d-mmap-check [MiB=512] [file=/tmp/h2d-check.bin]
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "host-util.h"

using namespace mxt;

static double h2d_gbps(void* dev, const uint8_t* src, size_t bytes, mxc_stream* s) {
  const size_t chunk = size_t(3) << 20;
  mxc_event *a, *b;
  MXT_CHECK(mxc_event_create(&a, 1));
  MXT_CHECK(mxc_event_create(&b, 1));
  float best = 1e30f;
  for (int rep = 0; rep < 3; ++rep) {
    MXT_CHECK(mxc_event_record(a, s));
    for (size_t off = 0; off < bytes; off += chunk)
      MXT_CHECK(mxc_memcpy_h2d(static_cast<uint8_t*>(dev) + (off / chunk % 16) * chunk, src + off,
                               std::min(chunk, bytes - off), s));
    MXT_CHECK(mxc_event_record(b, s));
    MXT_CHECK(mxc_event_sync(b));
    float ms = 0;
    MXT_CHECK(mxc_event_elapsed_ms(a, b, &ms));
    best = std::min(best, ms);
  }
  mxc_event_destroy(a);
  mxc_event_destroy(b);
  return bytes / (best * 1e6);
}

int main(int argc, char** argv) {
  const size_t bytes = size_t(argc > 1 ? std::atol(argv[1]) : 512) << 20;
  const std::string path = argc > 2 ? argv[2] : "/tmp/h2d-check.bin";
  int n = 0;
  if (mxc_device_count(&n) != MXC_OK || n == 0) {
    std::printf("SKIP: no CUDA device: %s\n", mxc_last_error());
    return 0;
  }
  {  // a file of page-unique bytes
    std::vector<uint8_t> buf(size_t(1) << 20);
    int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0) return std::perror("open"), 1;
    for (size_t off = 0; off < bytes; off += buf.size()) {
      for (size_t i = 0; i < buf.size(); i += 8) std::memcpy(&buf[i], &off, 8), buf[i] ^= uint8_t(i);
      if (write(fd, buf.data(), buf.size()) != ssize_t(buf.size())) return std::perror("write"), 1;
    }
    close(fd);
  }
  int fd = open(path.c_str(), O_RDONLY);
  auto* map = static_cast<uint8_t*>(mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0));
  if (map == MAP_FAILED) return std::perror("mmap"), 1;
  mxc_stream* s;
  MXT_CHECK(mxc_stream_create(&s));
  Dev dev(size_t(64) << 20);
  std::printf("h2d in 3 MiB copies, %zu MiB, best of 3:\n", bytes >> 20);
  std::printf("  read-only mmap, not registered (pageable): %.1f GB/s\n", h2d_gbps(dev.p, map, bytes, s));
  mxc_status st = mxc_host_register(map, bytes);
  if (st == MXC_OK) {
    std::printf("  read-only mmap, mxc_host_register OK:      %.1f GB/s\n", h2d_gbps(dev.p, map, bytes, s));
    MXT_CHECK(mxc_host_unregister(map));
  } else {
    std::printf("  read-only mmap, mxc_host_register REFUSED: %s\n", mxc_last_error());
  }
  void* pinned;
  MXT_CHECK(mxc_host_alloc(&pinned, bytes));
  std::memcpy(pinned, map, bytes);
  std::printf("  cudaHostAlloc:                              %.1f GB/s\n",
              h2d_gbps(dev.p, static_cast<uint8_t*>(pinned), bytes, s));
  MXT_CHECK(mxc_host_free(pinned));
  munmap(map, bytes);
  close(fd);
  unlink(path.c_str());
  MXT_CHECK(mxc_stream_destroy(s));
  return 0;
}
