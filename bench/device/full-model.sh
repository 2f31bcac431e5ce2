#!/usr/bin/env bash
# One call on the AMX + GPU test machine: the full 48-layer synthetic Qwen3-30B-A3B Q4_K_M, Mixtile's
# hybrid (GPU + CPU) and CPU-only engines against llama.cpp's CPU-only llama-bench built in the same call
# (its CUDA build takes too long for one call: the hybrid baseline is ../shared/anchor/README.md's,
# measured on this machine type the same day). Also the 48-layer hybrid decode breakdown.
# Run from a snapshot root (scripts/device-snapshot.sh lead .anchor/llama.cpp-src.tar.xz) after
# `export MIXTILE_CUDA_ARCHS=90 && source .device/env.sh && bash .device/setup.sh`; logs go to $OUT/main.log.
# FULL_LAYERS (default 48), FULL_BUDGET seconds (default 560).
set -uo pipefail
R=${OUT:-/tmp/full-run}; BUDGET=${FULL_BUDGET:-560}; L=${FULL_LAYERS:-48}
source "$(dirname "$0")/steps.sh"
X="node bin/mixtile.js"; F=/tmp/a3b-${L}l-q4km.gguf
export MIXTILE_REPACK_CACHE=0   # the 48L INT8 cache (~35 GB) does not fit beside the file on this disk
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus, $(free -g | awk '/Mem/{print $2}') GiB; $(nvidia-smi --query-gpu=name --format=csv,noheader 2>&1); $(date -u)"
LL=/tmp/llama; mkdir -p "$LL" && tar -xJf .anchor/llama.cpp-src.tar.xz -C "$LL"
NOAMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"   # llama.cpp's AMX path segfaults on this CPU (anchor README)
G=""; command -v ninja >/dev/null && G="-G Ninja"
( s=$(date +%s); cmake -S "$LL" -B "$LL/build-cpu" $G -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    "-DCMAKE_C_FLAGS=$NOAMX" "-DCMAKE_CXX_FLAGS=$NOAMX" && cmake --build "$LL/build-cpu" -j16 --target llama-bench
  echo "BUILD_CPU rc=$? wall_s=$(($(date +%s) - s))" ) > "$R/llama-build.log" 2>&1 &
BPID=$!
step synth 200 $X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers "$L" "$F"
wait $BPID; tail -1 "$R/llama-build.log" | tee -a "$R/main.log"
LB=$LL/build-cpu/bin/llama-bench
sync
step hybrid 120 $X bench -m "$F" -p 512,2048 -n 128 -r 2 --ubatch 2048 --optimize-config qwen3moe-hybrid
step cpu-amx 110 $X bench -m "$F" -p 512 -n 128 -r 2 -t 16 --optimize-config cpu
[ -x "$LB" ] && step llama-cpu 90 env CUDA_VISIBLE_DEVICES= "$LB" -m "$F" -p 512 -n 128 -r 2 -t 16
step hybrid-decode-breakdown 60 node --import tsx test/engine/hybrid-vs-cpu.ts "$F" 64 32
log "done"
