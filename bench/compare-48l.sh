#!/usr/bin/env bash
# The full 48-layer Qwen3-30B-A3B-shaped Q4_K_M file (~18.6 GB) against llama.cpp: what issue 5's
# decode goal is about (at 4 layers the Q6_K lm_head is 2/3 of a token; at 48 the experts dominate).
# Synthesizes the file once (2-3 min; needs ~19 GB of disk in DIR and RAM for it to stay in the
# page cache), then runs bench/compare-llamacpp.sh with alternated rounds.
# Usage (from the repo root): bench/compare-48l.sh [-d DIR] [-t THREADS] [-r REPS] [-a ROUNDS] [-v]
# Example, at a quiet moment: bench/compare-48l.sh -d /work/gguf -t 2 -r 3 -a 2
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=/tmp/mixtile-compare; threads=2; reps=3; rounds=2; verbose=()
while getopts "d:t:r:a:v" o; do
  case $o in
    d) dir=$OPTARG ;; t) threads=$OPTARG ;; r) reps=$OPTARG ;; a) rounds=$OPTARG ;; v) verbose=(-v) ;;
    *) sed -n 2,7p "$0"; exit 2 ;;
  esac
done
file_gb=19
mem_gb=$(awk '/MemTotal/ { printf "%d", $2 / 1048576 }' /proc/meminfo)
if ((mem_gb < file_gb + 3)); then
  echo "compare-48l: ${mem_gb} GiB of RAM cannot keep the ${file_gb} GB file in the page cache; the figures would measure the disk" >&2
  exit 1
fi
mkdir -p "$dir"
if [ ! -f "$dir/q30b-48L-Q4_K_M.gguf" ]; then
  free_gb=$(df -BG --output=avail "$dir" | tail -1 | tr -dc 0-9)
  if ((free_gb < file_gb + 2)); then
    echo "compare-48l: $dir has ${free_gb} GB free, the 48-layer file needs ${file_gb}" >&2
    exit 1
  fi
fi
exec "$root/bench/compare-llamacpp.sh" -t "$threads" -r "$reps" -p 512 -n 128 -l 48 -f Q4_K_M -d "$dir" -a "$rounds" "${verbose[@]}"
