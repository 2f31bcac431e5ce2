// The repack cache (native/src/repack-cache.*) with the AMX panel repack (layout only: runs on any
// x86-64, AMX or not). Weights are views into a mapped file, as in a GGUF; each test checks that
// what a later start maps from the cache is byte-identical to a fresh repack, and that a bad or
// stale cache file is rebuilt (never a crash), an unwritable folder only costs the caching.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { quantize } from '../../src/formats/quant.ts';
import { addon } from '../../src/native/addon.ts';
import { MappedFile, weightFromBytes, weightFromFile, type NativeWeight } from '../../src/native/tensor.ts';
import { randomF32 } from './helpers.ts';

interface Layout {
  bytes: number;
  hash: string;
  cache: 'off' | 'no-source' | 'hit' | 'written' | 'rebuilt' | 'write-failed';
}

const root = mkdtempSync(join(tmpdir(), 'mixtile-repack-'));
const cacheDir = join(root, 'cache');
process.env.MIXTILE_REPACK_CACHE_DIR = cacheDir;
delete process.env.MIXTILE_REPACK_CACHE;

// Shapes off the 16/32-row panel sizes where the type's block allows; 3 experts.
const N_EXPERT = 3;
function shape(type: GgmlType): { hidden: number; ffn: number } {
  if (type === GgmlType.BF16) return { hidden: 200, ffn: 40 };
  if (type === GgmlType.Q8_0) return { hidden: 160, ffn: 96 };
  return { hidden: 256, ffn: 256 }; // K-quants: whole 256-element blocks
}

interface Tensor {
  type: GgmlType;
  dims: number[];
  bytes: Uint8Array;
  offset: number;
}

/** Writes the tensors one after another (64-byte aligned, after a 4096-byte header) into a file. */
function writeSource(path: string, tensors: Omit<Tensor, 'offset'>[]): Tensor[] {
  let at = 4096;
  const placed = tensors.map((t) => {
    const offset = at;
    at = Math.ceil((at + t.bytes.length) / 64) * 64;
    return { ...t, offset };
  });
  const buf = new Uint8Array(at);
  for (const t of placed) buf.set(t.bytes, t.offset);
  writeFileSync(path, buf);
  return placed;
}

function tensor(type: GgmlType, dims: number[], seed: number): Omit<Tensor, 'offset'> {
  const n = dims.reduce((a, b) => a * b, 1);
  return { type, dims, bytes: quantize(type, randomF32(n, seed, 0.5)) };
}

function experts(type: GgmlType, seed: number): Omit<Tensor, 'offset'>[] {
  const { hidden, ffn } = shape(type);
  return [
    tensor(type, [hidden, ffn, N_EXPERT], seed),
    tensor(type, [hidden, ffn, N_EXPERT], seed + 1),
    tensor(type, [ffn, hidden, N_EXPERT], seed + 2),
  ];
}

function open(path: string, tensors: Tensor[]): { file: MappedFile; w: NativeWeight[] } {
  const file = MappedFile.open(path);
  return { file, w: tensors.map((t) => weightFromFile(file, t.offset, t.type, t.dims)) };
}

function packExperts(w: NativeWeight[], dtype: 'bf16' | 'int8' | 'q4k'): Layout {
  return addon().amxExpertsPackLayout(w[0].handle, w[1].handle, w[2].handle, dtype, 64) as Layout;
}

function close(o: { file: MappedFile; w: NativeWeight[] }): void {
  for (const w of o.w) w.dispose();
  o.file.close();
}

const cacheFiles = (): string[] => {
  try {
    return readdirSync(cacheDir).filter((f) => f.endsWith('.mxrp'));
  } catch {
    return [];
  }
};

