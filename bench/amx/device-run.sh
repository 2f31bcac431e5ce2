#!/usr/bin/env bash
# One call on the AMX + GPU test machine for issue 8, everything that needs AMX in one pass:
#   tests (AMX experts/linear, repack cache), the AMX/AVX-512 switch points (threshold-sweep.ts),
#   whole-model AMX-INT8 vs AMX-BF16 accuracy, CPU-only `mixtile bench` on a 4-layer Q4_K_M file
#   (first start: repack + cache write; second start: cache hit; AVX-512 only; decode threads),
#   and llama.cpp's llama-bench on the same file when its CPU build is done in time.
# Run from a snapshot root (scripts/device-snapshot.sh amx .anchor/llama.cpp-src.tar.xz) after
# `source .device/env.sh && bash .device/setup.sh`; logs go to $OUT (main.log, sweep.log, tests.log,
# llama-build.log). Every step checks the time left (AMX_RUN_BUDGET seconds from the start).
# Optional: AMX_RUN_LAYERS48=N also benches an N-layer Q4_K_M file; AMX_RUN_DECODE=0 skips the
# 1/4/8-thread decode runs.
set -uo pipefail
R=${OUT:-/tmp/amx-run}
BUDGET=${AMX_RUN_BUDGET:-390}
source "$(dirname "$0")/../device/steps.sh"
M=/tmp/amx-models
mkdir -p "$M"
export MIXTILE_REPACK_CACHE_DIR=/tmp/amx-repack-cache
X="node bin/mixtile.js"
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus, $(free -g | awk '/Mem/{print $2}') GiB, disk $(df -h /tmp | awk 'NR==2{print $4}') free; $(date -u)"

# llama.cpp CPU-only build in the background (flags as .anchor/device_pipeline.sh): it overlaps
# the tests and file writing, and is waited for (or killed) before anything is timed.
LL=/tmp/llama
if [ -f .anchor/llama.cpp-src.tar.xz ]; then
  mkdir -p "$LL" && tar -xJf .anchor/llama.cpp-src.tar.xz -C "$LL"
  # Its own process group (setsid), so it can be stopped whole by its id if it runs late.
  setsid bash -c '
    s=$(date +%s); NOAMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"; G=""; command -v ninja >/dev/null && G="-G Ninja"
    cmake -S "$0" -B "$0/build-cpu" $G -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
      "-DCMAKE_C_FLAGS=$NOAMX" "-DCMAKE_CXX_FLAGS=$NOAMX" && cmake --build "$0/build-cpu" -j16 --target llama-bench
    echo "BUILD_CPU rc=$? wall_s=$(($(date +%s) - s))"' "$LL" >"$R/llama-build.log" 2>&1 &
  LLPID=$!
  log "llama.cpp CPU build started in the background (process group $LLPID)"
fi

# 0. Can this machine run AMX at all? Kernel, flags, and the standalone harness (no Node), which
# tells a machine problem from an addon problem.
log "kernel $(uname -r); flags: $(grep -m1 -o 'amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
step harness-build 60 bash -c 'cmake -S bench/amx -B /tmp/amxh -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build /tmp/amxh -j16 --target amx-test'
step harness-test 60 /tmp/amxh/amx-test

# 1. Tests (AMX kernels, linear, repack cache, and the kernel suite that runs through them).
step tests 60 node --import tsx --test --test-concurrency=1 test/kernels/amx.test.ts test/kernels/amx-linear.test.ts \
  test/kernels/repack-cache.test.ts test/kernels/experts.test.ts test/kernels/experts-backend.test.ts \
  test/kernels/linear.test.ts test/kernels/attention.test.ts
grep -E '^# (tests|pass|fail|skipped)' "$R/main.log" | tail -5 | tee -a "$R/main.log"

# 2. Model files: 4-layer Q4_K_M (bench) and a BF16 file for the accuracy run (4 layers, or 2
# when files write slowly here); the write speed says what a 48-layer file costs.
Q4=$M/a3b-4l-q4km.gguf
s=$(date +%s)
step synth-q4 60 $X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 4 "$Q4"
e=$(($(date +%s) - s))
log "synth Q4_K_M 4L: $(stat -c %s "$Q4" 2>/dev/null) bytes in $e s"
BL=4
[ "$e" -gt 12 ] && BL=2
B4=$M/a3b-${BL}l-bf16.gguf
s=$(date +%s)
step synth-bf16 80 $X synth --preset qwen3-30b-a3b --file-type BF16 --layers $BL "$B4"
log "synth BF16 ${BL}L: $(stat -c %s "$B4" 2>/dev/null) bytes in $(($(date +%s) - s)) s"

