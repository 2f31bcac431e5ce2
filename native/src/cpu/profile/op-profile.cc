// Counters behind op-profile.h: relaxed atomics, so ops running on several JS threads (workers)
// may add at once; readers see each counter exactly, the set of them not as one snapshot.
#include "cpu/profile/op-profile.h"

namespace mixtile {
namespace {

constexpr int N = int(Op::count);
const OpInfo INFO[N] = {
    {"attn.norm+qkv", -1},        {"attn.rope+kv+core", -1}, {"attn.rope+kv", int(Op::attn_core)},
    {"attn.attend", int(Op::attn_core)}, {"attn.o_proj", -1},
    {"ffn.norm+router", -1},      {"ffn.experts", -1},       {"experts.gate_up", int(Op::ffn_experts)},
    {"experts.down", int(Op::ffn_experts)}, {"experts.other", int(Op::ffn_experts)},
    {"experts.fused", int(Op::ffn_experts)}, {"ffn.dense", -1},
    {"lm_head", -1},
};

struct alignas(64) Slot {
  std::atomic<uint64_t> calls{0}, ns{0}, bytes{0}, flops{0};
};
Slot slots[N];
std::atomic<bool> enabled{false};

}  // namespace

const OpInfo& op_info(Op op) { return INFO[int(op)]; }

bool op_profile_enabled() { return enabled.load(std::memory_order_relaxed); }
void op_profile_enable(bool on) { enabled.store(on, std::memory_order_relaxed); }

void op_profile_reset() {
  for (auto& s : slots) {
    s.calls.store(0, std::memory_order_relaxed);
    s.ns.store(0, std::memory_order_relaxed);
    s.bytes.store(0, std::memory_order_relaxed);
    s.flops.store(0, std::memory_order_relaxed);
  }
}

OpCounters op_profile_get(Op op) {
  const Slot& s = slots[int(op)];
  return {s.calls.load(std::memory_order_relaxed), s.ns.load(std::memory_order_relaxed),
          s.bytes.load(std::memory_order_relaxed), s.flops.load(std::memory_order_relaxed)};
}

void op_profile_add(Op op, uint64_t ns, uint64_t bytes, uint64_t flops) {
  Slot& s = slots[int(op)];
  s.calls.fetch_add(1, std::memory_order_relaxed);
  s.ns.fetch_add(ns, std::memory_order_relaxed);
  s.bytes.fetch_add(bytes, std::memory_order_relaxed);
  s.flops.fetch_add(flops, std::memory_order_relaxed);
}

}  // namespace mixtile
