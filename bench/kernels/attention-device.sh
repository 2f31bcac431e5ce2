#!/bin/bash
# Attention core on the test machine, one device call (from a snapshot, after .device/setup.sh):
# the kernel alone (bench/kernels/attention-bench.ts: every entry alternated) for a 512-token
# prefill chunk at depths 0 and 1536 with f16 and bf16 caches, one-token decode at depths
# 511 / 2047 / 8191 (where the flash entries split KV ranges at 16 threads), and optionally a
# model's pp512/pp2048 with per-op times. Logs under ${OUT:-/tmp}/attention-*.txt.
#   bash bench/kernels/attention-device.sh [model.gguf] [threads=16]
set -u
MODEL=${1:-}
T=${2:-16}
O=${OUT:-/tmp}
run() { echo "\$ $*"; "$@"; }
{
  for kv in f16 bf16; do run env MIXTILE_THREADS=$T node --import tsx bench/kernels/attention-bench.ts 7 $kv 512 0,1536; done
  run env MIXTILE_THREADS=$T node --import tsx bench/kernels/attention-bench.ts 51 f16 1 511,2047,8191
} 2>&1 | tee "$O/attention-kernel.txt"
if [ -n "$MODEL" ]; then
  run node bin/mixtile.js bench -m "$MODEL" -p 512,2048 -n 0 -r 2 -t "$T" -v 2>&1 | tee "$O/attention-model.txt"
fi
