// Per-operator time, weight bytes and FLOP counters of the CPU model ops, for `mixtile bench -v`
// (where a decode token's time goes) and per-kernel GB/s and GFLOP/s. Off by default: a disabled
// OpTimer costs one relaxed atomic load; enabled, two clock reads per op call (~50 ns).
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>

namespace mixtile {

// Top-level entries (no parent) are disjoint and cover every CPU model op's native time; entries
// with a parent split that parent's time further (they add up to at most the parent).
enum class Op : int {
  attn_qkv,        // input_layernorm + q/k/v projections
  attn_core,       // q/k norm, RoPE, KV write, attention over the cache
  attn_rope_kv,    //   q/k norm, RoPE, KV write
  attn_attend,     //   attention over the cache (scores, softmax, weighted V)
  attn_o,          // o_proj + residual add
  ffn_router,      // post_attention_layernorm + router GEMV, softmax, top-k
  ffn_experts,     // routed experts (whichever kernel entry runs) + residual add
  experts_gate_up, //   generic entry: gate and up GEMMs + SiLU·mul
  experts_down,    //   generic entry: down GEMM
  experts_other,   //   generic entry: grouping, activation conversion, weighted sum
  experts_fused,   //   generic entry, small calls (decode): one job of gate/up, h conversion, down, sum
  ffn_dense,       // dense SwiGLU MLP (qwen3)
  lm_head,         // final norm + vocabulary projection
  count
};

struct OpInfo {
  const char* name;
  int parent;  // index of the parent Op, or -1
};
const OpInfo& op_info(Op op);

struct OpCounters {
  uint64_t calls = 0, ns = 0, bytes = 0, flops = 0;
};

bool op_profile_enabled();
void op_profile_enable(bool on);
void op_profile_reset();
OpCounters op_profile_get(Op op);
void op_profile_add(Op op, uint64_t ns, uint64_t bytes, uint64_t flops);

// Times one op call from construction to stop() (or destruction); bytes/flops are what the call
// reads from weights and computes, set by the caller before stop.
class OpTimer {
 public:
  explicit OpTimer(Op op) : op_(op), on_(op_profile_enabled()) {
    if (on_) t0_ = std::chrono::steady_clock::now();
  }
  ~OpTimer() { stop(); }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;
  void set(uint64_t bytes, uint64_t flops) {
    bytes_ = bytes;
    flops_ = flops;
  }
  void stop() {
    if (!on_) return;
    on_ = false;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0_).count();
    op_profile_add(op_, uint64_t(ns), bytes_, flops_);
  }

 private:
  Op op_;
  bool on_;
  std::chrono::steady_clock::time_point t0_{};
  uint64_t bytes_ = 0, flops_ = 0;
};

}  // namespace mixtile
