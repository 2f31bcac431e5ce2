#!/usr/bin/env bash
# One device call for the one-token experts path (bench/RESULTS.md "One-token experts at 16 threads"):
#   1. the 1-token Q4_K/Q6_K kernels on cache-resident rows at one thread (compute ceiling per core),
#   2. the experts call at 1/4/8/16 threads on 1 and 4 tokens, weights read through a file mapping as
#      a model's GGUF is,
#   3. at 16 threads after an idle pool (gap 80 us as in hybrid decode, 400 us past the spin) and in
#      anonymous memory,
#   4. whole-model decode, 2-layer 30B-A3B Q4_K_M, 16 threads.
# The sweep that chose the defaults (prefetch distance and hint, task partition) ran this script at
# commit 2adc3fa, whose kernel-bench took --variants and the addon MIXTILE_DEC_* knobs since removed.
# Run from a snapshot root after `source .device/env.sh && bash .device/setup.sh`; logs in $OUT.
set -uo pipefail
R=${OUT:-/tmp/dec-run}
BUDGET=${DEC_RUN_BUDGET:-330}
source "$(dirname "$0")/../device/steps.sh"
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus; $(date -u)"
lscpu | grep -E 'Model name|Thread|Core|Socket|NUMA node|L1d|L2|L3|MHz' >>"$R/main.log"
echo "THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)" >>"$R/main.log"

M=/tmp/dec-a3b-2l.gguf
node bin/mixtile.js synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 2 "$M" >"$R/synth.log" 2>&1 &
SYN=$!
step kb-build 90 bash -c 'cmake -S bench/kernels -B /tmp/kb -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build /tmp/kb -j16'
wait "$SYN"
log "synth rc=$? $(ls -la "$M" 2>&1)"
KB=/tmp/kb/kernel-bench

step hot-gemv 20 "$KB" --type q4_k --down-type q6_k --hot-gemv 1
step sweep 120 bash -c "$KB --type q4_k --down-type q6_k --tokens 1,4 --threads 1,4,8,16 --reps 31 --probe-mib 1024 \
  --file /tmp/kbw | tee $R/sweep.txt"
step gap 60 bash -c "for g in 0 80 400; do $KB --type q4_k --down-type q6_k --tokens 1 --threads 16 --reps 41 --probe-mib 256 \
  --file /tmp/kbw --gap-us \$g | grep ^experts; done | tee $R/gap.txt"
step anon 30 bash -c "$KB --type q4_k --down-type q6_k --tokens 1 --threads 16 --reps 41 --probe-mib 256 | tee $R/anon.txt"
for i in 1 2; do
  step "model-$i" 40 node bin/mixtile.js bench -m "$M" -p 0 -n 64 -r 3 -t 16
done
log "done"
