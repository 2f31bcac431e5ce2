#!/usr/bin/env bash
# Q4K panels (backend AMXInt4) on the AMX machine, no Node needed: builds the standalone harness,
# runs amx-test (every AMX path incl. Q4K vs the float64 replay, AVX-512 = AMX bit for bit) and,
# when it passes, amx-q4k-bench (Q4K vs INT8 panels from the same Q4_K weights, 16 threads).
# From a snapshot root (scripts/device-snapshot.sh q4amx): bash bench/amx/q4k-device.sh
# Logs: $OUT/q4k-test.txt, $OUT/q4k-bench.txt.
set -uo pipefail
R=${OUT:-/tmp/q4k-run}
mkdir -p "$R"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus, kernel $(uname -r); $(date -u)" | tee "$R/q4k-test.txt"
s=$(date +%s)
cmake -S bench/amx -B /tmp/q4kh -DCMAKE_BUILD_TYPE=Release >/dev/null &&
  cmake --build /tmp/q4kh -j"$(nproc)" --target amx-test amx-q4k-bench >"$R/q4k-build.txt" 2>&1 || { tail -30 "$R/q4k-build.txt"; exit 1; }
echo "harness built in $(($(date +%s) - s)) s" | tee -a "$R/q4k-test.txt"
/tmp/q4kh/amx-test >>"$R/q4k-test.txt" 2>&1
rc=$?
grep -E "q4k|FAIL|PASSED|FAILED|accuracy|rel_l2" "$R/q4k-test.txt" | grep -vE "^ok .*(bf16|int8)" | tail -40
[ $rc -eq 0 ] || { echo "amx-test failed (rc $rc): no bench"; exit $rc; }
timeout 300 /tmp/q4kh/amx-q4k-bench 16 2>&1 | tee "$R/q4k-bench.txt"
