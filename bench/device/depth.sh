#!/usr/bin/env bash
# Issue 9's depth figures on the AMX + GPU test machine: Mixtile's hybrid against llama.cpp's CUDA llama-bench
# (-ngl 99 -ncmoe 99, i.e. --cpu-moe) on the 48-layer synthetic Qwen3-30B-A3B Q4_K_M, prefill and decode at context
# depths 0 / 4096 / 16384 (llama-bench -d), the time to first token of whole 4K and 16K prompts, peak VRAM
# (each program's own count, nvidia-smi sampled every 200 ms) and peak host RSS.
#
# llama.cpp's CUDA build does not fit one call beside the rest, so this script resumes: state lives in /root
# (kept while the machine stays warm, i.e. when the next call follows within 30 s). Each call does what is left:
# start the build in the background (setsid: it survives the call), make the model file if absent, wait for the
# build, then run the benches not yet done, each one time-boxed. Run it again until main.log says "all done".
#   scripts/device-snapshot.sh NAME .anchor/llama.cpp-src.tar.xz .anchor/maxrss.py && git rev-parse --short HEAD > .snap/NAME/.snap-commit
#   run (carry [".snap/NAME"]):
#   if [ -d /root/mx ]; then cd /root/mx; else cd .snap/NAME && bash bench/device/depth.sh --start-build &&
#     export MIXTILE_CUDA_ARCHS=90 && source .device/env.sh && bash .device/setup.sh && rm -rf /root/mx &&
#     cp -a . /root/mx && cd /root/mx; fi; source .device/env.sh && bash bench/device/depth.sh
# Files back in $OUT (8 at most): main.log (progress, summaries, llama.cpp's buffer lines, the build's tail),
# {mx,ll}-depth.json, {mx,ll}-ttft.json (bench -o json of each), smi.csv (nvidia-smi samples, labelled by run).
# DEPTH_BUDGET seconds for this call (default 540), DEPTHS (default 0,4096,16384), REPS (default 2).
set -uo pipefail
OUTDIR=${OUT:-/tmp/depth-out}; mkdir -p "$OUTDIR"
R=/root/depth-res; BUDGET=${DEPTH_BUDGET:-540}
source "$(dirname "$0")/steps.sh"
DEPTHS=${DEPTHS:-0,4096,16384}; REPS=${REPS:-2}
X="node bin/mixtile.js"; F=/root/models/48l-q4km.gguf
LL=/root/llama; LB=$LL/build-cuda/bin/llama-bench; BLOG=$R/llama-build.log
export MIXTILE_REPACK_CACHE=0   # the 48L INT8 cache (~35 GB) does not fit beside the file and the build on this disk
publish() { cp -f "$R"/main.log "$R"/*.json "$R"/smi.csv "$OUTDIR"/ 2>/dev/null; true; }
trap publish EXIT
log "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus, $(free -g | awk '/Mem/{print $2}') GiB;" \
  "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1); $(date -u); code $(cat .snap-commit 2>/dev/null)"

# ---- llama.cpp v0.5.0 with CUDA (flags as ../shared/anchor/device_pipeline.sh: no AMX, cuBLAS, sm_90) ----
build_llama() {
  local s=$(date +%s) NOAMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" G="" EXTRA=()
  command -v ninja >/dev/null && G="-G Ninja"
  NVCC=$(readlink -f "$(command -v nvcc)"); CUDA_HOME=$(dirname "$(dirname "$NVCC")")
  LIB=$(ls "$CUDA_HOME"/lib64/libcublas.so* "$CUDA_HOME"/targets/x86_64-linux/lib/libcublas.so* 2>/dev/null | head -1)
  INC=$(ls "$CUDA_HOME"/include/cublas_v2.h "$CUDA_HOME"/targets/x86_64-linux/include/cublas_v2.h 2>/dev/null | head -1)
  if [ -z "$LIB" ] || [ -z "$INC" ]; then   # cuBLAS from a pip wheel, as the anchor found it on this machine type
    LIB=$(find /usr /opt /root /home -name 'libcublas.so*' 2>/dev/null | grep -v -i lt | sort | head -1)
    INC=$(find /usr /opt /root /home -name 'cublas_v2.h' 2>/dev/null | head -1)
    LIBLT=$(ls "$(dirname "$LIB")"/libcublasLt.so* 2>/dev/null | sort | head -1)
    mkdir -p "$LL/cudashim"; ln -sf "$LIB" "$LL/cudashim/libcublas.so"; ln -sf "$LIBLT" "$LL/cudashim/libcublasLt.so"
    EXTRA=(-DCUDA_cublas_LIBRARY="$LL/cudashim/libcublas.so" -DCUDA_cublasLt_LIBRARY="$LL/cudashim/libcublasLt.so" "-DCMAKE_CUDA_FLAGS=-I$(dirname "$INC")")
    echo "export LD_LIBRARY_PATH=$(dirname "$LIB"):\${LD_LIBRARY_PATH:-}" > "$LL/ldpath.sh"
  fi
  echo "nvcc=$NVCC cublas=$LIB $INC ${EXTRA[*]}"
  cmake -S "$LL" -B "$LL/build-cuda" $G -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    "-DCMAKE_C_FLAGS=$NOAMX" "-DCMAKE_CXX_FLAGS=$NOAMX" -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_NCCL=OFF "${EXTRA[@]}" &&
    cmake --build "$LL/build-cuda" -j"$(nproc)" --target llama-bench
  echo "BUILD_CUDA rc=$? wall_s=$(($(date +%s) - s))"
}
building() { [ -f "$R/build.pid" ] && kill -0 "$(cat "$R/build.pid")" 2>/dev/null; }
if [ ! -x "$LB" ] && ! building; then
  rm -rf "$LL"; mkdir -p "$LL" && tar -xJf .anchor/llama.cpp-src.tar.xz -C "$LL"
  export -f build_llama; export LL
  setsid nohup nice -n 19 bash -c build_llama > "$BLOG" 2>&1 < /dev/null &   # nice: other runs may share the machine
  echo $! > "$R/build.pid"
  log "llama.cpp CUDA build started in the background (log $BLOG)"
fi
[ "${1:-}" = "--start-build" ] && exit 0   # first thing in call 1, before Mixtile's own setup

# ---- the model file (recipe of bench/device/full-model.sh), written under a temporary name ----
if [ ! -f "$F" ]; then
  mkdir -p /root/models
  step synth 200 $X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 48 "$F.part" && mv "$F.part" "$F"
fi
ls -la "$F" >> "$R/main.log" 2>&1; df -h /root | tail -1 >> "$R/main.log"

# ---- wait for the build: nothing is timed while 16 compile jobs run ----
while [ ! -x "$LB" ] && building && [ "$(left)" -gt 30 ]; do sleep 10; done
log "llama.cpp build: $(tail -1 "$BLOG" 2>/dev/null) (binary $([ -x "$LB" ] && echo present || echo ABSENT))"
if [ ! -x "$LB" ]; then
  building && { log "build still running: call again"; exit 0; }
  grep -E "error|FAILED" "$BLOG" | head -20 >> "$R/main.log"   # failed: Mixtile's runs go on alone
fi
[ -f "$LL/ldpath.sh" ] && source "$LL/ldpath.sh"
sync

# ---- the benches: one nvidia-smi sampler per run; a run already done (its .json) is skipped ----
smi_start() { echo "# $1" >> "$R/smi.csv"; nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 200 >> "$R/smi.csv" 2>&1 & SMI=$!; }
smi_stop() { kill "$SMI" 2>/dev/null; wait "$SMI" 2>/dev/null
  log "$1: nvidia-smi memory.used max $(awk -F', ' -v n="# $1" '$0==n{on=1;next} /^#/{on=0} on&&$2+0>m{m=$2+0} END{print m+0}' "$R/smi.csv") MiB"; }
bench() { # NAME NEED_S CMD... : stdout to NAME.json, stderr to NAME.err, RSS line to main.log
  local name=$1 need=$2; shift 2
  [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $name "* ]] || return 1
  [ -s "$R/$name.json" ] && { log "$name already done"; return 0; }
  smi_start "$name"
  step "$name" "$need" python3 .anchor/maxrss.py "$R/$name.rss" bash -c '"$@" > "$0.json" 2> "$0.err"' "$R/$name" "$@"
  local rc=$?
  smi_stop "$name"; log "$name: $(tail -1 "$R/$name.rss" 2>/dev/null)"
  [ $rc = 0 ] || { tail -20 "$R/$name.err" >> "$R/main.log"; rm -f "$R/$name.json"; }
  publish
}
summary() { python3 - "$R/$1.json" >> "$R/main.log" 2>&1 <<'EOF'
import json, sys
for t in json.load(open(sys.argv[1])):
    name = t.get('test') or (f"pp{t['n_prompt']}" if t['n_prompt'] else f"tg{t['n_gen']}") + (f" @ d{t['n_depth']}" if t.get('n_depth') else '')
    extra = ''
    if 'vram_peak_bytes' in t: extra = f"  vram_peak {(t['vram_peak_bytes'] or 0)/2**20:.0f} MiB, rss {t['peak_rss_bytes']/2**30:.2f} GiB, smi {t.get('nvidia_smi_bytes') and t['nvidia_smi_bytes']/2**20} ({t.get('nvidia_smi_scope')})"
    print(f"  {sys.argv[1].split('/')[-1]:14s} {name:18s} {t['avg_ts']:9.2f} ± {t['stddev_ts']:7.2f} t/s  {t['avg_ns']/1e6:9.1f} ms  samples {[round(x, 1) for x in t['samples_ts']]}{extra}")
EOF
}
HYB="-ngl 99 -ncmoe 99 -fa 1 -lm none -t 16"
bench mx-depth 150 $X bench -m "$F" -p 512 -n 128 -d "$DEPTHS" -r "$REPS" --optimize-config qwen3moe-hybrid -o json && summary mx-depth
if [ -x "$LB" ]; then
  bench ll-depth 180 "$LB" -m "$F" $HYB -p 512 -n 128 -d "$DEPTHS" -r "$REPS" -v -o json && summary ll-depth
  grep -E "buffer size|memory breakdown" "$R/ll-depth.err" 2>/dev/null | sort | uniq -c | head -40 >> "$R/main.log"
fi
bench mx-ttft 100 $X bench -m "$F" -p 4096,16384 -n 0 -r "$REPS" --ubatch 2048 --optimize-config qwen3moe-hybrid -o json && summary mx-ttft
[ -x "$LB" ] && bench ll-ttft 100 "$LB" -m "$F" $HYB -p 4096,16384 -n 0 -b 2048 -ub 2048 -r "$REPS" -o json && summary ll-ttft
# llama.cpp's decode with its other flags (ONLY="ll-tg-mmap ll-tg-nopo" runs just these): the weights mapped
# (-lm mmap, the default) at every depth, and op offload off (-nopo 1, the anchor's best tg128) at depth 0 only,
# since with it the depth prefill runs the experts on the CPU (minutes at 16K).
if [ -n "${ONLY:-}" ] && [ -x "$LB" ]; then
  bench ll-tg-mmap 90 "$LB" -m "$F" -ngl 99 -ncmoe 99 -fa 1 -t 16 -p 0 -n 128 -d "$DEPTHS" -r "$REPS" -o json && summary ll-tg-mmap
  bench ll-tg-nopo 60 "$LB" -m "$F" -ngl 99 -ncmoe 99 -fa 1 -t 16 -nopo 1 -p 0 -n 128 -r "$REPS" -o json && summary ll-tg-nopo
  # the model's buffer lines alone (a one-token run; the KV and compute lines are in ll-depth's log)
  bench ll-buffers 40 "$LB" -m "$F" -ngl 99 -ncmoe 99 -fa 1 -lm none -t 16 -p 0 -n 1 -r 1 --no-warmup -v -o json &&
    grep -E "buffer size" "$R/ll-buffers.err" >> "$R/main.log"
fi
n=$(ls "$R"/*.json 2>/dev/null | wc -l)
log "$n runs done ($(cd "$R" && ls *.json 2>/dev/null | tr '\n' ' '))"
