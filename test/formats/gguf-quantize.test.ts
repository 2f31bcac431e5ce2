// quantize: GGUF -> GGUF with llama-quantize's mix; bytes equal the reference quantizers applied
// to the decoded source; metadata carried over with the new file type.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { quantizeGguf } from '../../src/formats/gguf-quantize.ts';
import { GgufWriter } from '../../src/formats/gguf-write.ts';
import { readGguf, readTensorBytes, metaNumber, GGUFValueType } from '../../src/formats/gguf-read.ts';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { quantize, dequantize } from '../../src/formats/quant.ts';
import { LlamaFileType } from '../../src/formats/file-types.ts';

const dir = mkdtempSync(join(tmpdir(), 'mixtile-quantize-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** A one-layer qwen3moe-named BF16 model, small enough to K-quantize in a test. */
async function smallBf16(path: string): Promise<Map<string, Float32Array>> {
  const w = new GgufWriter(path);
  w.setMeta('general.architecture', 'qwen3moe');
  w.setMeta('qwen3moe.block_count', 1);
  w.setMeta('qwen3moe.expert_count', 2);
  w.setMeta('qwen3moe.rope.freq_base', 1e6);
  w.setMeta('general.file_type', LlamaFileType.MOSTLY_BF16, GGUFValueType.UINT32);
  w.setMeta('split.count', 1, GGUFValueType.UINT16);
  const tensors: Array<[string, GgmlType, number[]]> = [
    ['token_embd.weight', GgmlType.BF16, [256, 64]],
    ['blk.0.attn_norm.weight', GgmlType.F32, [256]],
    ['blk.0.attn_v.weight', GgmlType.BF16, [256, 128]],
    ['blk.0.attn_q.weight', GgmlType.BF16, [256, 256]],
    ['blk.0.ffn_down_exps.weight', GgmlType.BF16, [256, 256, 2]],
    ['output.weight', GgmlType.BF16, [256, 64]],
  ];
  const values = new Map<string, Float32Array>();
  for (const [name, type, dims] of tensors) {
    w.addTensor(name, type, dims);
    const n = dims.reduce((a, b) => a * b, 1);
    values.set(name, Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + name.length) * (1 + (i % 5))));
  }
  await w.begin();
  for (const [name, type] of tensors) await w.writeTensor(name, quantize(type, values.get(name)!));
  await w.close();
  return values;
}

test('Q4_K_M: llama-quantize mix, reference bytes from the decoded source, metadata carried over', async () => {
  const src = join(dir, 'small-bf16.gguf');
  await smallBf16(src);
  const out = join(dir, 'small-q4km.gguf');
  let last = 0;
  await quantizeGguf({ input: src, out, fileType: 'Q4_K_M', threads: 2, onProgress: (d, t) => (last = d / t) });
  assert.equal(last, 1);
  const a = await readGguf(src);
  const b = await readGguf(out);
  const types = Object.fromEntries([...b.tensors.values()].map((t) => [t.name, GgmlType[t.type]]));
  assert.deepEqual(types, {
    'token_embd.weight': 'Q4_K',
    'blk.0.attn_norm.weight': 'F32',
    'blk.0.attn_v.weight': 'Q6_K', // use_more_bits: first eighth (layer 0 of 1)
    'blk.0.attn_q.weight': 'Q4_K',
    'blk.0.ffn_down_exps.weight': 'Q6_K',
    'output.weight': 'Q6_K',
  });
  for (const t of a.tensors.values()) {
    const want = quantize(b.tensors.get(t.name)!.type, dequantize(t.type, await readTensorBytes(a, t.name), t.nElements));
    assert.ok(Buffer.from(await readTensorBytes(b, t.name)).equals(want), `bytes of ${t.name}`);
  }
  assert.equal(metaNumber(b, 'general.file_type'), LlamaFileType.MOSTLY_Q4_K_M);
  assert.equal(metaNumber(b, 'general.quantization_version'), 2);
  assert.equal(metaNumber(b, 'qwen3moe.rope.freq_base'), 1e6);
  assert.equal(b.metadataTypes.get('qwen3moe.rope.freq_base')!.type, GGUFValueType.FLOAT32);
  assert.equal(b.metadata.has('split.count'), false);
});

test('same file type copies tensor bytes; bad mixes fail and leave nothing', async () => {
  const src = join(dir, 'small2-bf16.gguf');
  await smallBf16(src);
  const out = join(dir, 'copy.gguf');
  await quantizeGguf({ input: src, out, fileType: 'BF16' });
  const a = await readGguf(src);
  const b = await readGguf(out);
  for (const name of a.tensors.keys()) assert.ok(Buffer.from(await readTensorBytes(a, name)).equals(await readTensorBytes(b, name)), name);
  await assert.rejects(quantizeGguf({ input: src, out: join(dir, 'x.gguf'), fileType: 'Q3_K' }), /unknown file type "Q3_K"/);
  assert.throws(() => statSync(join(dir, 'x.gguf')), /ENOENT/);
});
