// Scalar references and the selection logic of sampling.h; the AVX-512 scans are in
// sampling-avx512.cc. A top-k or gap selection first collects the few ids above a threshold
// (one vector compare per 16 logits), then sorts only those.
#include "cpu/sampling/sampling.h"

#include <algorithm>
#include <cmath>

#include "cpu/isa.h"

namespace mixtile {
namespace {

bool has_nan(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) return true;
  }
  return false;
}

// NaN check through the (vectorized) argmax, which refuses rows holding one.
bool has_nan_fast(const float* x, int64_t n) {
  int64_t best = 0;
  return !logits_argmax(x, n, &best);
}

// Value descending, then id ascending: the order of every JS reference in sampler.ts.
void sort_best_first(const float* x, std::vector<int32_t>* ids) {
  std::sort(ids->begin(), ids->end(), [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
}

}  // namespace

bool logits_argmax_scalar(const float* x, int64_t n, int64_t* out) {
  if (n <= 0 || has_nan(x, n)) return false;
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  *out = best;
  return true;
}

bool logits_argmax(const float* x, int64_t n, int64_t* out) {
  return active_isa() >= Isa::avx512 ? logits_argmax_avx512(x, n, out) : logits_argmax_scalar(x, n, out);
}

void logits_collect_above_scalar(const float* x, int64_t n, float t, std::vector<int32_t>* out) {
  for (int64_t i = 0; i < n; ++i) {
    if (x[i] > t) out->push_back(int32_t(i));
  }
}

void logits_collect_above(const float* x, int64_t n, float t, std::vector<int32_t>* out) {
  if (active_isa() >= Isa::avx512) logits_collect_above_avx512(x, n, t, out);
  else logits_collect_above_scalar(x, n, t, out);
}

bool logits_top_k(const float* x, int64_t n, int64_t k, std::vector<int32_t>* out) {
  out->clear();
  if (n <= 0) return false;
  if (has_nan_fast(x, n)) return false;
  k = std::min(k, n);
  if (k <= 0) return true;
  // A threshold t from a strided sample of the row, a few times lower in rank than the k-th value:
  // when at least k ids lie above t, the k best are among them (anything at or below t ranks
  // after them), so only those few are sorted. Otherwise (ties, an unlucky sample) sort them all.
  std::vector<float> sample;
  const int64_t stride = std::max<int64_t>(1, n / 4096);
  for (int64_t i = 0; i < n; i += stride) sample.push_back(x[i]);
  const int64_t s = int64_t(sample.size());
  const int64_t rank = std::min<int64_t>(s - 1, 4 * k * s / n + 8);
  std::nth_element(sample.begin(), sample.begin() + rank, sample.end(), std::greater<float>());
  std::vector<int32_t> cand;
  logits_collect_above(x, n, sample[size_t(rank)], &cand);
  if (int64_t(cand.size()) < k) {
    cand.resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) cand[size_t(i)] = int32_t(i);
  }
  std::partial_sort(cand.begin(), cand.begin() + k, cand.end(),
                    [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
  out->assign(cand.begin(), cand.begin() + k);
  return true;
}

bool logits_above_gap(const float* x, int64_t n, double gap, bool sorted, std::vector<int32_t>* out) {
  out->clear();
  int64_t best = 0;
  if (!logits_argmax(x, n, &best)) return false;
  if (x[best] == -INFINITY) {  // all -inf: every id is within the gap (-inf >= -inf), in id order either way
    out->resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) (*out)[size_t(i)] = int32_t(i);
    return true;
  }
  const double floor = double(x[best]) - gap;
  // x[i] >= floor (in double) <=> x[i] > the largest float below floor; collect with that float.
  float t = float(floor);
  if (double(t) >= floor) t = std::nextafter(t, -INFINITY);
  std::vector<int32_t> ids;
  logits_collect_above(x, n, t, &ids);
  if (sorted) {
    sort_best_first(x, &ids);
    *out = std::move(ids);
  } else {
    out->reserve(ids.size());
    out->push_back(int32_t(best));
    for (int32_t i : ids) {
      if (i != best) out->push_back(i);
    }
  }
  return true;
}

}  // namespace mixtile
