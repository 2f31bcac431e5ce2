// convert: HF folder -> GGUF. The fixture folder holds a synth model's exact weights, so the
// converted file must equal the synth file tensor for tensor and key for key (llama.cpp loads
// the synth file: test/formats/llama-cpp.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, unlinkSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthModel } from '../../src/model/synth.ts';
import { convertHfToGguf } from '../../src/formats/hf-convert.ts';
import { openHfModel } from '../../src/formats/hf-model.ts';
import { qwen3moeShapeFromConfig } from '../../src/formats/hf-qwen3moe.ts';
import { readGguf, readTensorBytes } from '../../src/formats/gguf-read.ts';
import type { GgufModel } from '../../src/formats/gguf-read.ts';
import { dequantize } from '../../src/formats/quant.ts';
import { fp32ToBf16, bf16ToFp32, fp8e4m3ToFp32 } from '../../src/formats/half.ts';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { readSafetensorsFile } from '../../src/formats/safetensors.ts';
import { writeSafetensors } from '../../src/formats/safetensors-write.ts';
import { FormatError } from '../../src/formats/errors.ts';
import { writeHfFixture, fp8Byte, fp8Scale } from './hf-fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'mixtile-convert-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const synthPath = join(dir, 'synth.gguf');
let synth: GgufModel;
test.before(async () => {
  await synthModel({ preset: 'tiny', out: synthPath, layers: 1, seed: 11 });
  synth = await readGguf(synthPath);
});

/** Every tensor (name, type, dims, bytes) and metadata key except general.name equal. */
async function assertSameModel(a: GgufModel, b: GgufModel, skip = new Set(['general.name', 'general.description', 'mixtile.synth.preset', 'mixtile.synth.seed'])) {
  assert.deepEqual([...a.tensors.keys()], [...b.tensors.keys()]);
  for (const [name, t] of a.tensors) {
    const u = b.tensors.get(name)!;
    assert.equal(u.type, t.type, name);
    assert.deepEqual(u.dims, t.dims, name);
    assert.ok(Buffer.from(await readTensorBytes(a, name)).equals(await readTensorBytes(b, name)), `bytes of ${name}`);
  }
  const keys = (m: GgufModel) => [...m.metadata.keys()].filter((k) => !skip.has(k)).sort();
  assert.deepEqual(keys(b), keys(a));
  for (const k of keys(a)) {
    assert.deepEqual(b.metadataTypes.get(k), a.metadataTypes.get(k), `type of ${k}`);
    assert.deepEqual(b.metadata.get(k), a.metadata.get(k), `value of ${k}`);
  }
}

test('BF16 sharded checkpoint converts to exactly the synth GGUF (names, dims, bytes, metadata, tokenizer)', async () => {
  const hf = join(dir, 'hf-sharded');
  await writeHfFixture(synth, hf, { shards: 3 });
  const out = join(dir, 'conv.gguf');
  let last = 0;
  await convertHfToGguf({ dir: hf, out, onProgress: (d, t) => (last = d / t) });
  assert.equal(last, 1);
  await assertSameModel(synth, await readGguf(out));
});

test('transformers 5 fused experts (gate_up_proj, down_proj) convert to the same file', async () => {
  const hf = join(dir, 'hf-fused');
  const names = await writeHfFixture(synth, hf, { fusedExperts: true });
  assert.ok(names.includes('model.layers.0.mlp.experts.gate_up_proj'));
  const out = join(dir, 'conv-fused.gguf');
  await convertHfToGguf({ dir: hf, out });
  await assertSameModel(synth, await readGguf(out));
});

