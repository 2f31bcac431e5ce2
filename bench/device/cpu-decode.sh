#!/usr/bin/env bash
# One call on the AMX test machine: CPU-only decode of the 48-layer synthetic Qwen3-30B-A3B Q4_K_M
# (issue 8's tg128), this snapshot's addon against a base commit's, alternated, with `bench -v`'s
# per-op table (bench/RESULTS.md "CPU-only decode at 16 threads" ran it twice, the second time with
# MIXTILE_DECODE_PREFETCH variants since removed). Made from a snapshot whose base/ holds the native
# tree to compare against, e.g. `git archive BASE native test/cuda`:
#   scripts/device-snapshot.sh cpudec && git archive BASE native test/cuda | tar -x -C .snap/cpudec/base
#   run: cd .snap/cpudec && export MIXTILE_NO_CUDA=1 && source .device/env.sh && bash .device/setup.sh && bash bench/device/cpu-decode.sh
# The 48-layer file is made once at /root/models/48l-q4km.gguf (same recipe as full-model.sh) and reused.
# DEC_BUDGET seconds (default 400); logs in $OUT/main.log.
set -uo pipefail
R=${OUT:-/tmp/cpu-decode}; BUDGET=${DEC_BUDGET:-400}
source "$(dirname "$0")/steps.sh"
F=/root/models/48l-q4km.gguf
NEW=$PWD/native/build/Release/mixtile.node; BASE=$PWD/base/build/Release/mixtile.node
export MIXTILE_REPACK_CACHE=0
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus, $(free -g | awk '/Mem/{print $2}') GiB; $(date -u)"
( s=$(date +%s); cmake -S base/native -B base/build -DCMAKE_BUILD_TYPE=Release -DCMAKE_JS_INC="$PWD/.device/node-headers" \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/base/build/Release" >/dev/null && cmake --build base/build -j8 >/dev/null
  echo "BASE_BUILD rc=$? wall_s=$(($(date +%s) - s))" ) > "$R/base-build.log" 2>&1 &
BPID=$!
mkdir -p /root/models
[ -s "$F" ] || step synth 200 node bin/mixtile.js synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 48 "$F"
wait $BPID; cat "$R/base-build.log" | tee -a "$R/main.log"
sync
# b TAG ADDON [VAR=VALUE...] -- [bench flags...]
b() {
  local tag=$1 addon=$2 vars=(); shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do vars+=("$1"); shift; done; shift
  step "$tag" 75 env MIXTILE_ADDON="$addon" "${vars[@]}" node bin/mixtile.js bench -m "$F" -p 0 -n 128 -r 3 -t 16 -v "$@"
}
# Round 1: the issue's command (AMX repack at load, decode on the source weights either way).
b base-cpu "$BASE" -- --optimize-config cpu
b new-cpu "$NEW" -- --optimize-config cpu
# Round 2+: no AMX repack (decode takes the same kernels; loads in seconds), alternated.
export MIXTILE_AMX_BACKEND=off MIXTILE_AMX_LINEAR=off
b new-noamx "$NEW" -- --optimize-config cpu
b base-noamx "$BASE" -- --optimize-config cpu
b new-noamx-2 "$NEW" -- --optimize-config cpu
b base-noamx-2 "$BASE" -- --optimize-config cpu
log "done"
