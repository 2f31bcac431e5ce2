// Token embedding lookup: dequantizes the rows of token_embd for a batch of token ids.
#pragma once
#include <cstdint>

#include "tensor.h"

namespace mixtile {

// table: [vocab, hidden] (ne = {hidden, vocab}) of any type dequantize_row supports; ids: [n],
// each < vocab (checked by the caller); out: [n, hidden] F32.
void embed_rows(const Weight& table, const int32_t* ids, int64_t n, float* out);

}  // namespace mixtile
