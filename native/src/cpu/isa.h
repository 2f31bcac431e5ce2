// CPU instruction-set levels, probed once by cpuid + OS checks (XCR0, AMX tile permission).
#pragma once
#include <string>
#include <vector>

namespace mixtile {

// Ordered: each level implies the ones before it (avx512 = F+BW+VL+DQ, avx512vnni adds VNNI,
// avx512bf16 adds BF16, amx adds AMX-TILE/BF16/INT8 with the tile permission granted).
enum class Isa { scalar = 0, avx2 = 1, avx512 = 2, avx512vnni = 3, avx512bf16 = 4, amx = 5 };

// Highest level this CPU and OS support.
Isa detected_isa();
// Level kernels may use: detected, lowered by MIXTILE_ISA=<name> or set_isa().
Isa active_isa();
// Lowers (or restores, up to detected) the active level; returns false if `level` > detected.
bool set_isa(Isa level);
// True once arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) succeeded; false on non-AMX CPUs.
bool amx_tile_granted();

const char* isa_name(Isa isa);
// Parses "scalar", "avx2", "avx512", "avx512vnni", "avx512bf16", "amx"; false if unknown.
bool parse_isa(const std::string& s, Isa* out);
// CPU brand string and feature names found (e.g. "avx512f", "avx512_vnni", "amx_tile").
std::string cpu_brand();
std::vector<std::string> cpu_features();

}  // namespace mixtile
