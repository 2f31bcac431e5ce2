#!/usr/bin/env bash
# Third device call: the 48-layer Q4_K_M hybrid bench after the whole-prompt warm-up (bench.ts), -r 3.
# Run like full-model.sh; logs in $OUT/final.log.
set -uo pipefail
R=${OUT:-/tmp/full-run}; mkdir -p "$R"; F=/tmp/a3b-48l-q4km.gguf; X="node bin/mixtile.js"
export MIXTILE_REPACK_CACHE=0
$X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 48 "$F" >/dev/null 2>>"$R/final.log"
timeout 200 $X bench -m "$F" -p 512,2048 -n 128 -r 3 --ubatch 2048 --optimize-config qwen3moe-hybrid -o json 2>>"$R/final.log" |
  python3 -c "import json,sys; [print(f\"{t['test']}: {t['avg_ts']:.1f} +- {t['stddev_ts']:.1f} samples {[round(x,1) for x in t.get('samples_ts',[])]}\") for t in json.load(sys.stdin)]" 2>&1 | tee -a "$R/final.log"
