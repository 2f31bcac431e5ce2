#!/bin/bash
# One device call for the GPU experts (issue 9 item 6), after `source .device/env.sh && bash .device/setup.sh`
# (which builds the addon and libmixtile-cuda.so with cuBLAS into native/build/Release):
#   1. PCIe H2D GB/s in expert-sized copies: registered read-only file mapping vs cudaHostAlloc vs pageable;
#   2. one Qwen3-30B-A3B layer's experts (Q4_K_M mix, then BF16) on the CPU, the GPU (streamed) and split,
#      per token count: `bench-op --device cpu,gpu,split` (the crossover);
#   3. GPU experts vs the CPU kernel through the addon (src/native/gpu-experts.test.ts, real GPU);
#   4. the kernel checks (cuda-kernels-test.cc, the routed-experts ones last) against the built library;
#   5. with LAYERS=N: `mixtile bench` pp512 / pp2048 (ubatch 2048) of an N-layer synthetic Qwen3-30B-A3B
#      Q4_K_M, hybrid rules (qwen3moe-hybrid-amx) with the experts' prefill on the CPU, split, and all on the GPU;
#      with PREFETCH_AB=1 instead: split and all-GPU, each with the next layer's prefetch on and off
#      (MIXTILE_GPU_EXPERTS_PREFETCH), alternated, two rounds.
# SKIP_KERNELS=1 skips step 4; ONLY_MODEL=1 skips steps 1-4. Logs go to $OUT (or /tmp/gpu-experts-out).
# Usage: [LAYERS=8] [PREFETCH_AB=1] [ONLY_MODEL=1] bash test/cuda/gpu-experts-on-device.sh [tokens]
set -o pipefail
OUT=${OUT:-/tmp/gpu-experts-out}
mkdir -p "$OUT"
TOKENS=${1:-1,8,32,128,512,2048}
L=$PWD/native/build/Release
export MIXTILE_CUDA_LIB=$L/libmixtile-cuda.so
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv | tee "$OUT/smi.txt"
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a "$OUT/smi.txt"
ls -la "$L"
if [ -z "$ONLY_MODEL" ]; then
for p in "h2d:test/cuda/h2d-mmap-check.cc" "kt:test/cuda/cuda-kernels-test.cc"; do
  g++ -O2 -std=c++17 -I test/cuda -I native/src/cuda "${p#*:}" -L"$L" -l:libmixtile-cuda.so -Wl,-rpath,"$L" -o "/tmp/${p%%:*}" || exit 1
done
stamp "built the check programs"
/tmp/h2d 1024 2>&1 | tee "$OUT/h2d.log"
stamp "h2d done"
bench() {
  timeout 150 node --import tsx src/engine/bench-op.ts --op experts --device cpu,gpu,split --reps 5 --probe-mib 0 "$@" 2>&1
}
bench --type q4_k --down-type q6_k --tokens "$TOKENS" | tee "$OUT/bench-q4km.log"
stamp "bench q4_k_m done"
bench --type bf16 --tokens 128,512,2048 | tee "$OUT/bench-bf16.log"
stamp "bench bf16 done"
timeout 90 node --import tsx --test src/native/gpu-experts.test.ts test/engine/gpu-experts-prefill.test.ts > "$OUT/ts-test.log" 2>&1
grep -E "^# (pass|fail)|^not ok" "$OUT/ts-test.log"
stamp "ts test done"
if [ -z "$SKIP_KERNELS" ]; then
  timeout 150 /tmp/kt > "$OUT/kernels.log" 2>&1
  echo "kernel test exit $?"
  grep -v '^PASS' "$OUT/kernels.log" | tail -20
  grep -E "q5_K|gather_rows|moe_combine|expert on raw" "$OUT/kernels.log"
  stamp "kernel checks done"
fi
fi
if [ -n "$LAYERS" ]; then
  M=/tmp/a3b-${LAYERS}l-q4km.gguf
  timeout 120 node bin/mixtile.js synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers "$LAYERS" "$M" 2>&1 | tail -2
  stamp "synth done"
  C=/tmp/hybrid-experts-cpu.yaml
  # The preset puts the experts' prefill on the GPU; the CPU variant changes only that (the embedding's
  # device must stay as it is).
  node -e 'const fs = require("fs"); const s = fs.readFileSync(process.argv[1], "utf8");
    fs.writeFileSync(process.argv[2], s.replace(/(class: Experts\n\s+kwargs:\n(?:\s+.*\n)*?\s+)prefill_device: cuda/, "$1prefill_device: cpu"));' \
    src/optimize/rules/qwen3moe-hybrid-amx.yaml "$C"
  grep -n "prefill_device" "$C" | head -2
  model() {
    echo "## $1"
    timeout 100 node bin/mixtile.js bench -m "$M" -p 512,2048 -n 0 -r ${REPS:-3} --ubatch 2048 --rules "$2" 2>&1 | grep -v "^mixtile: repacked"
  }
  if [ -n "$PREFETCH_AB" ]; then
    for round in 1 2; do
      for pf in 1 0; do
        MIXTILE_GPU_EXPERTS_PREFETCH=$pf MIXTILE_EXPERTS_PREFILL=split model "round $round: split, prefetch $pf" qwen3moe-hybrid-amx | tee -a "$OUT/model.log"
        stamp "split prefetch $pf"
      done
    done
    for pf in 1 0; do
      MIXTILE_GPU_EXPERTS_PREFETCH=$pf MIXTILE_EXPERTS_PREFILL=gpu model "all on the GPU, prefetch $pf" qwen3moe-hybrid-amx | tee -a "$OUT/model.log"
      stamp "gpu prefetch $pf"
    done
  else
    model "experts prefill on the CPU" "$C" | tee "$OUT/model.log"
    MIXTILE_EXPERTS_PREFILL=split model "experts prefill split GPU + CPU (cost model)" qwen3moe-hybrid-amx | tee -a "$OUT/model.log"
    MIXTILE_EXPERTS_PREFILL=gpu model "experts prefill all on the GPU" qwen3moe-hybrid-amx | tee -a "$OUT/model.log"
  fi
  stamp "model benches done"
fi
