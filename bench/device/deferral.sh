#!/usr/bin/env bash
# Issue 9 decode, one device call: expert deferral (max_deferred_experts_per_token) on the 48-layer synthetic
# Qwen3-30B-A3B Q4_K_M: `mixtile bench -n 128` per variant, the per-token breakdown, speed and logit effect of each
# variant in one process (deferral-ab.ts, variants alternated step by step), and a profiled run.
# Run from a snapshot root (scripts/device-snapshot.sh defer) after
# `export MIXTILE_CUDA_ARCHS=90 && source .device/env.sh && bash .device/setup.sh`; logs in $OUT/main.log.
#   DEFER_BUDGET   seconds for the whole script (default 400)
#   DEFER_BENCH    "N:join[:VAR=value]" per bench run (default "0:moe 2:moe 3:moe")
#   DEFER_AMX      MIXTILE_AMX_BACKEND of the bench runs (default off: no 35 GB INT8 repack per load; decode's
#                  one-token calls read the source blocks either way); "default" leaves it unset
#   DEFER_VARIANTS, DEFER_STEPS   deferral-ab.ts variants and decode steps (default 0:moe,...,2:attention and 128)
#   DEFER_PROFILE  1 (default): also the MIXTILE_GPU_PROFILE run
set -uo pipefail
R=${OUT:-/tmp/defer-run}; BUDGET=${DEFER_BUDGET:-400}
source "$(dirname "$0")/steps.sh"
X="node bin/mixtile.js"; F=/root/models/48l-q4km.gguf
export MIXTILE_REPACK_CACHE=0
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus; $(nvidia-smi --query-gpu=name --format=csv,noheader 2>&1); $(date -u); HEAD $(cat .snapshot-head 2>/dev/null)"
mkdir -p /root/models
if [ ! -f "$F" ]; then  # same recipe as full-model.sh; written under another name first, so a cut-off run leaves none
  step synth 200 $X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 48 "$F.part" && mv "$F.part" "$F"
fi
AMX=${DEFER_AMX:-off}; [ "$AMX" = default ] && AMX=
for v in ${DEFER_BENCH:-0:moe 2:moe 3:moe}; do
  IFS=: read -r n j extra <<<"$v"
  step "bench-$v" 40 env ${AMX:+MIXTILE_AMX_BACKEND=$AMX} MIXTILE_DEFER_EXPERTS="$n" MIXTILE_DEFER_JOIN="$j" $extra \
    $X bench -m "$F" -p 0 -n 128 -r 3 --optimize-config qwen3moe-hybrid
done
# Every variant's load skips the INT8 repack here (AMX off), so five models fit and load in seconds.
step ab 60 env MIXTILE_AMX_BACKEND=off node --import tsx bench/device/deferral-ab.ts "$F" "${DEFER_STEPS:-128}" \
  "${DEFER_VARIANTS:-0:moe,1:moe,2:moe,3:moe,2:attention}"
# Where the GPU part of a layer goes (timing events; their records cost a little, so a run of its own).
[ "${DEFER_PROFILE:-1}" = 1 ] && step profile 30 env MIXTILE_AMX_BACKEND=off MIXTILE_GPU_PROFILE=1 \
  node --import tsx bench/device/deferral-ab.ts "$F" 32 0:moe,2:moe
log "done"