test('Q8_0: llama-quantize mix and values within Q8_0 error of the source', async () => {
  const hf = join(dir, 'hf-sharded'); // written by the first test
  const out = join(dir, 'conv-q8.gguf');
  await convertHfToGguf({ dir: hf, out, fileType: 'Q8_0' });
  const m = await readGguf(out);
  assert.equal(m.tensors.get('blk.0.ffn_down_exps.weight')!.type, GgmlType.Q8_0);
  assert.equal(m.tensors.get('blk.0.ffn_gate_inp.weight')!.type, GgmlType.F32);
  for (const name of ['blk.0.ffn_up_exps.weight', 'blk.0.attn_q.weight']) {
    const src = synth.tensors.get(name)!;
    const x = dequantize(src.type, await readTensorBytes(synth, name), src.nElements);
    const y = dequantize(GgmlType.Q8_0, await readTensorBytes(m, name), src.nElements);
    let maxRel = 0;
    for (let i = 0; i < x.length; i += 32) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[i + j]));
      for (let j = 0; j < 32; j++) maxRel = Math.max(maxRel, Math.abs(x[i + j] - y[i + j]) / (amax / 127));
    }
    assert.ok(maxRel <= 0.57, `${name}: error up to ${maxRel} steps`);
  }
});

test('FP8 block-scaled weights (Qwen FP8 releases) are dequantized', async () => {
  const hf = join(dir, 'hf-fp8');
  await writeHfFixture(synth, hf, { fp8: ['model.layers.0.self_attn.q_proj.weight'] });
  const out = join(dir, 'conv-fp8.gguf');
  await convertHfToGguf({ dir: hf, out });
  const m = await readGguf(out);
  const t = m.tensors.get('blk.0.attn_q.weight')!;
  const y = dequantize(t.type, await readTensorBytes(m, t.name), t.nElements);
  const [cols, rows] = t.dims;
  const nbc = Math.ceil(cols / 128);
  for (let r = 0; r < rows; r += 37) {
    for (let c = 0; c < cols; c += 13) {
      const i = r * cols + c;
      const want = bf16ToFp32(fp32ToBf16(fp8e4m3ToFp32(fp8Byte(i)) * fp8Scale(Math.floor(r / 128), Math.floor(c / 128), nbc)));
      assert.equal(y[i], want, `element [${r}, ${c}]`);
    }
  }
});

test('openHfModel: the folder as a GgufModel view equals the converted file (metadata, tensors, bytes via segments)', async () => {
  const converted = await readGguf(join(dir, 'conv.gguf'));
  const view = await openHfModel(join(dir, 'hf-sharded'));
  await assertSameModel(converted, view, new Set());
  const q = view.tensors.get('blk.0.attn_q.weight')!;
  assert.ok(q.segments === undefined && q.offset > 0 && view.files[q.fileIndex] === q.file, 'one-piece tensors point into their shard');
  const experts = view.tensors.get('blk.0.ffn_up_exps.weight')!;
  assert.equal(experts.segments?.length, 8);
  assert.equal(experts.offset, -1);

  const fused = await openHfModel(join(dir, 'hf-fused'));
  assert.equal(fused.tensors.get('blk.0.ffn_down_exps.weight')!.segments, undefined); // down_proj is already [E, hidden, ffn]
  assert.ok(Buffer.from(await readTensorBytes(fused, 'blk.0.ffn_gate_exps.weight')).equals(await readTensorBytes(synth, 'blk.0.ffn_gate_exps.weight')));
  // FP8 tensors are BF16 in the view, dequantized on read to exactly what convert writes.
  const fp8 = await openHfModel(join(dir, 'hf-fp8'));
  const q8 = fp8.tensors.get('blk.0.attn_q.weight')!;
  assert.ok(q8.type === GgmlType.BF16 && q8.segments?.[0].fp8Scale !== undefined && q8.nBytes === q8.nElements * 2);
  assert.ok(Buffer.from(await readTensorBytes(fp8, q8.name)).equals(await readTensorBytes(await readGguf(join(dir, 'conv-fp8.gguf')), q8.name)));
});

