#!/usr/bin/env bash
# llama.cpp's llama-bench and `mixtile bench` on the same synthetic Qwen3-30B-A3B-shaped GGUFs, in
# one run, printing t/s, ratios and peak RSS as a markdown table (raw JSON kept in $DIR).
#
# Needs llama-bench: `../shared/anchor/prepare` then `nice -n 19 .anchor/build-local.sh` (~8 min).
# Usage (from the repo root):
#   bench/compare-llamacpp.sh [-t THREADS] [-r REPS] [-p N_PROMPT] [-n N_GEN] [-l "4 8"] [-f "Q4_K_M BF16"] [-d DIR] [-a ROUNDS] [-v]
# -a ROUNDS runs both programs ROUNDS times per file, alternating which goes first (a shared box's
# load moves from minute to minute: compare within a round). -v adds `mixtile bench -v`'s
# per-op tables (where a step goes) to stderr. Example: bench/compare-llamacpp.sh -t 2 -r 3 -l 4 -f Q4_K_M -a 2
# Env: LLAMA_BENCH (default .anchor/llama.cpp/build/bin/llama-bench), LLAMA_ARGS (extra llama-bench
# flags, e.g. "-lm none"), MIXTILE (default: the CLI from src/ through tsx), MIXTILE_ADDON (another native build).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

threads=$(nproc); reps=3; n_prompt=512; n_gen=128; layers="4 8"; types="Q4_K_M BF16"; dir=/tmp/mixtile-compare
rounds=1; verbose=0
while getopts "t:r:p:n:l:f:d:a:v" o; do
  case $o in
    t) threads=$OPTARG ;; r) reps=$OPTARG ;; p) n_prompt=$OPTARG ;; n) n_gen=$OPTARG ;;
    l) layers=$OPTARG ;; f) types=$OPTARG ;; d) dir=$OPTARG ;; a) rounds=$OPTARG ;; v) verbose=1 ;;
    *) sed -n 2,13p "$0"; exit 2 ;;
  esac
done
llama_bench=${LLAMA_BENCH:-$root/.anchor/llama.cpp/build/bin/llama-bench}
mixtile=${MIXTILE:-node --import tsx $root/src/cli/index.ts}
if [ ! -x "$llama_bench" ]; then
  echo "llama-bench not found at $llama_bench; run ../shared/anchor/prepare, then nice -n 19 .anchor/build-local.sh" >&2
  exit 1
fi
mkdir -p "$dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
load() { cut -d' ' -f1 /proc/loadavg; }

# Peak RSS of each benchmark process from GNU time (%M, KiB), measured the same way for both;
# the 1-minute load average at its start goes beside it.
run_llama() {
  load > "$1.llama.load"
  echo "llama-bench $f (load $(cat "$1.llama.load"))" >&2
  /usr/bin/time -f %M -o "$1.llama.rss" "$llama_bench" -m "$f" -p "$n_prompt" -n "$n_gen" -r "$reps" -t "$threads" ${LLAMA_ARGS:-} -o json > "$1.llama.json"
}
run_mixtile() {
  load > "$1.mixtile.load"
  echo "mixtile bench $f (load $(cat "$1.mixtile.load"))" >&2
  /usr/bin/time -f %M -o "$1.mixtile.rss" $mixtile bench -m "$f" -p "$n_prompt" -n "$n_gen" -r "$reps" -t "$threads" -o json > "$1.mixtile.json"
  if [ "$verbose" = 1 ]; then
    $mixtile bench -m "$f" -p "$n_prompt" -n "$n_gen" -r 1 -t "$threads" -v >&2
  fi
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) vCPU, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
results=()
for l in $layers; do
  for t in $types; do
    f="$dir/q30b-${l}L-$t.gguf"
    if [ ! -f "$f" ]; then
      echo "synth $f" >&2
      $mixtile synth --preset qwen3-30b-a3b --layers "$l" --file-type "$t" "$f" >&2
    fi
    # Both programs mmap the file: read it once so neither pays the first disk read.
    cat "$f" > /dev/null
    for ((round = 1; round <= rounds; round++)); do
      base="$dir/$stamp-${l}L-$t-r$round"
      if ((round % 2 == 1)); then run_llama "$base"; run_mixtile "$base"; else run_mixtile "$base"; run_llama "$base"; fi
      results+=("$l $t $round $base")
    done
  done
done

# One table row per test and round: llama.cpp and ours as mean ± sd and best of the repetitions (on
# a shared box the best run is the one least disturbed), their ratios, load at the start of each,
# peak RSS, our TS overhead per step.
printf '%s\n' "${results[@]}" | node -e '
const fs = require("node:fs");
const rows = fs.readFileSync(0, "utf8").trim().split("\n").map((l) => l.split(" "));
const rss = (f) => Number(fs.readFileSync(f, "utf8").trim().split("\n").pop()) / 2 ** 20;
const load = (f) => fs.readFileSync(f, "utf8").trim();
const fmt = (r) => `${r.avg_ts.toFixed(2)} ± ${r.stddev_ts.toFixed(2)}`;
const best = (r) => Math.max(...r.samples_ts);
console.log("| file | test | round | llama.cpp t/s | mixtile t/s | ratio | llama.cpp best | mixtile best | best ratio | load (llama, mixtile) | llama.cpp peak RSS | mixtile peak RSS | mixtile TS ms/step |");
console.log("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const [l, t, round, base] of rows) {
  const llama = JSON.parse(fs.readFileSync(base + ".llama.json", "utf8"));
  const ours = JSON.parse(fs.readFileSync(base + ".mixtile.json", "utf8"));
  for (const m of ours) {
    const ref = llama.find((x) => x.n_prompt === m.n_prompt && x.n_gen === m.n_gen);
    const ratio = (a, b) => (ref ? (a / b).toFixed(2) + "×" : "-");
    console.log(`| ${l}L ${t} | ${m.test} | ${round} | ${ref ? fmt(ref) : "-"} | ${fmt(m)} | ${ratio(m.avg_ts, ref?.avg_ts)} | ` +
      `${ref ? best(ref).toFixed(2) : "-"} | ${best(m).toFixed(2)} | ${ratio(best(m), ref && best(ref))} | ` +
      `${load(base + ".llama.load")}, ${load(base + ".mixtile.load")} | ` +
      `${rss(base + ".llama.rss").toFixed(2)} GiB | ${rss(base + ".mixtile.rss").toFixed(2)} GiB | ${m.ts_overhead_ms_per_step.toFixed(3)} |`);
  }
}
'
