#!/usr/bin/env bash
# Lead's last device call: HEAD's defaults on the 48-layer synthetic Q4_K_M (quantized GPU weights, exact
# hybrid), VRAM at 48 layers, quantized-GPU logits vs the CPU engine, then expert deferral 2.
set -u
R=$OUT; X="node bin/mixtile.js"; F=/root/models/48l-q4km.gguf; mkdir -p /root/models
export MIXTILE_REPACK_CACHE=0
t() { local n=$1 s=$2; shift 2; echo "== $n $(date -u +%T)" >> $R/main.log; timeout $s "$@" >> $R/main.log 2>&1; echo "== $n rc=$? $(date -u +%T)" >> $R/main.log; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(nproc) cpus; $(nvidia-smi --query-gpu=name --format=csv,noheader)" > $R/main.log
[ -f $F ] || t synth 170 $X synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 48 $F
t inspect 30 $X inspect --rules qwen3moe-hybrid $F
t bench-default 110 $X bench -m $F -p 512 -n 128 -r 2 --optimize-config qwen3moe-hybrid
t hybrid-vs-cpu 100 node --import tsx test/engine/hybrid-vs-cpu.ts $F 32 16
MIXTILE_DEFER_EXPERTS=2 t bench-defer2 70 $X bench -m $F -p 0 -n 128 -r 2 --optimize-config qwen3moe-hybrid
echo done >> $R/main.log
