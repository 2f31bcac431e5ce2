#!/bin/bash
# One device call: build libmixtile-cuda (sm_90) with its test and bench programs, run the kernel
# test, the PyTorch SDPA check and the benchmarks; logs go to $OUT (or /tmp/mxc-out).
# Usage from the repo root on the GPU machine: bash test/cuda/run-on-gpu.sh [test|bench|all] [bench sections...]
# (sections: copy decode prefill gemm gemvq ops pcie step; none = all)
set -o pipefail
OUT=${OUT:-/tmp/mxc-out}
mkdir -p "$OUT"
what=${1:-all}
shift
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,pcie.link.gen.current,pcie.link.width.current \
  --format=csv 2>&1 | tee "$OUT/smi.txt"
export MIXTILE_CUDA_ARCHS=${MIXTILE_CUDA_ARCHS:-90}
t0=$(date +%s)
cmake -S test/cuda -B /tmp/mxc -DCMAKE_BUILD_TYPE=Release > "$OUT/build.log" 2>&1 &&
  cmake --build /tmp/mxc -j 16 >> "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
grep "cuBLAS" "$OUT/build.log"
echo "build: $(( $(date +%s) - t0 )) s"
rc=0
if [ "$what" != bench ]; then
  timeout 240 /tmp/mxc/mixtile-cuda-test > "$OUT/test.log" 2>&1; rc=$?
  grep -v '^PASS' "$OUT/test.log"; echo "test exit code $rc"
  PYTHONUNBUFFERED=1 timeout 120 python3 test/cuda/sdpa-check.py /tmp/mxc/lib/libmixtile-cuda.so 2>&1 | tee "$OUT/sdpa.log"
fi
if [ "$what" != test ]; then
  timeout 300 /tmp/mxc/mixtile-cuda-bench "$@" 2>&1 | tee "$OUT/bench.log"
fi
exit $rc
