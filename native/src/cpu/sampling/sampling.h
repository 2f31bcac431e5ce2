// The per-token scans over a logits row that sampling needs (src/engine/sampler.ts keeps the
// chain and the JS references): argmax, the k best ids, the ids within a gap of the max. Each
// returns exactly what its JS reference returns: same ids, same order (ties: lower id first).
// Rows holding NaN are refused (the *_ok flags / return false) so the JS reference decides them.
#pragma once
#include <cstdint>
#include <vector>

namespace mixtile {

// Index of the largest value, lowest index among equals; false if the row holds a NaN or n == 0.
bool logits_argmax(const float* x, int64_t n, int64_t* out);
bool logits_argmax_scalar(const float* x, int64_t n, int64_t* out);
bool logits_argmax_avx512(const float* x, int64_t n, int64_t* out);

// The k best ids (k clamped to n) sorted by value descending, then id ascending. False on NaN.
bool logits_top_k(const float* x, int64_t n, int64_t k, std::vector<int32_t>* out);

// Ids with x[i] >= x[argmax] - gap (in double, as JS compares). sorted: by value descending then
// id; else the argmax first, the rest in id order. False on NaN.
bool logits_above_gap(const float* x, int64_t n, double gap, bool sorted, std::vector<int32_t>* out);

// Appends to `out` every i in [0, n) with x[i] > t (t finite), in index order; the AVX-512 version
// when the active ISA allows. The scans above use it to skip the bulk of the row 16 at a time.
void logits_collect_above(const float* x, int64_t n, float t, std::vector<int32_t>* out);
void logits_collect_above_scalar(const float* x, int64_t n, float t, std::vector<int32_t>* out);
void logits_collect_above_avx512(const float* x, int64_t n, float t, std::vector<int32_t>* out);

}  // namespace mixtile
