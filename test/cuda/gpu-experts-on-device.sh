#!/bin/bash
# One device call for the GPU experts (issue 9 item 6), after `source .device/env.sh && bash .device/setup.sh`
# (which builds the addon and libmixtile-cuda.so with cuBLAS into native/build/Release):
#   1. PCIe H2D GB/s in expert-sized copies: registered read-only file mapping vs cudaHostAlloc vs pageable;
#   2. one Qwen3-30B-A3B layer's experts (Q4_K_M mix, then BF16) on the CPU, the GPU (streamed) and split,
#      per token count: `bench-op --device cpu,gpu,split` (the crossover);
#   3. GPU experts vs the CPU kernel through the addon (src/native/gpu-experts.test.ts, real GPU);
#   4. the kernel checks (cuda-kernels-test.cc, the routed-experts ones last) against the built library.
# Logs go to $OUT (or /tmp/gpu-experts-out). Usage: bash test/cuda/gpu-experts-on-device.sh [tokens]
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
timeout 60 node --import tsx --test src/native/gpu-experts.test.ts > "$OUT/ts-test.log" 2>&1
grep -E "^# (pass|fail)|^not ok" "$OUT/ts-test.log"
stamp "ts test done"
timeout 150 /tmp/kt > "$OUT/kernels.log" 2>&1
echo "kernel test exit $?"
grep -v '^PASS' "$OUT/kernels.log" | tail -20
grep -E "q5_K|gather_rows|moe_combine|expert on raw" "$OUT/kernels.log"
stamp "all done"
