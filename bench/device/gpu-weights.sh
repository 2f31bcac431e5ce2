#!/usr/bin/env bash
# GPU linear weights kept quantized (MIXTILE_GPU_WEIGHTS=quantized) vs widened to BF16, in one device call on the
# AMX + GPU test machine: the CUDA kernel test (cuda-kernels-test.cc, built against the cuBLAS library that
# .device/setup.sh made), then `bench -p 512 -n 64 -r 2` of the hybrid with each mode, alternated, printing peak VRAM,
# and `inspect --rules` (the fit check's figures) of each. The 48-layer file if the machine still has it, else an
# 8-layer one made here. Experts on AVX-512 (MIXTILE_AMX_BACKEND=off: no INT8 repack per load; the GPU half is what
# changes). Logs in $OUT/main.log.
#   scripts/device-snapshot.sh NAME && run (carry [".snap/NAME"], timeout_s 300):
#   export GPUW_T0=$(date +%s) && cd .snap/NAME && export MIXTILE_CUDA_ARCHS=90 && source .device/env.sh &&
#     bash .device/setup.sh && bash bench/device/gpu-weights.sh
# GPUW_T0 (the call's start) and GPUW_LIMIT (default 285 s) bound the script's own budget after the setup.
set -uo pipefail
R=${OUT:-/tmp/gpuw-out}; BUDGET=$(( ${GPUW_LIMIT:-285} - ($(date +%s) - ${GPUW_T0:-$(date +%s)}) ))
source "$(dirname "$0")/steps.sh"
X="node bin/mixtile.js"
export MIXTILE_AMX_BACKEND=off MIXTILE_REPACK_CACHE=0
log "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1); $(date -u)"
L=native/build/Release
g++ -O2 -std=c++17 -Itest/cuda -Inative/src -Inative/src/cuda test/cuda/cuda-kernels-test.cc native/src/cpu/dequant/dequant.cc \
  native/src/tensor.cc -L$L -lmixtile-cuda -Wl,-rpath,$PWD/$L -o /tmp/cuda-kernels-test > "$R/kt-build.log" 2>&1 &
KT=$!
F=/root/models/48l-q4km.gguf
if [ ! -f "$F" ]; then
  F=/root/models/8l-q4km.gguf
  [ -f "$F" ] || { mkdir -p /root/models; step synth 120 $X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 8 "$F"; }
fi
log "model $F"
for mode in bf16 quantized; do
  MIXTILE_GPU_WEIGHTS=$mode step "inspect-$mode" 20 $X inspect "$F" --rules qwen3moe-hybrid --ctx 4096
done
grep "GPU as loaded" "$R/main.log"
wait $KT; log "kernel test build rc=$?"; tail -5 "$R/kt-build.log"
step kernel-test 20 timeout 60 /tmp/cuda-kernels-test
for mode in quantized bf16 quantized; do
  MIXTILE_GPU_WEIGHTS=$mode step "bench-$mode" 40 $X bench -m "$F" -p 512 -n 64 -r 2 --optimize-config qwen3moe-hybrid
done
grep -E "^FAIL|passed, |gemv q4_K m=1 n=513 k=4096|SKIP" "$R/main.log"
grep -E "^\| |peak VRAM|RUN bench|END bench" "$R/main.log"
