// Attention core: every dispatch entry this CPU runs x every KV type, at awkward sizes: contexts
// of 1, 17, 130 and 2049 positions, prefills of 1 to 1000 tokens (the flash entries' K/V staged
// once per call from 2 query blocks a sequence), query blocks that are not a multiple of the flash tiles
// (64 rows, 64-position KV tiles), GQA groups of 1/3/4/8/16, head dims 64/80/128 and 40 (which
// the AVX-512 entries decline), tokens of several sequences mixed and out of order, causal
// positions that start mid-cache. The scalar entry is checked against a float64 softmax over the
// same (rounded) K/V; every other entry against scalar. flash-avx512 declines decode batches
// (one token per sequence) unless they split KV ranges or fill the pool from 256 positions; the
// per-token avx512 entry takes them. flash-avx512bf16 run by name takes F16 and BF16 caches (the
// dispatch gives it F16 ones only with MIXTILE_ATTENTION_BF16=1) and rounds Q, P and F16 K/V to
// BF16, so it is held to 1% of the output's size.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { bf16ToFp32, fp16ToFp32, fp32ToBf16, fp32ToFp16 } from '../../src/formats/half.ts';
import { attentionKernelRun, attentionKernels } from '../../src/native/attention.ts';
import { setThreads } from '../../src/native/isa.ts';
import { kvCacheCreate, kvCacheDispose, kvCacheWrite, type KvCacheShape } from '../../src/native/kv-cache.ts';

const ADDON = process.env.MIXTILE_ADDON ?? fileURLToPath(new URL('../../native/build/Release/mixtile.node', import.meta.url));
const skip = existsSync(ADDON) ? false : `native addon not built (${ADDON})`;

interface Case {
  name: string;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Per token: [sequence, position]. */
  tokens: Array<[number, number]>;
}

/** Tokens of sequence `seq` at positions [from, to). */
function run(seq: number, from: number, to: number): Array<[number, number]> {
  return Array.from({ length: to - from }, (_, i): [number, number] => [seq, from + i]);
}

/** Interleaves lists a, b token by token (two sequences prefilled in one batch). */
function mix(a: Array<[number, number]>, b: Array<[number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (i < a.length) out.push(a[i]!);
    if (i < b.length) out.push(b[i]!);
  }
  return out;
}

const CASES: Case[] = [
  { name: 'decode, one token at position 300', nHeads: 8, nKvHeads: 1, headDim: 128, tokens: [[0, 300]] },
  { name: 'decode batch, one token per sequence', nHeads: 8, nKvHeads: 2, headDim: 64, tokens: [[1, 40], [0, 7]] },
  { name: 'prefill 7 tokens of two sequences mixed', nHeads: 4, nKvHeads: 2, headDim: 64, tokens: [[0, 0], [1, 0], [0, 1], [0, 2], [1, 1], [1, 2], [0, 3]] },
  { name: 'positions around block edges', nHeads: 4, nKvHeads: 4, headDim: 80, tokens: [[1, 15], [1, 16], [0, 17], [0, 31], [1, 33]] },
  { name: 'head dim 40 (not a multiple of 16)', nHeads: 2, nKvHeads: 1, headDim: 40, tokens: [[0, 5], [1, 20], [1, 21]] },
  { name: 'context 1 beside a 2-token sequence', nHeads: 8, nKvHeads: 2, headDim: 64, tokens: [[1, 0], [0, 0], [0, 1]] },
  { name: 'prefill 17 from position 0, GQA 4', nHeads: 16, nKvHeads: 4, headDim: 128, tokens: run(0, 0, 17) },
  { name: 'context 130: mid-cache prefill mixed with a fresh one, GQA 8', nHeads: 16, nKvHeads: 2, headDim: 64, tokens: mix(run(0, 100, 130), run(1, 0, 21)) },
  { name: 'GQA 1, 70 tokens (a 64-row block and a 6-row one)', nHeads: 2, nKvHeads: 2, headDim: 80, tokens: run(1, 60, 130) },
  { name: 'GQA 3 (63 live rows of 64), tokens out of order', nHeads: 6, nKvHeads: 2, headDim: 64, tokens: run(0, 40, 70).reverse() },
  { name: 'GQA 16 (4 tokens a block)', nHeads: 16, nKvHeads: 1, headDim: 64, tokens: run(0, 3, 14) },
  { name: 'context 2049: 69 tokens ending at 2048, GQA 8', nHeads: 8, nKvHeads: 1, headDim: 64, tokens: run(0, 1980, 2049) },
  { name: '100 tokens from 17, GQA 6 (16 rows in the last block)', nHeads: 12, nKvHeads: 2, headDim: 128, tokens: run(0, 17, 117) },
  { name: '1000 tokens from 0 beside 3 of another sequence, head dim 16', nHeads: 4, nKvHeads: 2, headDim: 16, tokens: mix(run(1, 0, 1000), run(0, 40, 43)) },
];
const KV_TYPES: Array<KvCacheShape['type']> = ['f32', 'f16', 'bf16'];

let seed = 12345;
function rand(): number {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 4294967296 - 0.5;
}

