#!/usr/bin/env bash
# Second device call after full-model.sh: the hybrid prefill's spread (more repetitions; the cost model's
# split vs every expert on the GPU vs every expert on the CPU) on the 48-layer Q4_K_M, and the hybrid's
# logits against the CPU engine on a 12-layer file with the prefill experts on the CPU (GPU experts out
# of the comparison) and split. Run like full-model.sh; logs in $OUT/checks.log.
set -uo pipefail
R=${OUT:-/tmp/full-run}; mkdir -p "$R"; T0=$(date +%s)
log() { echo "[+$(($(date +%s) - T0))s] $*" | tee -a "$R/checks.log"; }
X="node bin/mixtile.js"; F=/tmp/a3b-48l-q4km.gguf; F12=/tmp/a3b-12l-q4km.gguf
export MIXTILE_REPACK_CACHE=0
$X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 12 "$F12" >>"$R/checks.log" 2>&1 &
$X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 48 "$F" >>"$R/checks.log" 2>&1
wait; log "synth done"
for p in split gpu cpu; do
  log "hybrid prefill, MIXTILE_EXPERTS_PREFILL=$p"
  MIXTILE_EXPERTS_PREFILL=$p timeout 100 $X bench -m "$F" -p 512,2048 -n 0 -r 4 --ubatch 2048 --optimize-config qwen3moe-hybrid -o json \
    2>>"$R/checks.log" | python3 -c "import json,sys; [print(f\"  {t['test']}: {t['avg_ts']:.1f} +- {t['stddev_ts']:.1f} samples {[round(x) for x in t.get('samples_ts',[])]}\") for t in json.load(sys.stdin)]" 2>&1 | tee -a "$R/checks.log"
done
for p in cpu split; do
  log "hybrid vs CPU engine, 12 layers, MIXTILE_EXPERTS_PREFILL=$p"
  MIXTILE_EXPERTS_PREFILL=$p timeout 90 node --import tsx test/engine/hybrid-vs-cpu.ts "$F12" 64 16 >>"$R/checks.log" 2>&1; log "rc=$?"
done
log done
