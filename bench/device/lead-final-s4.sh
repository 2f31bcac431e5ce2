#!/usr/bin/env bash
# Lead's last device call of session 4 (issues 8 and 9): the HF transformers check of the CPU and hybrid paths while
# the 48-layer file is made, then on the 48-layer synthetic Qwen3-30B-A3B Q4_K_M: the hybrid's defaults with `bench -v`
# (GPU side per forward, the prefill experts split and its cost model), the TTFT of a 16K prompt, the CPU-only engine
# with AMX (issue 8's pp512/pp2048/tg128), then as time allows decode with expert deferral and all prefill experts on the GPU.
#   scripts/device-snapshot.sh final && run (carry [".snap/final"]):
#   cd .snap/final && export MIXTILE_CUDA_ARCHS=90 && source .device/env.sh && bash .device/setup.sh && bash bench/device/lead-final-s4.sh
# FIN_BUDGET seconds (default 540); FIN_SKIP names steps to leave out (hf, gpu-all, defer, ttft, cpu); logs in $OUT/main.log.
set -uo pipefail
R=${OUT:-/tmp/final}; BUDGET=${FIN_BUDGET:-540}
source "$(dirname "$0")/steps.sh"
F=/root/models/48l-q4km.gguf; X="node bin/mixtile.js"
export MIXTILE_REPACK_CACHE=0
want() { [[ " ${FIN_SKIP:-} " != *" $1 "* ]]; }
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); $(date -u)"
mkdir -p /root/models
SPID=
[ -s "$F" ] || { ( $X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 48 "$F" > "$R/synth.log" 2>&1; echo "synth rc=$?" >> "$R/synth.log" ) & SPID=$!; }
want hf && step hf 150 env OUT="$R" bash test/hf/run-on-device.sh
[ -n "$SPID" ] && { wait "$SPID"; tail -2 "$R/synth.log" | tee -a "$R/main.log"; }
sync
H="--optimize-config qwen3moe-hybrid"
step hybrid 110 $X bench -m "$F" -p 512,2048 -n 128 -r 3 -v --ubatch 2048 $H
want ttft && step ttft-16k 70 $X bench -m "$F" -p 16384 -n 0 -r 2 --ubatch 2048 $H
want cpu && step cpu-amx 110 $X bench -m "$F" -p 512,2048 -n 128 -r 2 -t 16 -v --optimize-config cpu
want defer && MIXTILE_DEFER_EXPERTS=2 step hybrid-defer2 45 $X bench -m "$F" -p 0 -n 128 -r 3 -v $H
want gpu-all && MIXTILE_EXPERTS_PREFILL=gpu step hybrid-gpu-experts 60 $X bench -m "$F" -p 512,2048 -n 0 -r 3 -v --ubatch 2048 $H
grep -E "RUN |END |SKIP |^\| qwen3moe|per forward|prefill experts split|^== |max\|diff|top-1|PASS|FAIL" "$R/main.log" "$R/hf-check.txt" 2>/dev/null | cut -c1-330
log "done"
