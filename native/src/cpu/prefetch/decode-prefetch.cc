// MIXTILE_DECODE_PREFETCH parsed once; see decode-prefetch.h.
#include "cpu/prefetch/decode-prefetch.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

namespace mixtile {
namespace {

unsigned parse(const char* env) {
  const unsigned all = unsigned(DecodePrefetch::o_proj) | unsigned(DecodePrefetch::qkv) | unsigned(DecodePrefetch::down);
  if (!env || !*env || std::string(env) == "all") return all;
  if (std::string(env) == "off") return 0;
  unsigned mask = 0;
  std::stringstream ss(env);
  std::string part;
  while (std::getline(ss, part, ',')) {
    if (part == "o_proj") mask |= unsigned(DecodePrefetch::o_proj);
    else if (part == "qkv") mask |= unsigned(DecodePrefetch::qkv);
    else if (part == "down") mask |= unsigned(DecodePrefetch::down);
    else {
      std::fprintf(stderr, "mixtile: MIXTILE_DECODE_PREFETCH=\"%s\": unknown part \"%s\" (o_proj, qkv, down, all, off); using all\n", env, part.c_str());
      return all;
    }
  }
  return mask;
}

}  // namespace

bool decode_prefetch_on(DecodePrefetch what) {
  static const unsigned mask = parse(std::getenv("MIXTILE_DECODE_PREFETCH"));
  return (mask & unsigned(what)) != 0;
}

}  // namespace mixtile
