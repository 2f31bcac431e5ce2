// The AMX hook of the dense linear layer (cpu/linear/linear.cc): at load, the weight is repacked
// into AMX panels (through the repack cache) when AMX is present and the backend asks for it; a
// call with enough tokens then runs on the panels, a smaller one (decode) on the source weights.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "tensor.h"

namespace mixtile {

// Backends a linear layer accepts: "auto" (AMX-BF16 for BF16 and quantized weights where AMX is
// present; MIXTILE_AMX_LINEAR=AMXBF16 | AMXInt8 | off overrides), "AMXBF16", "AMXInt8",
// "AVX512" (no AMX). Throws std::invalid_argument for other names.
void amx_linear_check_backend(const std::string& backend);

// The packed weight for w, or nullptr when this backend / machine / weight type takes no AMX path.
std::shared_ptr<void> amx_linear_prepare(const Weight& w, const std::string& backend);

// True when a call with n tokens runs on AMX panels (threshold reached, AMX the active ISA).
bool amx_linear_takes(int64_t n);

// Runs y[n][m] = x[n][k] W^T on the packed weight when n is at or above the AMX threshold and
// AMX is the active ISA; returns false (nothing done) otherwise.
bool amx_linear_forward(const void* prepared, const float* x, int64_t n, float* y);

// "AMXBF16" / "AMXInt8" for a prepared weight.
const char* amx_linear_name(const void* prepared);

}  // namespace mixtile