for (const [type, dtype] of [
  [GgmlType.Q4_K, 'int8'],
  [GgmlType.Q4_K, 'q4k'],
  [GgmlType.BF16, 'bf16'],
  [GgmlType.Q6_K, 'bf16'],
] as const) {
  test(`experts ${GgmlType[type]} -> AMX ${dtype}: written once, then mapped; identical to a fresh repack`, () => {
    rmSync(cacheDir, { recursive: true, force: true });
    const path = join(root, `experts-${type}-${dtype}.bin`);
    const tensors = writeSource(path, experts(type, 10 + type));
    const fresh = tensors.map((t) => weightFromBytes(t.bytes, t.type, t.dims));
    const ref = packExperts(fresh, dtype);
    assert.equal(ref.cache, 'no-source', 'weights in a native buffer have no file to key a cache on');
    for (const w of fresh) w.dispose();

    const first = open(path, tensors);
    const a = packExperts(first.w, dtype);
    assert.equal(a.cache, 'written');
    assert.deepEqual(cacheFiles().length, 1);
    const b = packExperts(first.w, dtype);
    assert.equal(b.cache, 'hit');
    assert.equal(a.hash, ref.hash);
    assert.equal(b.hash, ref.hash, 'the mapped cache holds the same bytes as a fresh repack');
    assert.equal(b.bytes, ref.bytes);
    const file = join(cacheDir, cacheFiles()[0]!);
    assert.equal(statSync(file).size, 4096 + ref.bytes);
    close(first);

    const second = open(path, tensors); // a second start
    assert.equal(packExperts(second.w, dtype).cache, 'hit');
    close(second);
  });
}

test('a truncated, corrupt or foreign cache file is rebuilt with the same bytes, never a crash', () => {
  rmSync(cacheDir, { recursive: true, force: true });
  const path = join(root, 'corrupt.bin');
  const tensors = writeSource(path, experts(GgmlType.Q4_K, 50));
  const o = open(path, tensors);
  const ref = packExperts(o.w, 'int8');
  assert.equal(ref.cache, 'written');
  const file = join(cacheDir, cacheFiles()[0]!);
  const size = statSync(file).size;

  const damage: [string, () => void][] = [
    ['cut short', () => truncateSync(file, size - 100)],
    ['cut to part of its header', () => truncateSync(file, 1000)],
    ['a header byte flipped', () => {
      const b = readFileSync(file);
      b[20] ^= 0x55;
      writeFileSync(file, b);
    }],
    ['the first payload byte changed', () => {
      const b = readFileSync(file);
      b[4096] ^= 0xff;
      writeFileSync(file, b);
    }],
    ['the last payload byte changed', () => {
      const b = readFileSync(file);
      b[b.length - 1] ^= 0xff;
      writeFileSync(file, b);
    }],
    ['another file in its place', () => writeFileSync(file, 'not a cache file')],
    ['empty', () => writeFileSync(file, '')],
  ];
  for (const [what, fn] of damage) {
    fn();
    const r = packExperts(o.w, 'int8');
    assert.equal(r.cache, 'rebuilt', what);
    assert.equal(r.hash, ref.hash, what);
    assert.equal(statSync(file).size, size, `${what}: rewritten whole`);
    assert.equal(packExperts(o.w, 'int8').cache, 'hit', `${what}: valid again`);
  }
  assert.equal(cacheFiles().length, 1);
  assert.deepEqual(readdirSync(cacheDir).filter((f) => f.includes('.tmp.')), [], 'no temporary files left');
  close(o);
});

test('a rewritten source file makes its cache stale: rebuilt in the same cache file', () => {
  rmSync(cacheDir, { recursive: true, force: true });
  const path = join(root, 'changing.bin');
  const t1 = writeSource(path, experts(GgmlType.Q4_K, 60));
  const o1 = open(path, t1);
  const a = packExperts(o1.w, 'int8');
  assert.equal(a.cache, 'written');
  close(o1);
  const t2 = writeSource(path, experts(GgmlType.Q4_K, 70)); // same size and offsets, new contents
  const o2 = open(path, t2);
  const b = packExperts(o2.w, 'int8');
  assert.equal(b.cache, 'rebuilt');
  assert.notEqual(b.hash, a.hash);
  assert.equal(packExperts(o2.w, 'int8').cache, 'hit');
  assert.equal(cacheFiles().length, 1, 'the same slot: no second file');
  // Another target layout of the same source is another file: INT8 and Q4K panels of the same
  // Q4_K bytes never take each other's cache.
  assert.equal(packExperts(o2.w, 'bf16').cache, 'written');
  assert.equal(cacheFiles().length, 2);
  assert.equal(packExperts(o2.w, 'q4k').cache, 'written');
  assert.equal(packExperts(o2.w, 'q4k').cache, 'hit');
  assert.equal(packExperts(o2.w, 'int8').cache, 'hit');
  assert.equal(cacheFiles().length, 3);
  close(o2);
});

