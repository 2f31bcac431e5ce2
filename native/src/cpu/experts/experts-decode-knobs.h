// SWEEP KNOBS (temporary, removed once the device sweep picks the values) for the experts'
// few-token schedule: MIXTILE_DEC_TPT = pool tasks per thread per phase (default 4),
// MIXTILE_DEC_FLAT = 1: calls where every expert has <= 8 tokens split all active experts' rows as
// one flat range into equal chunks (a chunk may span two experts) instead of per-expert row blocks.
#pragma once
#include <cstdlib>

namespace mixtile {

struct ExpertsDecodeKnobs {
  int tasks_per_thread;
  bool flat;
};

inline ExpertsDecodeKnobs& experts_decode_knobs() {
  static ExpertsDecodeKnobs k = [] {
    const char* t = std::getenv("MIXTILE_DEC_TPT");
    const char* f = std::getenv("MIXTILE_DEC_FLAT");
    int tpt = t ? std::atoi(t) : 4;
    return ExpertsDecodeKnobs{tpt >= 1 ? tpt : 1, f && std::atoi(f) != 0};
  }();
  return k;
}

}  // namespace mixtile
