// Internal to native/src/cpu/amx: one whole BF16 / INT8 panel matrix (not fused) packed from F32
// rows (repack.cc), for packers of other layouts that keep some matrices in these panels
// (repack-q4k.cc: a Q6_K down beside Q4K gate+up).
#pragma once
#include <cstddef>
#include <cstdint>

#include "cpu/amx/amx.h"

namespace mixtile::amx {

// Bytes of one packed matrix [n_out][k] (panels, then INT8 scales and colsums, 64-byte aligned).
size_t packed_matrix_bytes(Dtype dt, int group, int64_t n_out, int64_t k);
// Packs rows(e, r, dst) for r < n_out into base (packed_matrix_bytes of it).
void pack_matrix(Dtype dt, int group, int64_t n_out, int64_t k, int64_t e, const RowFn& rows, uint8_t* base);
// The view of a matrix packed at base (also of one mapped from the repack cache).
PackedMatrix packed_matrix_view(Dtype dt, int group, int64_t n_out, int64_t k, const uint8_t* base);

}  // namespace mixtile::amx
