// Native tensors: mmapped files, weights as views, bounds checks, dispose and lifetime rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { quantize } from '../../src/formats/quant.ts';
import { linearForward, linearLoad } from '../../src/native/linear.ts';
import { MappedFile, weightFromFile } from '../../src/native/tensor.ts';
import { randomF32 } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'mixtile-tensor-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

// A file of 100 junk bytes, then a Q8_0 [64, 3] tensor at offset 100 (unaligned on purpose).
const values = randomF32(64 * 3, 5);
const q = quantize(GgmlType.Q8_0, values);
const path = join(dir, 'w.bin');
writeFileSync(path, Buffer.concat([Buffer.alloc(100, 7), Buffer.from(q)]));

test('weightFromFile views the mapped bytes at an unaligned offset', () => {
  const f = MappedFile.open(path);
  assert.equal(f.size, 100 + q.length);
  f.advise(0, f.size, 'willneed');
  f.advise(100, 10 ** 9, 'random'); // past the end is clipped, not an error
  assert.throws(() => f.advise(0, 1, 'bogus' as never), /unknown advice/);
  const w = weightFromFile(f, 100, GgmlType.Q8_0, [64, 3]);
  assert.equal(w.nBytes, q.length);
  const got = w.dequantizeRows(0, 3);
  for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i] - values[i]) <= 0.5 / 127 + 1e-6, `element ${i}`);
  w.dispose();
  f.close();
});

test('weights past the end of the file, bad dims and unknown types throw', () => {
  const f = MappedFile.open(path);
  assert.throws(() => weightFromFile(f, 101, GgmlType.Q8_0, [64, 3]), /looks truncated/);
  assert.throws(() => weightFromFile(f, 2 ** 40, GgmlType.Q8_0, [64, 1]), /looks truncated/);
  assert.throws(() => weightFromFile(f, 0, GgmlType.Q8_0, [48, 1]), /multiple of 32/);
  assert.throws(() => weightFromFile(f, 0, GgmlType.F32, [0]), /positive integers/);
  assert.throws(() => weightFromFile(f, 0, GgmlType.IQ2_XXS, [256]), /not supported/);
  assert.throws(() => weightFromFile(f, 0, GgmlType.F32, [2 ** 30, 2 ** 30, 2 ** 30]), /too large/);
  f.close();
  assert.throws(() => weightFromFile(f, 0, GgmlType.F32, [4]), /closed/);
});

test('opening a missing file names the path and the OS error', () => {
  assert.throws(() => MappedFile.open(join(dir, 'nope.gguf')), /nope\.gguf: cannot open: No such file/);
});

test('an op keeps its weight (and the mapping) alive after JS disposes and closes them', () => {
  const f = MappedFile.open(path);
  const w = weightFromFile(f, 100, GgmlType.Q8_0, [64, 3]);
  const lin = linearLoad(w);
  w.dispose();
  w.dispose(); // idempotent
  f.close();
  f.close();
  assert.throws(() => w.dequantizeRows(0, 1), /disposed/);
  const x = randomF32(64, 9);
  const y = new Float32Array(3);
  linearForward(lin, x, 1, y);
  for (let r = 0; r < 3; r++) {
    let s = 0;
    for (let i = 0; i < 64; i++) s += values[r * 64 + i] * x[i];
    assert.ok(Math.abs(y[r] - s) < 0.05, `row ${r}: ${y[r]} vs ${s}`);
  }
  lin.dispose();
});
