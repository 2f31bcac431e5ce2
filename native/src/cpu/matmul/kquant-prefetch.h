// Software prefetch of the weight stream for the K-quant row kernels (Q4_K, Q6_K) at few tokens,
// where each weight byte is used once per call and the kernel is bound by how many cache lines one
// core keeps in flight. The hardware streamers stop at every 4 KiB page; a prefetch `ahead` bytes
// past the block being read keeps lines requested across page boundaries.
// SWEEP KNOBS (temporary, removed once the device sweep picks the values): MIXTILE_DEC_PF = bytes
// ahead (0 = off), MIXTILE_DEC_PF_HINT = 0 (T0, into L1) or 1 (T1, into L2).
#pragma once
#include <xmmintrin.h>

#include <cstdint>
#include <cstdlib>

namespace mixtile {

struct KquantPrefetch {
  int64_t ahead;
  int hint;
};

inline KquantPrefetch& kquant_prefetch() {
  static KquantPrefetch p = [] {
    const char* a = std::getenv("MIXTILE_DEC_PF");
    const char* h = std::getenv("MIXTILE_DEC_PF_HINT");
    return KquantPrefetch{a ? std::atoll(a) : 0, h ? std::atoi(h) : 0};
  }();
  return p;
}

// Requests the `bytes` bytes (one block's worth) that sit `ahead` bytes past p, when they lie before end.
inline void kquant_prefetch_block(const uint8_t* p, const uint8_t* end, int64_t bytes, const KquantPrefetch& pf) {
  if (pf.ahead <= 0) return;
  const uint8_t* q = p + pf.ahead;
  if (q >= end) return;
  for (int64_t o = 0; o < bytes; o += 64) {
    if (pf.hint == 1) _mm_prefetch(reinterpret_cast<const char*>(q + o), _MM_HINT_T1);
    else _mm_prefetch(reinterpret_cast<const char*>(q + o), _MM_HINT_T0);
  }
}

}  // namespace mixtile