/** Runs convert expecting a FormatError/Error matching `re`, and no output file left. */
async function convertFails(hf: string, re: RegExp, fileType?: string) {
  const out = join(dir, 'fail.gguf');
  await assert.rejects(convertHfToGguf({ dir: hf, out, fileType }), re);
  assert.throws(() => statSync(out), /ENOENT/);
  assert.throws(() => statSync(out + '.tmp'), /ENOENT/);
}

test('bad checkpoints: missing shard, index naming an absent tensor, shape mismatch, dtype, config', async () => {
  const hf = join(dir, 'hf-bad');
  await writeHfFixture(synth, hf, { shards: 2 });
  const indexPath = join(hf, 'model.safetensors.index.json');
  const index = JSON.parse(readFileSync(indexPath, 'utf8'));

  index.weight_map['model.layers.0.mlp.extra.weight'] = 'model-00001-of-00002.safetensors';
  writeFileSync(indexPath, JSON.stringify(index));
  await convertFails(hf, /weight_map puts tensor "model.layers.0.mlp.extra.weight" in model-00001-of-00002.safetensors, but that shard has no such tensor/);
  delete index.weight_map['model.layers.0.mlp.extra.weight'];
  // A tensor the layout does not know (here: a shared expert) is refused, not dropped.
  const shared = join(hf, 'extra.safetensors');
  await writeSafetensors(shared, [{ name: 'model.layers.0.mlp.shared_expert.up_proj.weight', dtype: 'BF16', shape: [2, 2], data: new Uint8Array(8) }]);
  index.weight_map['model.layers.0.mlp.shared_expert.up_proj.weight'] = 'extra.safetensors';
  writeFileSync(indexPath, JSON.stringify(index));
  await convertFails(hf, /the checkpoint has 1 tensors that are not part of a Qwen3-MoE model as llama.cpp lays it out \(e.g. "model.layers.0.mlp.shared_expert.up_proj.weight"\)/);
  delete index.weight_map['model.layers.0.mlp.shared_expert.up_proj.weight'];
  writeFileSync(indexPath, JSON.stringify(index));

  const configPath = join(hf, 'config.json');
  const config = JSON.parse(readFileSync(configPath, 'utf8'));
  writeFileSync(configPath, JSON.stringify({ ...config, num_key_value_heads: 4 }));
  await convertFails(hf, /tensor "model.layers.0.self_attn.k_proj.weight" has shape \[128, 256\] but config.json implies \[256, 256\] \(for blk.0.attn_k.weight\)/);
  writeFileSync(configPath, JSON.stringify({ ...config, architectures: ['LlamaForCausalLM'] }));
  await convertFails(hf, /config.json: "architectures" is \["LlamaForCausalLM"\]; convert supports Qwen3MoeForCausalLM/);
  writeFileSync(configPath, JSON.stringify({ ...config, mlp_only_layers: [0] }));
  await convertFails(hf, /"mlp_only_layers" must be empty/);
  writeFileSync(configPath, JSON.stringify({ ...config, hidden_size: 320, head_dim: 64 }));
  await convertFails(hf, /has shape .* but config.json implies/);
  writeFileSync(configPath, JSON.stringify(config));

  unlinkSync(join(hf, 'model-00002-of-00002.safetensors'));
  await convertFails(hf, /shard model-00002-of-00002.safetensors is missing \(it holds \d+ tensors, e.g. "/);

  await convertFails(join(dir, 'nowhere'), /config.json: cannot read config.json \(ENOENT\)/);
});

test('unsupported dtype in the checkpoint names the tensor', async () => {
  const hf = join(dir, 'hf-i32');
  await writeHfFixture(synth, hf);
  const f = await readSafetensorsFile(join(hf, 'model.safetensors'));
  const inputs = await Promise.all(
    f.tensors.map(async (t) => {
      const data = new Uint8Array(readFileSync(t.file).subarray(t.offset, t.offset + t.nBytes));
      return t.name === 'model.norm.weight' ? { name: t.name, dtype: 'I32', shape: t.shape, data: new Uint8Array(t.nElements * 4) } : { name: t.name, dtype: t.dtype, shape: t.shape, data };
    }),
  );
  await writeSafetensors(join(hf, 'model.safetensors'), inputs);
  await convertFails(hf, /tensor "model.norm.weight" is I32; mixtile reads BF16, F16, F32, F8_E4M3/);
});

/** A safetensors file from a raw header object and data size. */
function rawSafetensors(name: string, header: unknown, dataBytes: number, headerLen?: number): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerLen ?? json.length));
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
  return p;
}

