#!/usr/bin/env bash
# One call on the AMX + GPU test machine: hybrid decode (48-layer synthetic Qwen3-30B-A3B Q4_K_M, rules
# qwen3moe-hybrid) of this snapshot against a whole base commit (TS and native, its own CUDA library), alternated
# in the same machine start, plus the quantized-weights A/B (MIXTILE_GPU_WEIGHTS=bf16) and cuda-bench's gemvq
# section (mxc_gemv_quant vs cuBLAS at decode shapes). Why: hybrid tg128 read 54.5 at 22496ed's time and 38–48
# in later calls; machines differ from start to start, so only one call can tell code from machine.
# Made here (repo root):
#   scripts/device-snapshot.sh lead && bench/device/bisect-base.sh .snap/lead BASE
#   run (carry [".snap/lead"]): cd .snap/lead && export MIXTILE_CUDA_ARCHS=90 && source .device/env.sh &&
#     bash .device/setup.sh && bash bench/device/hybrid-bisect.sh
# BIS_BUDGET seconds (default 520); BIS_ORDER the runs (default below); logs in $OUT/main.log.
set -uo pipefail
R=${OUT:-/tmp/hybrid-bisect}; BUDGET=${BIS_BUDGET:-520}
source "$(dirname "$0")/steps.sh"
F=/root/models/48l-q4km.gguf
export MIXTILE_REPACK_CACHE=0
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); $(date -u)"
ln -sfn ../node_modules base/node_modules
( s=$(date +%s); cmake -S base/native -B base/native/build -DCMAKE_BUILD_TYPE=Release -DCMAKE_JS_INC="$PWD/.device/node-headers" \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$PWD/base/native/build/Release" >/dev/null && cmake --build base/native/build -j8 >/dev/null
  echo "BASE_BUILD rc=$? wall_s=$(($(date +%s) - s))" ) > "$R/base-build.log" 2>&1 &
BPID=$!
# The GEMV bench runs on the GPU while the CPU makes the file.
( OUT=$R/gemvq bash test/cuda/run-on-gpu.sh bench gemvq > "$R/gemvq.log" 2>&1 ) &
GPID=$!
mkdir -p /root/models
[ -s "$F" ] || step synth 200 node bin/mixtile.js synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 48 "$F"
wait $BPID; tee -a "$R/main.log" < "$R/base-build.log"
wait $GPID; grep -E "gemvq|gemv " "$R/gemvq.log" | tee -a "$R/main.log"
sync
# b TAG TREE [VAR=VALUE...]: one hybrid bench from TREE's CLI and addon.
b() {
  local tag=$1 tree=$2; shift 2
  ( cd "$tree" && step "$tag" 70 env MIXTILE_ADDON="$PWD/native/build/Release/mixtile.node" "$@" \
      node bin/mixtile.js bench -m "$F" -p 512 -n 128 -r 3 -v --optimize-config qwen3moe-hybrid )
}
for run in ${BIS_ORDER:-head base head-bf16 base head head-spin}; do
  case $run in
    head) b head . ;;
    base) b base base ;;
    head-bf16) b head-bf16 . MIXTILE_GPU_WEIGHTS=bf16 ;;
    head-spin) b head-spin . MIXTILE_POOL_SPIN=200000 ;;
  esac
done
grep -E "RUN |END |tg128|pp512|expert|wait|lm_head" "$R/main.log" | cut -c1-200
log "done"
