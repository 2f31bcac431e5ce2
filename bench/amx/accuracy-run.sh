#!/usr/bin/env bash
# One call on the AMX test machine for issue 8 item 4 (AMX-INT8 accuracy, scale group 32 vs 64):
#   1. the standalone harness of this tree and of the tree before group 32 (before/: bench/amx +
#      native/src + native/cmake of that commit, when present), amx-test (every path vs the exact
#      float64 replay, group 32 included, on real tiles);
#   2. speed: amx-bench --main (512 tokens top-8 and 1 expert x 512: AMX-BF16, AMX-INT8 g64/g128/g32,
#      AVX-512 paths), before and after alternated twice, then int8-group-bench.ts (the experts op
#      through the addon at 512 tokens: Q4_K -> INT8 g64 / g32 / g64 + BF16 down, BF16 -> AMX-BF16,
#      alternated);
#   3. whole-model accuracy on the real AMX kernels: 2-layer BF16 30B-A3B-shaped synthetic model,
#      2048 positions, AMX-BF16 vs AMX-INT8 g64, g32, g64 with BF16 down (test/hf/amx-int8-accuracy.ts);
#   4. the AMX suites through the addon (amx, amx-linear, experts, experts-backend), amx-kernel-bench.
# Run from a snapshot root after `source .device/env.sh && bash .device/setup.sh`; logs in $OUT.
# Every step checks the time left (AMX_RUN_BUDGET seconds from the start).
set -uo pipefail
R=${OUT:-/tmp/amx-acc-run}
BUDGET=${AMX_RUN_BUDGET:-270}
source "$(dirname "$0")/../device/steps.sh"
M=/tmp/amx-models
mkdir -p "$M"
export MIXTILE_REPACK_CACHE=0
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus, $(free -g | awk '/Mem/{print $2}') GiB; $(date -u)"
log "kernel $(uname -r); flags: $(grep -m1 -o 'amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"

# 1. Harnesses (this tree, and before/ in the background), then amx-test.
B0=""
if [ -d before/bench/amx ]; then
  (cmake -S before/bench/amx -B /tmp/amxh0 -DCMAKE_BUILD_TYPE=Release >/dev/null &&
    cmake --build /tmp/amxh0 -j8 --target amx-bench >/dev/null 2>&1) &
  B0=$!
fi
step harness-build 60 bash -c 'cmake -S bench/amx -B /tmp/amxh -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build /tmp/amxh -j16'
[ -n "$B0" ] && wait "$B0"
step amx-test 40 /tmp/amxh/amx-test

# 2. Speed, quiet machine: before / after alternated, then the experts op through the addon.
for round in 1 2; do
  [ -x /tmp/amxh0/amx-bench ] && step "amx-bench-before-$round" 40 /tmp/amxh0/amx-bench 16 --main
  step "amx-bench-after-$round" 40 /tmp/amxh/amx-bench 16 --main
done
step group-bench 40 node --import tsx bench/amx/int8-group-bench.ts 3 5 512

# 3. Whole-model accuracy on the real AMX kernels: the 2-layer file measured on the dev box with the
# emulated-AMX build (bench/amx/accuracy-here.sh), so the two can be compared.
B4=$M/a3b-2l-bf16.gguf
[ -f "$B4" ] || step synth-bf16 50 node bin/mixtile.js synth --preset qwen3-30b-a3b --file-type BF16 --layers 2 "$B4"
for g in 64 32; do
  step "accuracy-g$g" 45 node --import tsx test/hf/amx-int8-accuracy.ts "$B4" 2048 512 --ref AMXBF16 --test "AMXInt8@$g"
done
step accuracy-g64-bf16-down 45 node --import tsx test/hf/amx-int8-accuracy.ts "$B4" 2048 512 --ref AMXBF16 \
  --test AMXInt8@64+bf16down
grep '^{"model"' "$R/main.log" | tee "$R/accuracy.jsonl"

# 4. The AMX suites through the addon, then the panel kernels alone (data in L2).
step tests 45 node --import tsx --test --test-concurrency=1 test/kernels/amx.test.ts test/kernels/amx-linear.test.ts \
  test/kernels/experts.test.ts test/kernels/experts-backend.test.ts
grep -E '^# (tests|pass|fail|skipped)' "$R/main.log" | tail -4 | tee -a "$R/main.log"
step kernel-bench 25 /tmp/amxh/amx-kernel-bench
log "done, $(left) s left"