# 3. Whole-model accuracy: AMX-INT8 experts vs AMX-BF16 on the BF16 file (cache off: fresh
# repacks). Not a timing run, so it may overlap the llama.cpp build.
step accuracy 70 env MIXTILE_REPACK_CACHE=0 node --import tsx test/hf/amx-int8-accuracy.ts "$B4" 2048 512
rm -f "$B4"

if [ -n "${LLPID:-}" ]; then
  w=$(($(left) - 200))
  [ $w -lt 0 ] && w=0
  log "waiting up to $w s for the llama.cpp build"
  for _ in $(seq 1 $w); do kill -0 "$LLPID" 2>/dev/null || break; sleep 1; done
  if kill -0 "$LLPID" 2>/dev/null; then
    kill -- -"$LLPID" 2>/dev/null
    log "llama.cpp build not done in time: stopped"
  fi
  tail -2 "$R/llama-build.log" | tee -a "$R/main.log"
fi

# 4. Switch points (experts and linear, AMX vs AVX-512 over the source weights, 1/4/8/16 threads).
step sweep 70 env MIXTILE_AMX_MIN_CALL_TOKENS=1 MIXTILE_AMX_LINEAR_MIN_TOKENS=1 \
  node --import tsx bench/amx/threshold-sweep.ts q4_k,bf16 5
grep -A200 '^## experts q4_k' "$R/main.log" | grep -E '^\||threshold|^## ' >"$R/sweep.log"

# 5. CPU-only model bench, 16 threads: first start (repack, cache written), second start (cache hit).
rm -rf "$MIXTILE_REPACK_CACHE_DIR"
step bench-first 40 $X bench -m "$Q4" -p 512,2048 -n 128 -r 2 -t 16 -v
step bench-second 30 $X bench -m "$Q4" -p 512 -n 128 -r 2 -t 16
du -sh "$MIXTILE_REPACK_CACHE_DIR" | tee -a "$R/main.log"
LB=$LL/build-cpu/bin/llama-bench
[ -x "$LB" ] && step llama-bench 40 env CUDA_VISIBLE_DEVICES= "$LB" -m "$Q4" -p 512 -n 128 -r 2 -t 16
step bench-avx512 40 env MIXTILE_ISA=avx512bf16 $X bench -m "$Q4" -p 512 -n 128 -r 2 -t 16
if [ "${AMX_RUN_DECODE:-1}" = 1 ]; then
  for t in 1 4 8; do step "decode-t$t" 25 $X bench -m "$Q4" -p 0 -n 64 -r 2 -t $t; done
fi

# 6. Optional: a deeper Q4_K_M file (AMX_RUN_LAYERS48=N layers), cache off (the disk there has
# room for the file but not for its INT8 panels as well); the 4-layer files and cache go first.
if [ -n "${AMX_RUN_LAYERS48:-}" ]; then
  L=$AMX_RUN_LAYERS48
  F=$M/a3b-${L}l-q4km.gguf
  rm -rf "$MIXTILE_REPACK_CACHE_DIR" "$Q4"
  s=$(date +%s)
  step "synth-q4-${L}L" 60 $X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers "$L" "$F"
  log "synth Q4_K_M ${L}L: $(stat -c %s "$F" 2>/dev/null) bytes in $(($(date +%s) - s)) s"
  step "bench-${L}L" 40 env MIXTILE_REPACK_CACHE=0 $X bench -m "$F" -p 512 -n 128 -r 2 -t 16
  step "bench-${L}L-avx512" 30 env MIXTILE_REPACK_CACHE=0 MIXTILE_ISA=avx512bf16 $X bench -m "$F" -p 512 -n 128 -r 2 -t 16
  [ -x "$LB" ] && step "llama-bench-${L}L" 40 env CUDA_VISIBLE_DEVICES= "$LB" -m "$F" -p 512 -n 128 -r 2 -t 16
fi
log "done, $(left) s left"
