// Reader validation: crafted bad files, each must fail with one clear FormatError naming the
// place and byte offset; plus writer -> reader round trips and split sets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGguf, readTensorBytes, metaNumber, metaString, metaArray, metaBool, GGUFValueType } from '../../src/formats/gguf-read.ts';
import { GgufWriter } from '../../src/formats/gguf-write.ts';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { FormatError } from '../../src/formats/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'mixtile-gguf-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(bytes: Uint8Array): string {
  const p = join(dir, `f${n++}.gguf`);
  writeFileSync(p, bytes);
  return p;
}

/** Hand-rolled GGUF bytes, so tests can write what the writer would refuse to. */
class Raw {
  parts: Buffer[] = [];
  u32(v: number) { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.parts.push(b); return this; }
  u64(v: bigint | number) { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.parts.push(b); return this; }
  bytes(b: Uint8Array | number[]) { this.parts.push(Buffer.from(b)); return this; }
  str(s: string) { const b = Buffer.from(s); return this.u64(b.length).bytes(b); }
  len() { return Buffer.concat(this.parts).length; }
  pad(a = 32) { const r = this.len() % a; if (r) this.bytes(new Uint8Array(a - r)); return this; }
  done() { return Buffer.concat(this.parts); }
}

/** Header with one u32 kv and the given tensor infos [name, dims, type, offset]. */
function header(tensors: Array<[string, number[], number, number]>, opts: { version?: number; nTensors?: number; nKv?: number } = {}): Raw {
  const r = new Raw().u32(0x46554747).u32(opts.version ?? 3).u64(opts.nTensors ?? tensors.length).u64(opts.nKv ?? 1);
  r.str('general.test').u32(GGUFValueType.UINT32).u32(7);
  for (const [name, dims, type, off] of tensors) {
    r.str(name).u32(dims.length);
    for (const d of dims) r.u64(d);
    r.u32(type).u64(off);
  }
  return r.pad();
}

async function rejects(path: string, re: RegExp, where?: { tensor?: string; key?: string; offset?: number }) {
  await assert.rejects(readGguf(path), (e: unknown) => {
    assert.ok(e instanceof FormatError, `expected FormatError, got ${e}`);
    assert.match(e.message, re);
    assert.ok(e.message.startsWith(path), `message names the file: ${e.message}`);
    if (where?.offset !== undefined) assert.equal(e.where.offset, where.offset);
    if (where?.tensor !== undefined) assert.equal(e.where.tensor, where.tensor);
    return true;
  });
}

test('valid hand-built file reads', async () => {
  const p = file(header([['a', [8], GgmlType.F32, 0], ['b', [32, 2], GgmlType.Q8_0, 32]]).bytes(new Uint8Array(32 + 68)).done());
  const m = await readGguf(p);
  assert.equal(m.version, 3);
  assert.equal(m.tensors.get('b')!.nBytes, 68);
  assert.equal(m.tensors.get('b')!.offset - m.tensors.get('a')!.offset, 32);
  assert.equal(metaNumber(m, 'general.test'), 7);
});

test('bad magic', async () => {
  await rejects(file(Buffer.from('GGML' + '\0'.repeat(40))), /expected the magic "GGUF", found "GGML"/, { offset: 0 });
});

test('bad version', async () => {
  await rejects(file(header([], { version: 7 }).done()), /unsupported GGUF version 7, expected 2 or 3/, { offset: 4 });
  await rejects(file(header([], { version: 1 }).done()), /version 1.*reconvert/);
});

test('file shorter than the fixed header', async () => {
  await rejects(file(Buffer.from('GGUF\x03\0\0\0')), /needs 24 bytes but the file ends at byte 8; the file looks truncated/);
});

test('huge tensor and kv counts fail at once', async () => {
  await rejects(file(header([], { nTensors: 2 ** 62 }).done()), /tensor count is 4611686018427387904, more than/, { offset: 8 });
  await rejects(file(header([], { nKv: 1e12 }).done()), /metadata kv count is 1000000000000, more than/, { offset: 16 });
  await rejects(file(header([], { nKv: 3 }).done()), /3 metadata entries, which cannot fit/);
});

