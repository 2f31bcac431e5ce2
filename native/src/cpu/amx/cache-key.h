// Repack cache keys for AMX panels (repack-cache.h): the identity of every source tensor (file,
// offset, file version), its type and shape, the target dtype and group, and kLayoutVersion.
#pragma once
#include <initializer_list>
#include <string>

#include "cpu/amx/amx.h"
#include "repack-cache.h"
#include "tensor.h"

namespace mixtile::amx {

// Empty slot and key (no caching) when any source is not in a file mapping.
inline CacheKey cache_key(const char* kind, Dtype dt, int group, std::initializer_list<const Weight*> sources) {
  CacheKey ck;
  // Q4K panels have their own slot and key ("|AMXInt4", layout kQ4kLayoutVersion): an INT8 cache
  // file of the same sources is never taken for them, nor the other way round.
  const char* dname = dt == Dtype::bf16 ? "|AMXBF16" : (dt == Dtype::int8 ? "|AMXInt8" : "|AMXInt4");
  std::string slot = std::string(kind) + dname;
  std::string key = "mixtile-amx|layout " + std::to_string(kLayoutVersion) +
                    (dt == Dtype::q4k ? "|q4k layout " + std::to_string(kQ4kLayoutVersion) : std::string()) + "|" +
                    slot + "|group " + std::to_string(dt != Dtype::bf16 ? group : 0);
  bool all_in_files = true;
  for (const Weight* w : sources) {
    ck.source_bytes += double(w->bytes());
    const repack_cache::SourceId id = repack_cache::source_identity(w->data, w->bytes());
    all_in_files = all_in_files && id.ok();
    slot += "|" + id.place;
    key += "|" + id.place + " " + id.version + " type " + std::to_string(int(w->type)) + " [" +
           std::to_string(w->ne[0]) + "," + std::to_string(w->ne[1]) + "," + std::to_string(w->ne[2]) + "," +
           std::to_string(w->ne[3]) + "] rb " + std::to_string(w->row_bytes);
  }
  if (all_in_files) {
    ck.slot = slot;
    ck.key = key;
  }
  return ck;
}

}  // namespace mixtile::amx