test('safetensors header validation: each bad file gets its own clear error', async () => {
  const rejects = (p: string, re: RegExp) =>
    assert.rejects(readSafetensorsFile(p), (e: unknown) => e instanceof FormatError && re.test(e.message) && e.message.startsWith(p));
  const ok = { a: { dtype: 'BF16', shape: [2, 3], data_offsets: [0, 12] } };
  assert.equal((await readSafetensorsFile(rawSafetensors('ok.safetensors', ok, 12))).tensors[0].offset, 8 + JSON.stringify(ok).length);
  await rejects(rawSafetensors('trunc.safetensors', ok, 6), /tensor "a" ends at byte \d+ but the file has \d+ bytes; the file looks truncated/);
  await rejects(rawSafetensors('len.safetensors', ok, 12, 2 ** 40), /header length is 1099511627776 bytes but only \d+ bytes follow/);
  await rejects(rawSafetensors('dtype.safetensors', { a: { dtype: 'Q4', shape: [2], data_offsets: [0, 2] } }, 2), /tensor "a": unknown dtype "Q4"/);
  await rejects(rawSafetensors('size.safetensors', { a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 12] } }, 12), /shape \[2, 3\] of F32 needs 24 bytes but data_offsets \[0, 12\] span 12/);
  await rejects(
    rawSafetensors('hole.safetensors', { a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] }, b: { dtype: 'U8', shape: [4], data_offsets: [8, 12] } }, 12),
    /tensor "b" data starts at 8 but the previous tensor ends at 4 \(hole in the data\)/,
  );
  await rejects(
    rawSafetensors('overlap.safetensors', { a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] }, b: { dtype: 'U8', shape: [4], data_offsets: [2, 6] } }, 6),
    /tensor "b" data starts at 2 but the previous tensor ends at 4 \(overlap in the data\)/,
  );
  await rejects(rawSafetensors('tail.safetensors', ok, 20), /tensors cover 12 data bytes but the file has 20 after the header/);
  const p = rawSafetensors('json.safetensors', ok, 12);
  const b = readFileSync(p);
  b[9] = 0x7b; // corrupt the JSON
  b[10] = 0x7b;
  writeFileSync(p, b);
  await rejects(p, /header is not valid JSON/);
  truncateSync(p, 5);
  await rejects(p, /fewer than the 8-byte header length/);
});

test('config.json: transformers 5 rope_parameters, defaults, YaRN scaling', () => {
  const base = {
    architectures: ['Qwen3MoeForCausalLM'], hidden_size: 256, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
    num_experts: 8, num_experts_per_tok: 2, moe_intermediate_size: 256, vocab_size: 151936, max_position_embeddings: 4096,
  };
  const { shape } = qwen3moeShapeFromConfig({ ...base, rope_parameters: { rope_type: 'default', rope_theta: 500000 } }, 'config.json');
  assert.equal(shape.ropeTheta, 500000);
  assert.equal(shape.headDim, 64); // hidden / heads when head_dim is absent
  assert.equal(shape.rmsEps, 1e-6);
  const yarn = qwen3moeShapeFromConfig({ ...base, rope_theta: 1e6, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768 } }, 'config.json');
  assert.deepEqual(yarn.ropeScaling, { type: 'yarn', factor: 4, originalContextLength: 32768 });
  assert.throws(() => qwen3moeShapeFromConfig({ ...base, num_experts: 0 }, 'config.json'), /config.json: "num_experts" must be a positive integer, found 0/);
});
