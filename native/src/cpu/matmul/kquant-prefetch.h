// Software prefetch of the weight stream for the K-quant kernels (Q4_K and Q6_K rows, the token
// lanes). At few tokens each weight byte is used once per call and one core is bound by how many
// cache lines it keeps in flight; the hardware streamers stop at every 4 KiB page (a model's GGUF
// is a file mapping of 4 KiB pages). Requesting the bytes KQUANT_PREFETCH_AHEAD past the block
// being read keeps lines in flight across page boundaries. Test machine (16-core Xeon with AMX,
// bench/RESULTS.md "One-token experts at 16 threads"), experts call at one token, 16 threads:
// 0.338 ms without, 0.311 / 0.292 / 0.258 / 0.240 / 0.247 ms at 512 / 1024 / 2048 / 4096 / 8192
// bytes ahead (into L1; into L2 the same at 4096, worse at 1024); 2-layer model decode 223 ->
// 329-357 tok/s.
#pragma once
#include <xmmintrin.h>

#include <cstdint>

namespace mixtile {

constexpr int64_t KQUANT_PREFETCH_AHEAD = 4096;

// Requests the lines of the `bytes`-byte block KQUANT_PREFETCH_AHEAD past p, when they lie before end
// (the end of the call's rows: past it are other threads' or unused experts' bytes).
template <int64_t bytes>
inline void kquant_prefetch_block(const uint8_t* p, const uint8_t* end) {
  const uint8_t* q = p + KQUANT_PREFETCH_AHEAD;
  if (q >= end) return;
  for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(q + o), _MM_HINT_T0);
}

}  // namespace mixtile
