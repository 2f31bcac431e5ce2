// Repack cache files: see repack-cache.h for the format and the settings.
#include "repack-cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <set>

namespace mixtile::repack_cache {

namespace {

constexpr char kMagic[8] = {'M', 'X', 'R', 'E', 'P', 'A', 'C', 'K'};
constexpr uint32_t kFormat = 1;
constexpr size_t kHeaderBytes = 4096;
constexpr size_t kKeyAt = 36, kHeaderHashAt = kHeaderBytes - 8;
constexpr size_t kMaxKey = kHeaderHashAt - kKeyAt;
constexpr size_t kSampleBytes = 64 * 1024;
// Free space the folder must keep after a write: a cache never fills the disk.
constexpr uint64_t kKeepFreeBytes = uint64_t(1) << 30;

uint64_t fnv1a(const void* p, size_t n, uint64_t h = 1469598103934665603ull) {
  const auto* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

// Checksum of the payload's first and last 64 KiB: catches a file cut short or overwritten at
// either end without reading gigabytes at every start.
uint64_t sample_hash(const uint8_t* p, size_t n) {
  const size_t head = n < kSampleBytes ? n : kSampleBytes;
  uint64_t h = fnv1a(p, head);
  const size_t tail = n - head < kSampleBytes ? n - head : kSampleBytes;
  return fnv1a(p + n - tail, tail, h);
}

template <class T>
void put(uint8_t* h, size_t at, T v) {
  std::memcpy(h + at, &v, sizeof v);
}
template <class T>
T get(const uint8_t* h, size_t at) {
  T v;
  std::memcpy(&v, h + at, sizeof v);
  return v;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Logs a message once per distinct text (a full disk would otherwise print for every tensor).
void log_once(const std::string& msg) {
  static std::mutex m;
  static std::set<std::string> seen;
  std::lock_guard<std::mutex> lk(m);
  if (seen.insert(msg).second) std::fprintf(stderr, "mixtile: repack cache: %s\n", msg.c_str());
}

bool mkdirs(const std::string& dir) {
  std::string cur;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || (dir[i] == '/' && i > 0)) {
      cur = dir.substr(0, i);
      if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) return false;
    }
  }
  struct stat st;
  return ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

struct Mapping {
  void* base;
  size_t len;
};

// Opens and validates a cache file. Returns the mapped payload, or nullptr with `why` set
// ("" when the file does not exist: a plain miss).
std::shared_ptr<uint8_t> open_valid(const std::string& path, const std::string& key, size_t payload_bytes,
                                    std::string* why) {
  why->clear();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) *why = std::string("cannot open: ") + std::strerror(errno);
    return nullptr;
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (fstat(fd, &st) != 0) {
    *why = std::string("cannot stat: ") + std::strerror(errno);
    return nullptr;
  }
  uint8_t h[kHeaderBytes];
  if (size_t(st.st_size) < kHeaderBytes || pread(fd, h, kHeaderBytes, 0) != ssize_t(kHeaderBytes)) {
    *why = "shorter than its header (" + std::to_string(st.st_size) + " bytes)";
    return nullptr;
  }
  if (std::memcmp(h, kMagic, sizeof kMagic) != 0) {
    *why = "not a repack cache file (bad magic)";
    return nullptr;
  }
  if (fnv1a(h, kHeaderHashAt) != get<uint64_t>(h, kHeaderHashAt)) {
    *why = "header checksum mismatch (corrupt)";
    return nullptr;
  }
  if (get<uint32_t>(h, 8) != kFormat || get<uint32_t>(h, 12) != kHeaderBytes) {
    *why = "cache format " + std::to_string(get<uint32_t>(h, 8)) + ", this build reads " + std::to_string(kFormat);
    return nullptr;
  }
  const uint32_t key_len = get<uint32_t>(h, 32);
  if (key_len > kMaxKey || std::string(reinterpret_cast<const char*>(h + kKeyAt), key_len) != key) {
    *why = "stale (written for another source file version or layout)";
    return nullptr;
  }
  if (get<uint64_t>(h, 16) != payload_bytes) {
    *why = "payload size " + std::to_string(get<uint64_t>(h, 16)) + " differs from the expected " +
           std::to_string(payload_bytes);
    return nullptr;
  }
  if (uint64_t(st.st_size) != kHeaderBytes + payload_bytes) {
    *why = "file is " + std::to_string(st.st_size) + " bytes, expected " +
           std::to_string(kHeaderBytes + payload_bytes) + " (truncated)";
    return nullptr;
  }
  const size_t len = kHeaderBytes + payload_bytes;
  void* base = mmap(nullptr, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (base == MAP_FAILED) {
    *why = std::string("mmap failed: ") + std::strerror(errno);
    return nullptr;
  }
  auto* payload = static_cast<uint8_t*>(base) + kHeaderBytes;
  if (sample_hash(payload, payload_bytes) != get<uint64_t>(h, 24)) {
    munmap(base, len);
    *why = "payload checksum mismatch (corrupt)";
    return nullptr;
  }
  Mapping m{base, len};
  return std::shared_ptr<uint8_t>(payload, [m](uint8_t*) { munmap(m.base, m.len); });
}

bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n > (size_t(1) << 26) ? (size_t(1) << 26) : n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= size_t(w);
  }
  return true;
}

