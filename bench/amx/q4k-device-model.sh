#!/usr/bin/env bash
# Q4K panels (AMXInt4) through the engine on the AMX machine, for the lead (needs Node: run after
# `source .device/env.sh && bash .device/setup.sh` in a snapshot root): AMXInt4 vs AMXInt8 in the same
# machine start (AMXInt4 also with MIXTILE_AMX_INT4_ACT_GROUP=256, the folded kernels) for (1) the experts entry against the generic Q4_K kernels at 1..512 tokens
# (threshold-sweep.ts; sets kMinPairsPerExpertQ4k in machine.cc), (2) CPU-only pp512 / tg and peak
# RSS on a Q4_K_M model (/root/models/48l-q4km.gguf when present, else a 4-layer file written here).
# Logs: $OUT/main.log. Q4K_BUDGET seconds (default 540).
set -uo pipefail
R=${OUT:-/tmp/q4k-model}; BUDGET=${Q4K_BUDGET:-540}
source "$(dirname "$0")/../device/steps.sh"
X="node bin/mixtile.js"
export MIXTILE_REPACK_CACHE=0
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus; $(date -u)"
for b in AMXInt4 AMXInt8; do
  step "sweep-$b" 60 env MIXTILE_AMX_BACKEND=$b MIXTILE_AMX_MIN_CALL_TOKENS=1 MIXTILE_AMX_LINEAR_MIN_TOKENS=1 \
    node --import tsx bench/amx/threshold-sweep.ts q4_k 5
done
F=/root/models/48l-q4km.gguf
if [ ! -f "$F" ]; then
  F=/tmp/a3b-4l-q4km.gguf
  step synth 40 $X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 4 "$F"
fi
T=""; [ -x /usr/bin/time ] && T="/usr/bin/time -f maxrss_kb=%M"
# AMXInt4 per-32, AMXInt4 folded (activations per 256), AMXInt8 g64, and per-32 again (drift check).
for v in AMXInt4:32 AMXInt4:256 AMXInt8:32 AMXInt4:32; do
  b=${v%%:*} g=${v##*:}
  step "bench-$b-a$g" 100 env MIXTILE_AMX_BACKEND=$b MIXTILE_AMX_INT4_ACT_GROUP=$g $T $X bench -m "$F" -p 512 -n 32 -r 2 -t 16 --optimize-config cpu
done
log done
