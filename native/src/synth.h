// Benchmark helpers shared by the addon (bench-napi.cc) and the standalone bench/kernels driver:
// synthetic weights with page-unique data and sane scales, and a DRAM read-bandwidth probe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "tensor.h"

namespace mixtile {

// A random weight (ggml order ne) in a native buffer, filled on the pool: floats in [-1, 1) for
// F32/F16/BF16, random quants with fp16 block scales of 0.01 for the quantized types.
std::shared_ptr<Weight> synth_weight(GgmlType type, const int64_t ne[4], uint64_t seed);

// GB/s reading a fresh page-unique buffer of `mib` MiB with every pool thread (best of reps).
double mem_read_bandwidth(size_t mib, int reps);

}  // namespace mixtile
