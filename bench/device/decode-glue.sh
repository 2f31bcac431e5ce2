#!/usr/bin/env bash
# Issue 9 decode glue, one device call (12-layer synthetic Qwen3-30B-A3B Q4_K_M, rules qwen3moe-hybrid):
#   1. test/engine/hybrid-glue.test.ts on the GPU (every glue: the same logits bit for bit);
#   2. glue-ab.ts: every decode step under each MIXTILE_DECODE_GLUE, alternated in one process (speed, host
#      counters, same bits), then again with MIXTILE_GPU_PROFILE=1 (GPU µs per part of a MoE layer);
#   3. `mixtile bench -p 0 -n 128 -r 3 -v` per GLUE_BENCH entry (default: the old glue, copy without the pool's hot
#      window, alternated with mapped and its 3 ms window, mapped without it, and with deferral 2);
#   4. the CUDA kernel test's MoE checks (mxc_moe_route vs its three-kernel definition bit for bit, mxc_add_when_ready)
#      against the built library.
# Run from a snapshot root (scripts/device-snapshot.sh glue) after
# `export MIXTILE_CUDA_ARCHS=90 && source .device/env.sh && bash .device/setup.sh`; logs in $OUT/main.log.
#   GLUE_BUDGET  seconds for the whole script (default 280); GLUE_STEPS decode steps of glue-ab (default 96);
#   GLUE_AB      its glues (default wait,mapped,copy); GLUE_BENCH "glue:hot_us[:VAR=value]" per bench run
set -uo pipefail
R=${OUT:-/tmp/glue-run}; BUDGET=${GLUE_BUDGET:-280}
source "$(dirname "$0")/steps.sh"
X="node bin/mixtile.js"; F=/root/models/12l-q4km.gguf
export MIXTILE_REPACK_CACHE=0 MIXTILE_AMX_BACKEND=off  # decode's one-token expert calls read the source blocks anyway
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus; $(nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current --format=csv,noheader 2>&1); $(date -u); HEAD $(cat .snapshot-head 2>/dev/null)"
# The kernel test's MoE checks only (GLUE_KERNEL_TESTS=all: every kernel, ~40 s): its file included with its main
# renamed, so the static test functions are callable.
if [ "${GLUE_KERNEL_TESTS:-moe}" = all ]; then KT=test/cuda/cuda-kernels-test.cc; else
  KT=/tmp/moe-kernel-test.cc
  printf '%s\n' '#define main all_kernel_tests' "#include \"$PWD/test/cuda/cuda-kernels-test.cc\"" '#undef main' \
    'int main() { Rng rng(20261125); test_moe_route(rng); test_add_when_ready(rng);' \
    '  std::printf("\n%d passed, %d failed\n", g_pass, g_fail); return g_fail ? 1 : 0; }' > $KT
fi
( g++ -O2 -std=c++17 -Itest/cuda -Inative/src -Inative/src/cuda $KT native/src/cpu/dequant/dequant.cc \
    native/src/tensor.cc -Lnative/build/Release -lmixtile-cuda -o /tmp/mixtile-cuda-test > "$R/kernel-test-build.log" 2>&1 ) &
BPID=$!
mkdir -p /root/models
if [ ! -f "$F" ]; then
  step synth 60 $X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 12 "$F.part" && mv "$F.part" "$F"
fi
wait $BPID
step glue-test 40 node --import tsx --test test/engine/hybrid-glue.test.ts
G=${GLUE_AB:-wait,mapped,copy}
step ab 45 node --import tsx bench/device/glue-ab.ts "$F" "${GLUE_STEPS:-96}" "$G"
step ab-profile 30 env MIXTILE_GPU_PROFILE=1 node --import tsx bench/device/glue-ab.ts "$F" 32 "$G"
for v in ${GLUE_BENCH:-copy:0 mapped:3000 copy:0 mapped:3000 mapped:0 mapped:3000:MIXTILE_DEFER_EXPERTS=2}; do
  IFS=: read -r glue hot extra <<<"$v"
  step "bench-$v" 25 env MIXTILE_DECODE_GLUE="$glue" MIXTILE_POOL_HOT_US="$hot" $extra \
    $X bench -m "$F" -p 0 -n 128 -r 3 -v --optimize-config qwen3moe-hybrid
done
step kernel-test 30 bash -c "LD_LIBRARY_PATH='$PWD/native/build/Release' /tmp/mixtile-cuda-test > '$R/kernel-test.log' 2>&1"
grep -E "moe_route|passed|FAIL" "$R/kernel-test.log" | grep -v "^PASS" | tee -a "$R/main.log"
echo "moe checks passed: $(grep -c -E '^PASS (moe_route|add_when_ready)' "$R/kernel-test.log")" | tee -a "$R/main.log"
grep -E "RUN |END |tg128|glue |GPU per|experts.fused|differ|^# (pass|fail)" "$R/main.log" | cut -c1-260
log "done"