const roundKv: Record<KvCacheShape['type'], (x: number) => number> = {
  f32: (x) => Math.fround(x),
  f16: (x) => fp16ToFp32(fp32ToFp16(x)),
  bf16: (x) => bf16ToFp32(fp32ToBf16(x)),
};

const kernels = skip ? [] : attentionKernels();

/**
 * Runs every entry on case `c` and checks it. `flashDecode`: the flash entries must take decode
 * batches too (the pool is large enough that they split KV ranges, or the batch's (token, KV head)
 * tasks fill it at 256+ positions).
 */
function checkCase(c: Case, kvType: KvCacheShape['type'], flashDecode: boolean): void {
  const ctx = Math.max(...c.tokens.map(([, p]) => p)) + 1;
  const nSeq = Math.max(...c.tokens.map(([s]) => s)) + 1;
  const kvDim = c.nKvHeads * c.headDim;
  const kv = kvCacheCreate({ type: kvType, nSeq, nLayers: 2, ctx, nKvHeads: c.nKvHeads, headDim: c.headDim });
  try {
    // Fill every position of every slot in layer 1 (layer 0 stays unwritten: a wrong layer offset shows).
    const K = new Float32Array(nSeq * ctx * kvDim).map(() => rand() * 4);
    const V = new Float32Array(nSeq * ctx * kvDim).map(() => rand() * 4);
    const seqs = Int32Array.from({ length: nSeq * ctx }, (_, i) => Math.floor(i / ctx));
    const poss = Int32Array.from({ length: nSeq * ctx }, (_, i) => i % ctx);
    kvCacheWrite(kv, 1, nSeq * ctx, seqs, poss, K, V);
    const Kr = K.map(roundKv[kvType]);
    const Vr = V.map(roundKv[kvType]);

    const n = c.tokens.length;
    const qDim = c.nHeads * c.headDim;
    const q = new Float32Array(n * qDim).map(() => rand() * 2);
    const seq = Int32Array.from(c.tokens.map(([s]) => s));
    const pos = Int32Array.from(c.tokens.map(([, p]) => p));

    // float64 reference over the rounded cache contents.
    const ref = new Float64Array(n * qDim);
    const group = c.nHeads / c.nKvHeads;
    const scale = 1 / Math.sqrt(c.headDim);
    for (let i = 0; i < n; i++) {
      for (let h = 0; h < c.nHeads; h++) {
        const kvh = Math.floor(h / group);
        const qo = (i * c.nHeads + h) * c.headDim;
        const scores = new Float64Array(pos[i]! + 1);
        let m = -Infinity;
        for (let t = 0; t <= pos[i]!; t++) {
          let s = 0;
          const row = (seq[i]! * ctx + t) * kvDim + kvh * c.headDim;
          for (let j = 0; j < c.headDim; j++) s += q[qo + j]! * Kr[row + j]!;
          scores[t] = s * scale;
          m = Math.max(m, scores[t]!);
        }
        let sum = 0;
        for (let t = 0; t <= pos[i]!; t++) sum += scores[t] = Math.exp(scores[t]! - m);
        for (let t = 0; t <= pos[i]!; t++) {
          const row = (seq[i]! * ctx + t) * kvDim + kvh * c.headDim;
          const p = scores[t]! / sum;
          for (let j = 0; j < c.headDim; j++) ref[qo + j]! += p * Vr[row + j]!;
        }
      }
    }

    const perSeq = new Map<number, number>();
    for (const s of seq) perSeq.set(s, (perSeq.get(s) ?? 0) + 1);
    const decodeBatch = Math.max(...perSeq.values()) < 2;
    const flashExpected = !decodeBatch || flashDecode;
    let scalar: Float32Array | undefined;
    const ran: string[] = [];
    for (const name of [...kernels].reverse()) {
      const out = new Float32Array(n * qDim).fill(Number.NaN);
      if (!attentionKernelRun(name, kv, 1, n, c.nHeads, q, out, pos, seq)) {
        assert.ok(name !== 'scalar', 'the scalar entry takes every shape');
        const flash = name.startsWith('flash-');
        const wrongKv = name === 'flash-avx512bf16' && kvType === 'f32';
        assert.ok(c.headDim % 16 !== 0 || (flash && !flashExpected) || wrongKv, `${name} declined`);
        continue;
      }
      ran.push(name);
      let worst = 0;
      if (name === 'scalar') {
        out.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ref[i]!))));
        assert.ok(worst < 1e-4, `scalar vs float64: max |diff| ${worst}`);
        scalar = out;
      } else if (name === 'flash-avx512bf16') {
        // Q and P rounded to BF16 (8-bit mantissa): error relative to the output's size.
        let size = 0;
        out.forEach((v, i) => {
          worst = Math.max(worst, Math.abs(v - scalar![i]!));
          size = Math.max(size, Math.abs(scalar![i]!));
        });
        assert.ok(worst < 1e-2 * size, `${name} vs scalar: max |diff| ${worst}, max |out| ${size}`);
      } else {
        out.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - scalar![i]!))));
        assert.ok(worst < 2e-5, `${name} vs scalar: max |diff| ${worst}`);
      }
    }
    if (kernels.includes('flash-avx512') && c.headDim % 16 === 0) {
      assert.ok(ran.includes(flashExpected ? 'flash-avx512' : 'avx512'), `ran ${ran.join(', ')}`);
    }
    if (kernels.includes('flash-avx512bf16') && c.headDim % 16 === 0 && kvType !== 'f32' && flashExpected) {
      assert.ok(ran.includes('flash-avx512bf16'), `ran ${ran.join(', ')}`);
    }
  } finally {
    kvCacheDispose(kv);
  }
}