test('huge string length', async () => {
  const r = new Raw().u32(0x46554747).u32(3).u64(0).u64(1).u64(2n ** 60n).bytes(new Uint8Array(20));
  await rejects(file(r.done()), /metadata entry #0 at byte 24: key length is 1152921504606846976, more than/, { offset: 24 });
});

test('huge array length', async () => {
  const r = new Raw().u32(0x46554747).u32(3).u64(0).u64(1).str('tokenizer.ggml.tokens').u32(GGUFValueType.ARRAY).u32(GGUFValueType.STRING).u64(2n ** 40n).bytes(new Uint8Array(16));
  await rejects(file(r.done()), /metadata key "tokenizer.ggml.tokens" at byte \d+: array length is 1099511627776, more than/);
});

test('string running past the end of the file', async () => {
  const r = new Raw().u32(0x46554747).u32(3).u64(0).u64(2).str('a').u32(GGUFValueType.UINT8).bytes([1]).str('b').u32(GGUFValueType.STRING).u64(100).bytes(Buffer.from('short'));
  await rejects(file(r.done()), /metadata key "b" at byte \d+: string length is 100, more than the 5/);
});

test('unknown metadata value type', async () => {
  const r = new Raw().u32(0x46554747).u32(3).u64(0).u64(1).str('k').u32(99).bytes(new Uint8Array(16));
  await rejects(file(r.done()), /metadata key "k" at byte 33: unknown value type 99/, { offset: 33 });
});

test('truncated metadata', async () => {
  const full = header([]).done();
  await rejects(file(full.subarray(0, 46)), /metadata key "general.test" at byte 44: value type needs 4 bytes but the file ends at byte 46; the file looks truncated/, { offset: 44 });
});

test('truncated tensor data', async () => {
  const full = header([['a', [8], GgmlType.F32, 0], ['b', [16], GgmlType.F32, 32]]).bytes(new Uint8Array(96)).done();
  await rejects(file(full.subarray(0, full.length - 40)), /tensor "b" ends at byte \d+ but the file has \d+ bytes; the file looks truncated/, { tensor: 'b' });
});

test('unknown tensor type', async () => {
  await rejects(file(header([['w', [32], 4, 0]]).bytes(new Uint8Array(64)).done()), /tensor "w" at byte \d+: unknown ggml type 4/);
});

test('row not a whole number of blocks', async () => {
  await rejects(file(header([['w', [100], GgmlType.Q4_K, 0]]).bytes(new Uint8Array(256)).done()), /type Q4_K needs rows of a multiple of 256 elements, but dims\[0\] is 100/);
});

test('misaligned offset', async () => {
  await rejects(file(header([['a', [8], GgmlType.F32, 0], ['b', [8], GgmlType.F32, 40]]).bytes(new Uint8Array(128)).done()), /tensor "b" at byte \d+: data offset 40 is not a multiple of the alignment 32/);
});

test('offset past the end of the file', async () => {
  await rejects(file(header([['a', [8], GgmlType.F32, 2 ** 40]]).bytes(new Uint8Array(32)).done()), /data offset 1099511627776 is past the end of the \d+-byte file/);
});

test('size mismatch: dims x type disagree with the next offset', async () => {
  // "a" claims 8 F32 = 32 bytes but "b" starts 64 bytes in: the dims of "a" lie.
  await rejects(
    file(header([['a', [8], GgmlType.F32, 0], ['b', [8], GgmlType.F32, 64]]).bytes(new Uint8Array(128)).done()),
    /tensor "b" starts at data offset 64 .* "a" \(F32 \[8\] = 32 bytes\), ends at data offset 32 after padding/,
    { tensor: 'b' },
  );
});

test('overlapping tensors', async () => {
  await rejects(file(header([['a', [16], GgmlType.F32, 0], ['b', [8], GgmlType.F32, 32]]).bytes(new Uint8Array(128)).done()), /tensor "b" starts at data offset 32 .* ends at data offset 64/);
});

test('too many dims, zero dim, huge element count, duplicate names', async () => {
  await rejects(file(header([['a', [1, 1, 1, 1, 1], GgmlType.F32, 0]]).bytes(new Uint8Array(32)).done()), /tensor "a" at byte \d+: has 5 dimensions, expected 1 to 4/);
  await rejects(file(header([['a', [8, 0], GgmlType.F32, 0]]).bytes(new Uint8Array(32)).done()), /dimension 1 is 0/);
  await rejects(file(header([['a', [2 ** 30, 2 ** 30], GgmlType.F32, 0]]).bytes(new Uint8Array(32)).done()), /more than 2\^53 elements/);
  await rejects(file(header([['a', [8], GgmlType.F32, 0], ['a', [8], GgmlType.F32, 32]]).bytes(new Uint8Array(64)).done()), /tensor "a" at byte \d+: duplicate tensor name/);
});

test('bad general.alignment', async () => {
  const r = new Raw().u32(0x46554747).u32(3).u64(0).u64(1).str('general.alignment').u32(GGUFValueType.UINT32).u32(48);
  await rejects(file(r.done()), /alignment must be a power of two, found 48/);
});

test('writer -> reader round trip: metadata types, tensor bytes, alignment', async () => {
  const p = join(dir, 'rt.gguf');
  const w = new GgufWriter(p, { alignment: 64 });
  w.setMeta('general.architecture', 'qwen3moe');
  w.setMeta('qwen3moe.block_count', 2);
  w.setMeta('qwen3moe.rope.freq_base', 1e6);
  w.setMeta('neg', -5);
  w.setMeta('big', 2n ** 40n);
  w.setMeta('flag', true);
  w.setMeta('split.no', 0, GGUFValueType.UINT16);
  w.setMeta('tokenizer.ggml.tokens', ['a', 'ü', '']);
  w.setMeta('tokenizer.ggml.token_type', [1, 3, 1]);
  w.setMeta('scores', [0.5, -1]);
  const a = Uint8Array.from({ length: 24 }, (_, i) => i);
  const b = Uint8Array.from({ length: 34 * 3 }, (_, i) => 255 - i);
  w.addTensor('a', GgmlType.F32, [3, 2]);
  w.addTensor('b', GgmlType.Q8_0, [32, 3]);
  await w.begin();
  await w.writeTensor('a', a);
  await w.writeTensor('b', [b.subarray(0, 50), b.subarray(50)]);
  await w.close();
  const m = await readGguf(p);
  assert.equal(m.alignment, 64);
  assert.equal(metaString(m, 'general.architecture'), 'qwen3moe');
  assert.equal(metaNumber(m, 'qwen3moe.block_count'), 2);
  assert.equal(m.metadataTypes.get('qwen3moe.block_count')!.type, GGUFValueType.UINT32);
  assert.equal(m.metadataTypes.get('qwen3moe.rope.freq_base')!.type, GGUFValueType.FLOAT32);
  assert.equal(m.metadataTypes.get('neg')!.type, GGUFValueType.INT32);
  assert.equal(m.metadataTypes.get('split.no')!.type, GGUFValueType.UINT16);
  assert.equal(m.metadata.get('big'), 2n ** 40n);
  assert.equal(metaNumber(m, 'big'), 2 ** 40);
  assert.equal(metaBool(m, 'flag'), true);
  assert.deepEqual(metaArray(m, 'tokenizer.ggml.tokens'), ['a', 'ü', '']);
  assert.deepEqual(m.metadataTypes.get('tokenizer.ggml.token_type'), { type: GGUFValueType.ARRAY, itemType: GGUFValueType.INT32 });
  assert.deepEqual(metaArray(m, 'scores'), [0.5, -1]);
  assert.equal(m.tensors.get('a')!.offset % 64, 0);
  assert.equal(m.tensors.get('b')!.offset % 64, 0);
  assert.deepEqual(await readTensorBytes(m, 'a'), a);
  assert.deepEqual(await readTensorBytes(m, 'b'), b);
});

test('metadata getters name the key', async () => {
  const p = join(dir, 'meta.gguf');
  const w = new GgufWriter(p);
  w.setMeta('s', 'x');
  await w.begin();
  await w.close();
  const m = await readGguf(p);
  assert.throws(() => metaNumber(m, 's'), /metadata key "s" is a string \("x"\), expected a number/);
  assert.throws(() => metaString(m, 'nope'), /metadata key "nope" is missing; expected a string/);
  assert.equal(metaNumber(m, 'nope', 3), 3);
});

test('writer refuses wrong sizes and order, leaves no file behind', async () => {
  const p = join(dir, 'bad.gguf');
  const w = new GgufWriter(p);
  w.addTensor('a', GgmlType.F32, [4]);
  w.addTensor('b', GgmlType.F32, [4]);
  assert.throws(() => w.addTensor('c', GgmlType.Q4_K, [100]), /Q4_K rows must be a multiple of 256/);
  await w.begin();
  await assert.rejects(w.writeTensor('b', new Uint8Array(16)), /expected tensor "a" next, got "b"/);
  await assert.rejects(w.writeTensor('a', new Uint8Array(12)), /got 12 bytes, its type and dims need 16/);
  await w.abort();
  await assert.rejects(readGguf(p), /ENOENT/);
});

test('split set is read as one model from any part', async () => {
  const names = [1, 2].map((i) => join(dir, `m-0000${i}-of-00002.gguf`));
  for (const [i, p] of names.entries()) {
    const w = new GgufWriter(p);
    w.setMeta('split.no', i, GGUFValueType.UINT16);
    w.setMeta('split.count', 2, GGUFValueType.UINT16);
    w.setMeta('split.tensors.count', 2, GGUFValueType.INT32);
    w.addTensor(`t${i}`, GgmlType.F32, [8]);
    await w.begin();
    await w.writeTensor(`t${i}`, new Uint8Array(32).fill(i + 1));
    await w.close();
  }
  const m = await readGguf(names[1]);
  assert.deepEqual(m.files, names);
  assert.equal(m.tensors.get('t1')!.fileIndex, 1);
  assert.equal(m.tensors.get('t1')!.file, names[1]);
  assert.deepEqual(await readTensorBytes(m, 't1'), new Uint8Array(32).fill(2));
  rmSync(names[1]);
  await assert.rejects(readGguf(names[0]), /part 2 of 2 of this split model is missing/);
  const renamed = join(dir, 'renamed.gguf');
  writeFileSync(renamed, readFileSync(names[0]));
  await assert.rejects(readGguf(renamed), /one of 2 parts of a split model, but the file name does not follow/);
});
