// Running a Hugging Face folder directly: the fixture folder holds a synth model's exact bytes, so
// loadModel(folder) must give the same logits as loadModel(synth.gguf) bit for bit (per-expert
// tensors gathered by the addon's weightGather), `mixtile generate -m DIR` the same text, an FP8
// folder the logits of its converted GGUF, and a broken folder a FormatError naming file and tensor.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FormatError } from '../../src/formats/errors.ts';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { readGguf } from '../../src/formats/gguf-read.ts';
import { convertHfToGguf } from '../../src/formats/hf-convert.ts';
import { bf16ToFp32, fp32ToBf16, fp8e4m3ToFp32 } from '../../src/formats/half.ts';
import { loadModel } from '../../src/model/load.ts';
import { synthModel } from '../../src/model/synth.ts';
import { MappedFile, weightGather } from '../../src/native/tensor.ts';
import { writeHfFixture } from './hf-fixture.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ADDON = process.env.MIXTILE_ADDON ?? join(ROOT, 'native/build/Release/mixtile.node');
const skip = existsSync(ADDON) ? false : `native addon not built (${ADDON})`;
const PROMPT = [9707, 11, 1879, 0, 358, 1079, 264];

let dir: string;
const bf16Gguf = () => join(dir, 'bf16.gguf');
const f32Gguf = () => join(dir, 'f32.gguf');

/** Logits of a PROMPT prefill (every position) followed by one decode step. */
async function logits(path: string): Promise<Float32Array[]> {
  const m = await loadModel(path, { ctxSize: 16, threads: 2 });
  try {
    const n = PROMPT.length;
    const prefill = m.forward({ tokens: Int32Array.from(PROMPT), positions: Int32Array.from(PROMPT.keys()), seqIds: new Int32Array(n), logitsFor: Int32Array.from(PROMPT.keys()) });
    const decode = m.forward({ tokens: Int32Array.of(42), positions: Int32Array.of(n), seqIds: Int32Array.of(0), logitsFor: Int32Array.of(0) });
    return [prefill, decode];
  } finally {
    m.dispose();
  }
}

async function assertSameLogits(gguf: string, folder: string) {
  const [want, got] = [await logits(gguf), await logits(folder)];
  for (const [s, w] of want.entries()) {
    assert.ok(w.every(Number.isFinite) && Math.max(...w.subarray(0, 4096)) > Math.min(...w.subarray(0, 4096)), `step ${s}: the GGUF's logits are finite and not constant`);
    assert.equal(got[s].length, w.length);
    const i = w.findIndex((v, j) => !Object.is(v, got[s][j]));
    assert.equal(i, -1, `step ${s}: logit ${i} is ${got[s][i]}, the GGUF gives ${w[i]}`);
  }
}

/** loadModel(folder) rejects with a FormatError whose message matches `re` and names file and tensor. */
async function loadFails(folder: string, re: RegExp, file: string, tensor: string) {
  await assert.rejects(loadModel(folder, { ctxSize: 16 }), (e: unknown) => {
    assert.ok(e instanceof FormatError, `expected a FormatError, got ${e}`);
    assert.match(e.message, re);
    assert.ok(e.message.includes(file), `message names ${file}: ${e.message}`);
    assert.ok(e.message.includes(tensor), `message names ${tensor}: ${e.message}`);
    return true;
  });
}