test('MIXTILE_REPACK_CACHE=0 turns the cache off; an unwritable folder only costs the caching', () => {
  rmSync(cacheDir, { recursive: true, force: true });
  const path = join(root, 'settings.bin');
  const tensors = writeSource(path, experts(GgmlType.Q8_0, 80));
  const o = open(path, tensors);
  try {
    process.env.MIXTILE_REPACK_CACHE = '0';
    assert.deepEqual(addon().repackCacheSettings(), { enabled: false, dir: cacheDir });
    const off = packExperts(o.w, 'int8');
    assert.equal(off.cache, 'off');
    assert.deepEqual(cacheFiles(), []);
    delete process.env.MIXTILE_REPACK_CACHE;
    process.env.MIXTILE_REPACK_CACHE_DIR = '/proc/mixtile-cannot-write-here';
    const failed = packExperts(o.w, 'int8');
    assert.equal(failed.cache, 'write-failed');
    assert.equal(failed.hash, off.hash);
  } finally {
    process.env.MIXTILE_REPACK_CACHE_DIR = cacheDir;
    delete process.env.MIXTILE_REPACK_CACHE;
    close(o);
  }
});

test('linear weights (attention projections, lm_head) round-trip through the cache', () => {
  rmSync(cacheDir, { recursive: true, force: true });
  const path = join(root, 'linear.bin');
  const tensors = writeSource(path, [tensor(GgmlType.Q4_K, [512, 100], 90), tensor(GgmlType.BF16, [200, 33], 91)]);
  const o = open(path, tensors);
  for (const [i, dtype] of [[0, 'int8'], [0, 'bf16'], [1, 'bf16']] as const) {
    const fresh = weightFromBytes(tensors[i]!.bytes, tensors[i]!.type, tensors[i]!.dims);
    const ref = addon().amxLinearPackLayout(fresh.handle, dtype, 64) as Layout;
    fresh.dispose();
    const a = addon().amxLinearPackLayout(o.w[i]!.handle, dtype, 64) as Layout;
    const b = addon().amxLinearPackLayout(o.w[i]!.handle, dtype, 64) as Layout;
    assert.deepEqual([a.cache, b.cache], ['written', 'hit']);
    assert.equal(a.hash, ref.hash);
    assert.equal(b.hash, ref.hash);
  }
  close(o);
});

test('the load log line: repack seconds and GB/s, then "repack cache hit" on a second start', () => {
  // A child process, so its stderr (where native code logs) can be read.
  const dir = join(root, 'child-cache');
  const path = join(root, 'child.bin');
  const tensors = writeSource(path, experts(GgmlType.Q4_K, 100));
  const script = `
    import { addon } from './src/native/addon.ts';
    import { MappedFile, weightFromFile } from './src/native/tensor.ts';
    const t = ${JSON.stringify(tensors.map(({ type, dims, offset }) => ({ type, dims, offset })))};
    const f = MappedFile.open(${JSON.stringify(path)});
    const w = t.map((x) => weightFromFile(f, x.offset, x.type, x.dims));
    addon().amxExpertsPackLayout(w[0].handle, w[1].handle, w[2].handle, 'int8', 64);
    console.error('mixtile: ' + addon().repackCacheTakeTotals().summary);
  `;
  const run = () =>
    spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: join(import.meta.dirname, '../..'),
      env: { ...process.env, MIXTILE_REPACK_CACHE_DIR: dir },
      encoding: 'utf8',
    });
  const first = run();
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stderr, /repack of 1: [\d.]+ s \([\d.]+ s per GB of source, [\d.]+ GB\/s\)/);
  assert.match(first.stderr, /cache written for 1/);
  const second = run();
  assert.equal(second.status, 0, second.stderr);
  assert.match(second.stderr, /repack cache hit for 1/);
  truncateSync(join(dir, readdirSync(dir)[0]!), 5000);
  const third = run();
  assert.equal(third.status, 0, third.stderr);
  assert.match(third.stderr, /repack cache: .*\.mxrp: .*truncated.*; rebuilding it/);
});

test.after(() => rmSync(root, { recursive: true, force: true }));