// Writes header + payload to a temporary file in dir, then renames it to path. Logs and returns
// false on any failure (the temporary file is removed).
bool write_file(const std::string& dir, const std::string& path, const std::string& key, const uint8_t* payload,
                size_t payload_bytes) {
  if (!mkdirs(dir)) {
    log_once("cannot create " + dir + ": " + std::strerror(errno) + "; repacked weights are not cached");
    return false;
  }
  struct statvfs vs;
  if (statvfs(dir.c_str(), &vs) == 0) {
    const uint64_t free_bytes = uint64_t(vs.f_bavail) * vs.f_frsize;
    if (free_bytes < kHeaderBytes + payload_bytes + kKeepFreeBytes) {
      log_once("not enough free space in " + dir + " (" + std::to_string(free_bytes >> 20) + " MiB free, " +
               std::to_string((payload_bytes >> 20) + 1024) + " MiB needed); some repacked weights are not cached");
      return false;
    }
  }
  static std::atomic<int> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    log_once("cannot write in " + dir + ": " + std::strerror(errno) + "; repacked weights are not cached");
    return false;
  }
  uint8_t h[kHeaderBytes] = {};
  std::memcpy(h, kMagic, sizeof kMagic);
  put<uint32_t>(h, 8, kFormat);
  put<uint32_t>(h, 12, uint32_t(kHeaderBytes));
  put<uint64_t>(h, 16, payload_bytes);
  put<uint64_t>(h, 24, sample_hash(payload, payload_bytes));
  put<uint32_t>(h, 32, uint32_t(key.size()));
  std::memcpy(h + kKeyAt, key.data(), key.size());
  put<uint64_t>(h, kHeaderHashAt, fnv1a(h, kHeaderHashAt));
  bool ok = write_all(fd, h, kHeaderBytes) && write_all(fd, payload, payload_bytes);
  const int err = errno;
  ok = (::close(fd) == 0) && ok;
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) ok = false;
  if (!ok) {
    ::unlink(tmp.c_str());
    log_once("writing " + path + " failed: " + std::strerror(err ? err : errno) + "; repacked weights are not cached");
  }
  return ok;
}

std::mutex totals_mutex;
Totals totals;
std::atomic<bool> pending{false};

void note(const Result& r, double source_bytes, size_t payload_bytes, const std::string& dir) {
  std::lock_guard<std::mutex> lk(totals_mutex);
  ++totals.tensors;
  switch (r.outcome) {
    case Outcome::hit: ++totals.hits; break;
    case Outcome::written: ++totals.written; break;
    case Outcome::rebuilt: ++totals.rebuilt; break;
    case Outcome::write_failed: ++totals.write_failed; break;
    default: ++totals.uncached; break;
  }
  totals.source_bytes += source_bytes;
  totals.packed_bytes += double(payload_bytes);
  totals.build_s += r.build_s;
  totals.write_s += r.write_s;
  totals.open_s += r.open_s;
  if (!dir.empty()) totals.dir = dir;
  pending = true;
}

std::string hex64(uint64_t v) {
  char b[17];
  std::snprintf(b, sizeof b, "%016" PRIx64, v);
  return b;
}

}  // namespace

SourceId source_identity(const void* p, size_t bytes) {
  SourceId id;
  const auto addr = reinterpret_cast<uintptr_t>(p);
  FILE* f = std::fopen("/proc/self/maps", "re");
  if (!f) return id;
  char line[4096 + 256];
  while (std::fgets(line, sizeof line, f)) {
    uintptr_t start = 0, end = 0;
    unsigned long long off = 0, inode = 0;
    unsigned dev_major = 0, dev_minor = 0;
    char perms[8];
    int path_at = 0;
    if (std::sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s %llx %x:%x %llu %n", &start, &end, perms, &off, &dev_major,
                    &dev_minor, &inode, &path_at) < 7) {
      continue;
    }
    if (addr < start || addr >= end) continue;
    std::string path(line + path_at);
    while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.pop_back();
    if (inode == 0 || path.empty() || path[0] != '/') break;  // anonymous or special mapping
    const unsigned long long file_off = off + (addr - start);
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (unsigned long long)st.st_ino != inode ||
        file_off + bytes > (unsigned long long)st.st_size) {
      break;  // deleted, replaced or shorter than the view: not the bytes we map
    }
    id.place = path + "@" + std::to_string(file_off);
    id.version = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
                 std::to_string(int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
    break;
  }
  std::fclose(f);
  return id;
}