describe('HF folder run directly', { skip }, () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mixtile-hf-direct-'));
    await synthModel({ preset: 'tiny', out: bf16Gguf(), layers: 1, seed: 11 });
    // F32 at half width keeps the two 151 936-row tables small.
    await synthModel({ preset: 'tiny', out: f32Gguf(), fileType: 'F32', layers: 2, hidden: 128, headDim: 32, expertFfn: 64, seed: 12 });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('BF16, 3 shards, per-expert tensors: logits equal the GGUF exactly', async () => {
    const hf = join(dir, 'bf16-sharded');
    await writeHfFixture(await readGguf(bf16Gguf()), hf, { shards: 3 });
    const m = await loadModel(hf, { ctxSize: 16 });
    try {
      assert.equal(m.gguf.tensors.get('blk.0.ffn_up_exps.weight')!.segments?.length, 8, 'experts are gathered from 8 tensors');
      assert.equal(m.gguf.files.length, 3);
    } finally {
      m.dispose();
    }
    await assertSameLogits(bf16Gguf(), hf);
  });

  test('F32, 2 layers, transformers 5 fused experts: logits equal the GGUF exactly', async () => {
    const hf = join(dir, 'f32-fused');
    await writeHfFixture(await readGguf(f32Gguf()), hf, { fusedExperts: true, shards: 2 });
    await assertSameLogits(f32Gguf(), hf);
  });

  test('`mixtile generate -m DIR` prints what the GGUF run prints', async () => {
    const hf = join(dir, 'bf16-sharded'); // written by the first test
    const run = async (model: string) => {
      const args = ['--import', 'tsx', 'src/cli/index.ts', 'generate', '-m', model, '-p', 'hi', '-n', '4', '--temp', '0', '-t', '2'];
      return (await promisify(execFile)(process.execPath, args, { cwd: ROOT, encoding: 'utf8', timeout: 180_000 })).stdout;
    };
    const want = await run(bf16Gguf());
    assert.ok(want.length > 1, `the GGUF run printed ${JSON.stringify(want)}`);
    assert.equal(await run(hf), want);
  });

  test('broken folders: index naming an absent tensor, shape vs config, truncated shard, missing shard, no such path', async () => {
    const hf = join(dir, 'bad');
    const synth = await readGguf(bf16Gguf());
    await writeHfFixture(synth, hf, { shards: 2 });
    const indexPath = join(hf, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(indexPath, 'utf8'));
    const shard1 = 'model-00001-of-00002.safetensors';
    const shard2 = 'model-00002-of-00002.safetensors';

    writeFileSync(indexPath, JSON.stringify({ ...index, weight_map: { ...index.weight_map, 'model.layers.0.mlp.gate.weight': shard2 } }));
    await loadFails(hf, /weight_map puts tensor "model.layers.0.mlp.gate.weight" in model-00002-of-00002.safetensors, but that shard has no such tensor/, shard2, 'model.layers.0.mlp.gate.weight');
    writeFileSync(indexPath, JSON.stringify(index));

    const configPath = join(hf, 'config.json');
    const config = readFileSync(configPath, 'utf8');
    writeFileSync(configPath, JSON.stringify({ ...JSON.parse(config), moe_intermediate_size: 128 }));
    await loadFails(hf, /has shape \[256, 256\] but config.json implies \[128, 256\] \(for blk.0.ffn_gate_exps.weight\)/, 'model-0000', 'model.layers.0.mlp.experts.0.gate_proj.weight');
    writeFileSync(configPath, config);

    // Cut the last shard inside its data: the header now claims bytes past the end.
    const last = join(hf, shard2);
    truncateSync(last, readFileSync(last).length - 100);
    await loadFails(hf, /ends at byte \d+ but the file has \d+ bytes; the file looks truncated/, shard2, 'tensor "');
    unlinkSync(last);
    await loadFails(hf, /shard model-00002-of-00002.safetensors is missing \(it holds \d+ tensors, e.g. "/, shard2, 'model.');

    await assert.rejects(loadModel(join(dir, 'nowhere')), /nowhere: cannot open the model \(ENOENT\); expected a GGUF file or a Hugging Face model folder/);
  });

  test('FP8 block-scaled weights are dequantized at load: logits equal the converted GGUF exactly', async () => {
    const fp8 = join(dir, 'fp8');
    await writeHfFixture(await readGguf(bf16Gguf()), fp8, { fp8: ['model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.o_proj.weight'] });
    const converted = join(dir, 'fp8.gguf');
    await convertHfToGguf({ dir: fp8, out: converted });
    await assertSameLogits(converted, fp8);
  });

  test('weightGather: copies and FP8 dequantization; bounds, totals, unknown files and closed handles throw instead of crashing', () => {
    const path = join(dir, 'ranges.bin');
    const bytes = Float32Array.from({ length: 64 }, (_, i) => i - 20);
    writeFileSync(path, Buffer.concat([Buffer.alloc(3, 1), Buffer.from(bytes.buffer)]));
    const f = MappedFile.open(path);
    const g = MappedFile.open(path);
    try {
      // Rows out of order and from two mappings: [16, 2] = elements 32..47 then 0..15.
      const w = weightGather([f, g], [{ file: path, offset: 3 + 128, nBytes: 64 }, { file: path, offset: 3, nBytes: 64 }], GgmlType.F32, [16, 2], 't');
      assert.deepEqual([...w.dequantizeRows(0, 2)], [...bytes.subarray(32, 48), ...bytes.subarray(0, 16)]);
      w.dispose();
      const seg = (offset: number, nBytes: number) => [{ file: path, offset, nBytes }];
      assert.throws(() => weightGather([f], seg(3 + 200, 64), GgmlType.F32, [16], 'blk.0.x'), /ranges.bin: tensor blk.0.x: range at byte 203 of 64 bytes ends past the file's 259 bytes; the file looks truncated/);
      assert.throws(() => weightGather([f], seg(2 ** 45, 64), GgmlType.F32, [16], 'x'), /looks truncated/);
      assert.throws(() => weightGather([f], seg(3, 60), GgmlType.F32, [16], 'x'), /weightGather: x: the ranges hold 60 bytes but the shape needs 64/);
      assert.throws(() => weightGather([f], [...seg(3, 64), ...seg(3, 4)], GgmlType.F32, [16], 'x'), /weightGather: x: the ranges hold more than the 64 bytes the shape needs/);
      assert.throws(() => weightGather([f], [], GgmlType.F32, [16], 'x'), /non-empty/);
      assert.throws(() => weightGather([f], [{ file: '/elsewhere', offset: 0, nBytes: 64 }], GgmlType.F32, [16], 'x'), /tensor x: \/elsewhere is not among the mapped files/);
      assert.throws(() => weightGather([f], seg(3, 64), GgmlType.Q8_0, [16], 'x'), /multiple of 32/);

      // FP8: two ranges of [2, 16] (bytes 3..34, 35..66) with 1x8 blocks -> BF16 [16, 4].
      const fp8 = (offset: number, values: number[]) => ({ file: path, offset, nBytes: 32, fp8Scale: { values: Float32Array.from(values), blockRows: 1, blockCols: 8, cols: 16 } });
      const sA = [0.5, 2, 1.25, -3], sB = [7, 0.125, 1, 1e-3];
      const w8 = weightGather([f], [fp8(3, sA), fp8(35, sB)], GgmlType.BF16, [16, 4], 'q');
      const raw = readFileSync(path);
      const want = Array.from({ length: 64 }, (_, i) => {
        const s = i < 32 ? sA : sB;
        const j = i % 32;
        return bf16ToFp32(fp32ToBf16(Math.fround(fp8e4m3ToFp32(raw[3 + i]) * s[Math.floor(j / 16) * 2 + Math.floor((j % 16) / 8)])));
      });
      assert.deepEqual([...w8.dequantizeRows(0, 4)], want);
      w8.dispose();
      // Blocks that do not divide the row (6 + 6 + 4 columns) and span both rows (blockRows 2).
      const sC = [3, -0.25, 9];
      const wc = weightGather([f], [{ ...fp8(3, sC), fp8Scale: { values: Float32Array.from(sC), blockRows: 2, blockCols: 6, cols: 16 } }], GgmlType.BF16, [16, 2], 'q');
      const wantC = Array.from({ length: 32 }, (_, i) => bf16ToFp32(fp32ToBf16(Math.fround(fp8e4m3ToFp32(raw[3 + i]) * sC[Math.floor((i % 16) / 6)]))));
      assert.deepEqual([...wc.dequantizeRows(0, 2)], wantC);
      wc.dispose();
      assert.throws(() => weightGather([f], [fp8(3, sA), fp8(35, [1, 2, 3])], GgmlType.BF16, [16, 4], 'q'), /weightGatherFp8: scales: expected at least 4 elements, got 3/);
      assert.throws(() => weightGather([f], [fp8(3, sA)], GgmlType.BF16, [16, 4], 'q'), /the ranges hold 32 bytes but the shape needs 64/);
      assert.throws(() => weightGather([f], [fp8(3, sA), { ...fp8(35, sB), nBytes: 24 }, { ...fp8(59, sB), nBytes: 8 }], GgmlType.BF16, [16, 4], 'q'), /range 1 of 24 bytes is not whole rows of 16/);
      assert.throws(() => weightGather([f], [fp8(3, sA), seg(35, 32)[0]], GgmlType.BF16, [16, 4], 'q'), /FP8 segments need type BF16, and every segment FP8/);
      assert.throws(() => weightGather([f], [fp8(3, sA), fp8(35, sB)], GgmlType.F32, [16, 4], 'q'), /FP8 segments need type BF16/);

      g.close();
      assert.throws(() => weightGather([g], seg(3, 64), GgmlType.F32, [16], 'x'), /mapped file was closed/);
    } finally {
      f.close();
      g.close();
    }
  });
});
