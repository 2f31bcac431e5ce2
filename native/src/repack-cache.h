// On-disk cache of repacked weights (AMX panels today): a repack done once is written to a cache
// file and mmapped on the next start instead of being rebuilt. Format-agnostic: the caller hands a
// key (which names the source bytes' identity, the target layout and its version) and a payload
// size; this file stores and validates the bytes, nothing about their layout.
//
// File: a 4096-byte header (magic, format version, payload size, key, checksums of the header and
// of the payload's first and last 64 KiB), then the payload (page-aligned, so 64-byte aligned when
// mapped). Written to NAME.tmp.PID.N and renamed, so a reader never sees a half-written file; a
// file whose header, size, key or sampled checksum does not match is rebuilt with a log line.
// The file name comes from a `slot` (source place + target, without the source's size and mtime),
// so a changed source file overwrites its old cache file instead of adding one.
//
// Settings (read on every call, so a process may change them): MIXTILE_REPACK_CACHE=0 turns the
// cache off; MIXTILE_REPACK_CACHE_DIR picks the folder (default $XDG_CACHE_HOME/mixtile/repack,
// else $HOME/.cache/mixtile/repack).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace mixtile::repack_cache {

// Where the bytes at [p, p + bytes) come from, when they lie in a mapping of a regular file
// (found in /proc/self/maps, checked against stat). Empty fields when they do not (a native
// buffer, a deleted or replaced file): then there is nothing to key a cache on.
struct SourceId {
  std::string place;    // "path@offset": stable while the file keeps its name
  std::string version;  // "dev:inode:size:mtime_ns": changes when the file is rewritten
  bool ok() const { return !place.empty(); }
};
SourceId source_identity(const void* p, size_t bytes);

struct Settings {
  bool enabled = true;
  std::string dir;  // empty when no folder can be named (no HOME): then the cache is off
};
Settings settings();

enum class Outcome {
  off,          // MIXTILE_REPACK_CACHE=0 (or no folder): built in memory
  no_source,    // empty key (source not in a file): built in memory
  hit,          // mapped from a valid cache file
  written,      // built, then written to the cache
  rebuilt,      // a cache file was invalid or stale (logged): built and rewritten
  write_failed  // built; writing the cache failed (logged)
};
const char* outcome_name(Outcome o);

struct Result {
  std::shared_ptr<uint8_t> data;  // payload_bytes, 64-byte aligned; keeps the mapping / buffer alive
  Outcome outcome = Outcome::off;
  double build_s = 0;  // fill() time (0 on a hit)
  double write_s = 0;  // cache write time
  double open_s = 0;   // cache open + validate + map time
  std::string path;    // cache file (empty when off / no source)
};

// The payload for `key`: mapped (MAP_POPULATE) from the cache file named by `slot` when it is
// valid and holds this key, else built by fill(dst) into a fresh 64-byte-aligned buffer and
// written there. Empty key = no cache. Cache problems (unwritable folder, full disk, corrupt file)
// are logged to stderr and never thrown; fill's exceptions propagate. source_bytes feeds the log.
Result obtain(const std::string& slot, const std::string& key, size_t payload_bytes, double source_bytes,
              const std::function<void(uint8_t* dst)>& fill);

// Totals since the last take, for the load log (one line per load instead of one per tensor).
struct Totals {
  int tensors = 0, hits = 0, written = 0, rebuilt = 0, write_failed = 0, uncached = 0;
  double source_bytes = 0, packed_bytes = 0, build_s = 0, write_s = 0, open_s = 0;
  std::string dir;
};
Totals take_totals();
// The log line for totals ("" when there were none).
std::string summary(const Totals& t);
// Prints summary(take_totals()) to stderr when repacks happened since the last take. Called by
// the first forward after a load, so a load prints one line whether or not its caller asks.
void report_pending();

}  // namespace mixtile::repack_cache
