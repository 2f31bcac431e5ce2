// synth -> read: exact qwen3moe names, shapes, types and metadata; tensor bytes equal the seeded
// generator's; value statistics match the documented init; determinism and page uniqueness.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthModel, synthConfig, synthTensors } from '../../src/model/synth.ts';
import { readGguf, readTensorBytes, metaNumber, metaString, metaArray, GGUFValueType } from '../../src/formats/gguf-read.ts';
import type { GgufModel } from '../../src/formats/gguf-read.ts';
import { randomTensorChunks } from '../../src/formats/random-tensor.ts';
import { dequantize, quantize } from '../../src/formats/quant.ts';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { LlamaFileType } from '../../src/formats/file-types.ts';

const dir = mkdtempSync(join(tmpdir(), 'mixtile-synth-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function concat(chunks: Iterable<Uint8Array>): Uint8Array {
  const list = [...chunks];
  const out = new Uint8Array(list.reduce((s, c) => s + c.length, 0));
  let o = 0;
  for (const c of list) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

function stats(x: Float32Array): { mean: number; std: number; min: number; max: number } {
  let s = 0, s2 = 0, min = Infinity, max = -Infinity;
  for (const v of x) {
    s += v;
    s2 += v * v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const mean = s / x.length;
  return { mean, std: Math.sqrt(s2 / x.length - mean * mean), min, max };
}

async function values(m: GgufModel, name: string): Promise<Float32Array> {
  const t = m.tensors.get(name)!;
  return dequantize(t.type, await readTensorBytes(m, name), t.nElements);
}

test('tiny BF16: qwen3moe tensors, metadata, tokenizer, bytes and init statistics', async () => {
  const out = join(dir, 'tiny-bf16.gguf');
  const progress: number[] = [];
  await synthModel({ preset: 'tiny', out, layers: 1, seed: 7, onProgress: (d, t) => progress.push(d / t) });
  assert.equal(progress.at(-1), 1);
  const m = await readGguf(out);

  assert.equal(metaString(m, 'general.architecture'), 'qwen3moe');
  const u32 = (k: string, v: number) => {
    assert.equal(metaNumber(m, k), v, k);
    assert.equal(m.metadataTypes.get(k)!.type, GGUFValueType.UINT32, `${k} is u32`);
  };
  u32('qwen3moe.block_count', 1);
  u32('qwen3moe.context_length', 4096);
  u32('qwen3moe.embedding_length', 256);
  u32('qwen3moe.attention.head_count', 4);
  u32('qwen3moe.attention.head_count_kv', 2);
  u32('qwen3moe.attention.key_length', 64);
  u32('qwen3moe.attention.value_length', 64);
  u32('qwen3moe.expert_count', 8);
  u32('qwen3moe.expert_used_count', 2);
  u32('qwen3moe.expert_feed_forward_length', 256);
  u32('general.file_type', LlamaFileType.MOSTLY_BF16);
  u32('general.quantization_version', 2);
  assert.equal(m.metadataTypes.get('qwen3moe.rope.freq_base')!.type, GGUFValueType.FLOAT32);
  assert.equal(metaNumber(m, 'qwen3moe.rope.freq_base'), 1e6);
  assert.equal(Math.fround(metaNumber(m, 'qwen3moe.attention.layer_norm_rms_epsilon')), Math.fround(1e-6));
  assert.equal(metaString(m, 'tokenizer.ggml.model'), 'gpt2');
  assert.equal(metaString(m, 'tokenizer.ggml.pre'), 'qwen2');
  assert.equal(metaArray(m, 'tokenizer.ggml.tokens').length, 151936);
  assert.equal(metaArray(m, 'tokenizer.ggml.tokens')[151645], '<|im_end|>');
  assert.deepEqual(m.metadataTypes.get('tokenizer.ggml.token_type'), { type: GGUFValueType.ARRAY, itemType: GGUFValueType.INT32 });
  assert.equal(metaNumber(m, 'tokenizer.ggml.eos_token_id'), 151645);
  assert.match(metaString(m, 'tokenizer.chat_template'), /<\|im_start\|>/);

  const expected: Record<string, [string, number[]]> = {
    'token_embd.weight': ['BF16', [256, 151936]],
    'blk.0.attn_norm.weight': ['F32', [256]],
    'blk.0.attn_q.weight': ['BF16', [256, 256]],
    'blk.0.attn_k.weight': ['BF16', [256, 128]],
    'blk.0.attn_v.weight': ['BF16', [256, 128]],
    'blk.0.attn_output.weight': ['BF16', [256, 256]],
    'blk.0.attn_q_norm.weight': ['F32', [64]],
    'blk.0.attn_k_norm.weight': ['F32', [64]],
    'blk.0.ffn_norm.weight': ['F32', [256]],
    'blk.0.ffn_gate_inp.weight': ['F32', [256, 8]],
    'blk.0.ffn_gate_exps.weight': ['BF16', [256, 256, 8]],
    'blk.0.ffn_up_exps.weight': ['BF16', [256, 256, 8]],
    'blk.0.ffn_down_exps.weight': ['BF16', [256, 256, 8]],
    'output_norm.weight': ['F32', [256]],
    'output.weight': ['BF16', [256, 151936]],
  };
  assert.deepEqual([...m.tensors.keys()].sort(), Object.keys(expected).sort());
  for (const [name, [type, dims]] of Object.entries(expected)) {
    const t = m.tensors.get(name)!;
    assert.equal(GgmlType[t.type], type, name);
    assert.deepEqual(t.dims, dims, name);
  }

  // Bytes in the file are the seeded generator's.
  for (const spec of synthTensors(synthConfig({ preset: 'tiny', out, layers: 1 }), LlamaFileType.MOSTLY_BF16)) {
    if (spec.name.startsWith('blk.0.') || spec.name === 'output_norm.weight') {
      assert.deepEqual(await readTensorBytes(m, spec.name), concat(randomTensorChunks(spec, 7)), spec.name);
    }
  }
  // Init as documented in synth.ts.
  const near = (got: number, want: number, rel: number, what: string) => assert.ok(Math.abs(got - want) <= rel * want, `${what}: ${got} vs ${want}`);
  const norm = stats(await values(m, 'blk.0.attn_norm.weight'));
  assert.ok(norm.min >= 0.9 && norm.max <= 1.1 && Math.abs(norm.mean - 1) < 0.02, `norm ${JSON.stringify(norm)}`);
  near(stats(await values(m, 'blk.0.attn_q.weight')).std, 1 / 16, 0.02, 'attn_q std');
  near(stats(await values(m, 'blk.0.ffn_gate_inp.weight')).std, 3 / 16, 0.05, 'router std');
  near(stats(await values(m, 'blk.0.ffn_down_exps.weight')).std, 1 / 16, 0.02, 'ffn_down_exps std');
  const out_ = stats(await values(m, 'output.weight'));
  near(out_.std, 3 / 16, 0.01, 'output std');
  assert.ok(Math.abs(out_.mean) < 0.001, `output mean ${out_.mean}`);
});

test('tiny Q4_K_M: llama-quantize type mix, random K-quant blocks with the requested std', async () => {
  const out = join(dir, 'tiny-q4km.gguf');
  await synthModel({ preset: 'tiny', out, layers: 2, fileType: 'Q4_K_M', seed: 1 });
  const m = await readGguf(out);
  const type = (n: string) => GgmlType[m.tensors.get(n)!.type];
  assert.equal(metaNumber(m, 'general.file_type'), LlamaFileType.MOSTLY_Q4_K_M);
  assert.equal(type('token_embd.weight'), 'Q4_K');
  assert.equal(type('output.weight'), 'Q6_K');
  assert.equal(type('blk.1.ffn_down_exps.weight'), 'Q6_K'); // use_more_bits: first/last eighth of 2 layers
  assert.equal(type('blk.1.ffn_gate_exps.weight'), 'Q4_K');
  assert.equal(type('blk.0.attn_v.weight'), 'Q8_0'); // 8 experts: llama.cpp's Mixtral rule
  assert.equal(type('blk.0.attn_output.weight'), 'Q5_K');
  assert.equal(type('blk.0.ffn_gate_inp.weight'), 'F32');
  for (const [name, want] of [['blk.0.ffn_gate_exps.weight', 1 / 16], ['blk.1.ffn_down_exps.weight', 1 / 16], ['blk.0.attn_output.weight', 1 / 16], ['blk.0.attn_v.weight', 1 / 16]] as const) {
    const s = stats(await values(m, name));
    assert.ok(Math.abs(s.std - want) < 0.08 * want, `${name} std ${s.std} vs ${want}`);
    assert.ok(Math.abs(s.mean) < 0.05 * want, `${name} mean ${s.mean}`);
  }
});

test('exactQuant gives the reference quantizer applied to the same floats', () => {
  const base = { name: 'blk.0.attn_q.weight', dims: [512, 8], mean: 0, std: 0.05 };
  const floats = dequantize(GgmlType.F32, concat(randomTensorChunks({ ...base, type: GgmlType.F32 }, 3)), 4096);
  for (const type of [GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q8_0]) {
    assert.deepEqual(concat(randomTensorChunks({ ...base, type }, 3, true)), quantize(type, floats), GgmlType[type]);
  }
});

test('deterministic per seed, different across seeds and tensors, no repeated pages', () => {
  const spec = { name: 'blk.0.ffn_up_exps.weight', type: GgmlType.Q4_K, dims: [2048, 768, 4], mean: 0, std: 0.02 };
  const a = concat(randomTensorChunks(spec, 5));
  assert.deepEqual(a, concat(randomTensorChunks(spec, 5)));
  assert.notDeepEqual(a.subarray(0, 4096), concat(randomTensorChunks(spec, 6)).subarray(0, 4096));
  assert.notDeepEqual(a.subarray(0, 4096), concat(randomTensorChunks({ ...spec, name: 'blk.1.ffn_up_exps.weight' }, 5)).subarray(0, 4096));
  const pages = new Set<string>();
  for (let o = 0; o + 4096 <= a.length; o += 4096) pages.add(Buffer.from(a.subarray(o, o + 4096)).toString('base64'));
  assert.equal(pages.size, Math.floor(a.length / 4096));
});

test('bad options fail with what was wrong and leave no file', async () => {
  const out = join(dir, 'bad.gguf');
  await assert.rejects(synthModel({ preset: 'tiny', out, heads: 3 }), /heads \(3\) must be a multiple of kv heads \(2\)/);
  await assert.rejects(synthModel({ preset: 'tiny', out, expertsUsed: 9 }), /experts used \(9\) exceeds experts \(8\)/);
  await assert.rejects(synthModel({ preset: 'tiny', out, hidden: 320, fileType: 'Q4_K_M' }), /token_embd.weight \[320, 151936\] would be Q5_0/);
  await assert.rejects(synthModel({ preset: 'tiny', out, fileType: 'Q3_K' }), /unknown file type "Q3_K"/);
  await assert.rejects(synthModel({ preset: 'nope' as 'tiny', out }), /unknown preset "nope"/);
  await assert.rejects(readGguf(out), /ENOENT/);
  await assert.rejects(readGguf(out + '.tmp'), /ENOENT/);
});

test('presets have the published shapes', () => {
  const a3b = synthConfig({ preset: 'qwen3-30b-a3b', out: '' });
  assert.deepEqual([a3b.nLayers, a3b.hidden, a3b.nHeads, a3b.nKvHeads, a3b.headDim, a3b.nExperts, a3b.nExpertsUsed, a3b.expertFfn, a3b.vocab], [48, 2048, 32, 4, 128, 128, 8, 768, 151936]);
  const big = synthConfig({ preset: 'qwen3-235b-a22b', out: '' });
  assert.deepEqual([big.nLayers, big.hidden, big.nHeads, big.nKvHeads, big.headDim, big.nExperts, big.nExpertsUsed, big.expertFfn], [94, 4096, 64, 4, 128, 128, 8, 1536]);
  // 30.5 B parameters, as Qwen publishes for Qwen3-30B-A3B.
  const n = synthTensors(a3b, LlamaFileType.MOSTLY_BF16).reduce((s, t) => s + t.dims.reduce((a, b) => a * b, 1), 0);
  assert.ok(Math.abs(n / 1e9 - 30.5) < 0.1, `${n} parameters`);
});