for (const kvType of KV_TYPES) {
  for (const c of CASES) {
    test(`attention ${c.name}, kv ${kvType}: ${kernels.join(', ')}`, { skip }, () => checkCase(c, kvType, false));
  }
}

// At 16 threads these batches give the pool too few (block, KV head) tasks, so the flash entries
// split the KV ranges (256+ positions each, on 64-position tiles) and merge the partial softmaxes:
// splits that end past a block's context (empty), rows that see only masked positions in a split
// (token at position 10 beside one at 1200), decode batches, a short prefill deep in the cache.
const SPLIT_CASES: Case[] = [
  { name: 'decode at position 2048 (8 splits)', nHeads: 8, nKvHeads: 1, headDim: 64, tokens: [[0, 2048]] },
  { name: 'decode batch at 700 and 1500 (empty splits)', nHeads: 8, nKvHeads: 2, headDim: 128, tokens: [[1, 1500], [0, 700]] },
  { name: 'prefill 5 tokens at 1000, GQA 4', nHeads: 8, nKvHeads: 2, headDim: 64, tokens: run(0, 1000, 1005) },
  { name: 'positions 10 and 1200 in one block', nHeads: 4, nKvHeads: 1, headDim: 64, tokens: [[0, 10], [0, 1200]] },
  { name: 'prefill 20 tokens at 1200, GQA 8 (3 blocks: staged K/V, split)', nHeads: 8, nKvHeads: 1, headDim: 128, tokens: run(0, 1200, 1220) },
];
describe('attention with split KV ranges (16 threads)', { skip }, () => {
  before(() => setThreads(16));
  after(() => setThreads(availableParallelism()));
  for (const kvType of KV_TYPES) {
    for (const c of SPLIT_CASES) test(`${c.name}, kv ${kvType}`, () => checkCase(c, kvType, true));
  }
});

// At 2 threads a decode batch whose (token, KV head) tasks fill the pool takes the flash entries
// from 256 positions, one block per task (no split).
const FILL_CASES: Case[] = [
  { name: 'decode at position 256, 2 KV heads', nHeads: 16, nKvHeads: 2, headDim: 128, tokens: [[0, 256]] },
  { name: 'decode batch at 300 and 1030, GQA 3', nHeads: 6, nKvHeads: 2, headDim: 64, tokens: [[1, 1030], [0, 300]] },
];
describe('attention decode filling the pool (2 threads)', { skip }, () => {
  before(() => setThreads(2));
  after(() => setThreads(availableParallelism()));
  for (const kvType of KV_TYPES) {
    for (const c of FILL_CASES) test(`${c.name}, kv ${kvType}`, () => checkCase(c, kvType, true));
  }
});

test('attention kernel run rejects bad slots and positions', { skip }, () => {
  const kv = kvCacheCreate({ type: 'f16', nSeq: 1, nLayers: 1, ctx: 4, nKvHeads: 1, headDim: 16 });
  try {
    const q = new Float32Array(16);
    const out = new Float32Array(16);
    assert.throws(() => attentionKernelRun('scalar', kv, 0, 1, 1, q, out, Int32Array.of(4), Int32Array.of(0)), /position 4 outside the context/);
    assert.throws(() => attentionKernelRun('scalar', kv, 0, 1, 1, q, out, Int32Array.of(0), Int32Array.of(1)), /sequence id 1 outside/);
    assert.throws(() => attentionKernelRun('nope', kv, 0, 1, 1, q, out, Int32Array.of(0), Int32Array.of(0)), /unknown attention kernel nope/);
  } finally {
    kvCacheDispose(kv);
  }
});

// Decode at short context with 16 threads: fewer (token, KV head) pairs than half the pool, so the
// per-token kernel splits each GQA group's query heads into parts (Qwen3-30B-A3B: 8 heads in 2 tasks;
// GQA 6 with 2 KV heads and 2 tokens: parts of 3).
const PARTS_CASES: Case[] = [
  { name: 'decode at position 77, 32 heads / 4 KV heads', nHeads: 32, nKvHeads: 4, headDim: 128, tokens: [[0, 77]] },
  { name: 'decode batch at 5 and 90, GQA 6', nHeads: 12, nKvHeads: 2, headDim: 64, tokens: [[1, 90], [0, 5]] },
];
describe('attention decode with query heads in parts (16 threads)', { skip }, () => {
  before(() => setThreads(16));
  after(() => setThreads(availableParallelism()));
  for (const kvType of KV_TYPES) {
    for (const c of PARTS_CASES) test(`${c.name}, kv ${kvType}`, () => checkCase(c, kvType, false));
  }
});
