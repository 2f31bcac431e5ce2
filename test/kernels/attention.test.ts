// Attention core: every dispatch entry this CPU runs x every KV type, at awkward sizes (one token
// deep into the cache, tokens of two sequences mixed, positions across the 16-position blocks,
// GQA groups of 1/4/8, head dims 64/80/128 and 40, which the AVX-512 entry declines). The scalar
// entry is checked against a float64 softmax over the same (rounded) K/V; every other entry
// against scalar.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { bf16ToFp32, fp16ToFp32, fp32ToBf16, fp32ToFp16 } from '../../src/formats/half.ts';
import { attentionKernelRun, attentionKernels } from '../../src/native/attention.ts';
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

const CASES: Case[] = [
  { name: 'decode, one token at position 300', nHeads: 8, nKvHeads: 1, headDim: 128, tokens: [[0, 300]] },
  { name: 'prefill 7 tokens of two sequences mixed', nHeads: 4, nKvHeads: 2, headDim: 64, tokens: [[0, 0], [1, 0], [0, 1], [0, 2], [1, 1], [1, 2], [0, 3]] },
  { name: 'positions around block edges', nHeads: 4, nKvHeads: 4, headDim: 80, tokens: [[1, 15], [1, 16], [0, 17], [0, 31], [1, 33]] },
  { name: 'head dim 40 (not a multiple of 16)', nHeads: 2, nKvHeads: 1, headDim: 40, tokens: [[0, 5], [1, 20]] },
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

for (const kvType of KV_TYPES) {
  for (const c of CASES) {
    test(`attention ${c.name}, kv ${kvType}: ${kernels.join(', ')}`, { skip }, () => {
      const ctx = Math.max(...c.tokens.map(([, p]) => p)) + 1;
      const nSeq = 2;
      const kvDim = c.nKvHeads * c.headDim;
      const kv = kvCacheCreate({ type: kvType, nSeq, nLayers: 2, ctx, nKvHeads: c.nKvHeads, headDim: c.headDim });
      try {
        // Fill every position of both slots in layer 1 (layer 0 stays unwritten: a wrong layer offset shows).
        const K = new Float32Array(nSeq * ctx * kvDim).map(() => rand() * 4);
        const V = new Float32Array(nSeq * ctx * kvDim).map(() => rand() * 4);
        const seqs = Int32Array.from({ length: nSeq * ctx }, (_, i) => Math.floor(i / ctx));
        const poss = Int32Array.from({ length: nSeq * ctx }, (_, i) => i % ctx);
        kvCacheWrite(kv, 1, nSeq * ctx, seqs, poss, K, V);

        const n = c.tokens.length;
        const qDim = c.nHeads * c.headDim;
        const q = new Float32Array(n * qDim).map(() => rand() * 2);
        const seq = Int32Array.from(c.tokens.map(([s]) => s));
        const pos = Int32Array.from(c.tokens.map(([, p]) => p));

        // float64 reference over the rounded cache contents.
        const ref = new Float64Array(n * qDim);
        const group = c.nHeads / c.nKvHeads;
        for (let i = 0; i < n; i++) {
          for (let h = 0; h < c.nHeads; h++) {
            const kvh = Math.floor(h / group);
            const scores: number[] = [];
            for (let t = 0; t <= pos[i]!; t++) {
              let s = 0;
              const row = (seq[i]! * ctx + t) * kvDim + kvh * c.headDim;
              for (let j = 0; j < c.headDim; j++) s += q[(i * c.nHeads + h) * c.headDim + j]! * roundKv[kvType](K[row + j]!);
              scores.push(s / Math.sqrt(c.headDim));
            }
            const m = Math.max(...scores);
            const e = scores.map((s) => Math.exp(s - m));
            const sum = e.reduce((a, b) => a + b, 0);
            for (let t = 0; t <= pos[i]!; t++) {
              const row = (seq[i]! * ctx + t) * kvDim + kvh * c.headDim;
              for (let j = 0; j < c.headDim; j++) ref[(i * c.nHeads + h) * c.headDim + j]! += (e[t]! / sum) * roundKv[kvType](V[row + j]!);
            }
          }
        }

        let scalar: Float32Array | undefined;
        for (const name of [...kernels].reverse()) {
          const out = new Float32Array(n * qDim).fill(Number.NaN);
          const ran = attentionKernelRun(name, kv, 1, n, c.nHeads, q, out, pos, seq);
          if (name === 'scalar') {
            assert.ok(ran, 'the scalar entry takes every shape');
            let worst = 0;
            out.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ref[i]!))));
            assert.ok(worst < 1e-4, `scalar vs float64: max |diff| ${worst}`);
            scalar = out;
          } else if (!ran) {
            assert.ok(c.headDim % 16 !== 0, `${name} declined head dim ${c.headDim}`);
          } else {
            let worst = 0;
            out.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - scalar![i]!))));
            assert.ok(worst < 1e-5, `${name} vs scalar: max |diff| ${worst}`);
          }
        }
      } finally {
        kvCacheDispose(kv);
      }
    });
  }
}

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