Settings settings() {
  Settings s;
  const char* on = std::getenv("MIXTILE_REPACK_CACHE");
  if (on && (!std::strcmp(on, "0") || !std::strcmp(on, "off") || !std::strcmp(on, "false"))) s.enabled = false;
  const char* dir = std::getenv("MIXTILE_REPACK_CACHE_DIR");
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  if (dir && *dir) {
    s.dir = dir;
  } else if (xdg && *xdg) {
    s.dir = std::string(xdg) + "/mixtile/repack";
  } else if (home && *home) {
    s.dir = std::string(home) + "/.cache/mixtile/repack";
  }
  if (s.dir.empty()) s.enabled = false;
  return s;
}

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::off: return "off";
    case Outcome::no_source: return "no-source";
    case Outcome::hit: return "hit";
    case Outcome::written: return "written";
    case Outcome::rebuilt: return "rebuilt";
    case Outcome::write_failed: return "write-failed";
  }
  return "?";
}

Result obtain(const std::string& slot, const std::string& key, size_t payload_bytes, double source_bytes,
              const std::function<void(uint8_t* dst)>& fill) {
  Result r;
  const Settings s = settings();
  bool cached = s.enabled && !key.empty();
  if (cached && key.size() > kMaxKey) {
    log_once("key of " + std::to_string(key.size()) + " bytes is too long to store; not cached");
    cached = false;
  }
  r.outcome = !s.enabled ? Outcome::off : Outcome::no_source;
  std::string why;
  if (cached) {
    r.path = s.dir + "/" + hex64(fnv1a(slot.data(), slot.size())) + ".mxrp";
    const auto t = std::chrono::steady_clock::now();
    r.data = open_valid(r.path, key, payload_bytes, &why);
    r.open_s = seconds_since(t);
    if (r.data) {
      r.outcome = Outcome::hit;
      note(r, source_bytes, payload_bytes, s.dir);
      return r;
    }
    if (!why.empty()) std::fprintf(stderr, "mixtile: repack cache: %s: %s; rebuilding it\n", r.path.c_str(), why.c_str());
  }
  void* mem = std::aligned_alloc(64, (payload_bytes + 63) / 64 * 64 + 64);
  if (!mem) throw std::bad_alloc();
  r.data = std::shared_ptr<uint8_t>(static_cast<uint8_t*>(mem), [](uint8_t* p) { std::free(p); });
  auto t = std::chrono::steady_clock::now();
  fill(r.data.get());
  r.build_s = seconds_since(t);
  if (cached) {
    t = std::chrono::steady_clock::now();
    const bool ok = write_file(s.dir, r.path, key, r.data.get(), payload_bytes);
    r.write_s = seconds_since(t);
    r.outcome = !ok ? Outcome::write_failed : why.empty() ? Outcome::written : Outcome::rebuilt;
  }
  note(r, source_bytes, payload_bytes, cached ? s.dir : "");
  return r;
}

Totals take_totals() {
  std::lock_guard<std::mutex> lk(totals_mutex);
  Totals t = totals;
  totals = Totals{};
  pending = false;
  return t;
}

std::string summary(const Totals& t) {
  if (t.tensors == 0) return "";
  char b[1024];
  const int built = t.tensors - t.hits;
  std::string s = "repacked weights for " + std::to_string(t.tensors) + " tensors (" +
                  (std::snprintf(b, sizeof b, "%.2f GB", t.packed_bytes / 1e9), b) + ")";
  if (built > 0) {
    const double src = t.source_bytes * double(built) / double(t.tensors);  // approx. when mixed with hits
    std::snprintf(b, sizeof b, "; repack of %d: %.2f s (%.2f s per GB of source, %.2f GB/s)", built, t.build_s,
                  src > 0 ? t.build_s / (src / 1e9) : 0.0, t.build_s > 0 ? src / 1e9 / t.build_s : 0.0);
    s += b;
  }
  if (t.hits > 0) {
    std::snprintf(b, sizeof b, "; repack cache hit for %d, mapped in %.2f s", t.hits, t.open_s);
    s += b;
  }
  if (t.written + t.rebuilt > 0) {
    std::snprintf(b, sizeof b, "; cache written for %d (%d replacing invalid files) in %.2f s", t.written + t.rebuilt,
                  t.rebuilt, t.write_s);
    s += b;
  }
  if (t.write_failed > 0) s += "; cache write failed for " + std::to_string(t.write_failed);
  if (t.uncached > 0) s += "; not cached: " + std::to_string(t.uncached);
  if (!t.dir.empty()) s += " [" + t.dir + "]";
  return s;
}

void report_pending() {
  if (!pending.load(std::memory_order_relaxed)) return;
  const std::string s = summary(take_totals());
  if (!s.empty()) std::fprintf(stderr, "mixtile: %s\n", s.c_str());
}

}  // namespace mixtile::repack_cache
