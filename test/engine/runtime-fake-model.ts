// TEST DOUBLE, not shipped: a deterministic stand-in for LoadedModel so the scheduler can be tested
// without weights. Each slot's "KV" is its token list; the logits for a position are a hash of every
// token up to it, so any scheduling mistake (wrong slot, position, lost or doubled token) changes them.
import type { LoadedModel, ForwardBatch, ModelConfig } from '../../src/model/types.ts';
import type { StreamDecoder } from '../../src/tokenizer/tokenizer.ts';
import type { SchedulerTokenizer } from '../../src/engine/scheduler.ts';

export interface FakeModel extends LoadedModel {
  /** Tokens per forward() call, in call order. */
  readonly batchSizes: number[];
}

function mix(h: number, x: number): number {
  h = Math.imul(h ^ x, 0x9e3779b1);
  return (h ^ (h >>> 15)) >>> 0;
}

/** Logits row of a sequence whose tokens (KV) so far are `seq`. */
export function fakeLogits(seq: readonly number[], vocab: number): Float32Array {
  let h = 0x12345;
  for (const t of seq) h = mix(h, t + 1);
  const row = new Float32Array(vocab);
  for (let j = 0; j < vocab; j++) row[j] = (mix(h, j * 7919 + 1) % 10000) / 1000; // 0 .. 10
  return row;
}

export function fakeModel(opts: { nSeq: number; ctxSize: number; vocab?: number }): FakeModel {
  const vocab = opts.vocab ?? 64;
  const kv: number[][] = Array.from({ length: opts.nSeq }, () => []);
  const batchSizes: number[] = [];
  const config: ModelConfig = {
    architecture: 'fake', nLayers: 1, hidden: 8, nHeads: 1, nKvHeads: 1, headDim: 8, nExperts: 0, nExpertsUsed: 0,
    expertFfn: 0, ffn: 8, vocab, ropeTheta: 10000, rmsEps: 1e-6, contextLength: opts.ctxSize, normTopKProb: true,
  };
  const checkSeq = (s: number) => {
    if (!(s >= 0 && s < opts.nSeq)) throw new Error(`fake model: slot ${s} out of range`);
  };
  return {
    config,
    gguf: undefined as never, // the scheduler never reads the file
    ctxSize: opts.ctxSize,
    nSeq: opts.nSeq,
    loadMs: 0,
    batchSizes,
    forward(b: ForwardBatch): Float32Array {
      batchSizes.push(b.tokens.length);
      const snapshots: number[][] = [];
      for (let i = 0; i < b.tokens.length; i++) {
        const s = b.seqIds[i];
        checkSeq(s);
        if (b.positions[i] !== kv[s].length) throw new Error(`fake model: slot ${s} got position ${b.positions[i]}, its KV has ${kv[s].length}`);
        if (kv[s].length >= opts.ctxSize) throw new Error(`fake model: slot ${s} is full`);
        if (b.tokens[i] < 0 || b.tokens[i] >= vocab) throw new Error(`fake model: token ${b.tokens[i]} out of range`);
        kv[s].push(b.tokens[i]);
        snapshots.push(kv[s].slice());
      }
      const out = new Float32Array(b.logitsFor.length * vocab);
      b.logitsFor.forEach((at, r) => out.set(fakeLogits(snapshots[at], vocab), r * vocab));
      return out;
    },
    kv: {
      clear: (s) => void (checkSeq(s), (kv[s] = [])),
      truncate: (s, n) => void (checkSeq(s), (kv[s].length = Math.min(n, kv[s].length))),
      copy: (src, dst, n) => void (checkSeq(src), checkSeq(dst), (kv[dst] = kv[src].slice(0, n))),
      length: (s) => (checkSeq(s), kv[s].length),
    },
    dispose() {},
  };
}

/** Token id → "<id>" text; `eog` ids end generation. */
export function fakeTokenizer(eog: number[] = []): SchedulerTokenizer {
  return {
    eogIds: new Set(eog),
    createStreamDecoder(): StreamDecoder {
      return { push: (id) => `<${id}>`, flush: () => '' };
    },
  };
}

/** Greedy continuation computed straight from fakeLogits, one token at a time: the reference. */
export function fakeGreedy(prompt: readonly number[], n: number, vocab = 64): number[] {
  const seq = prompt.slice();
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const row = fakeLogits(seq, vocab);
    let best = 0;
    for (let j = 1; j < vocab; j++) if (row[j] > row[best]) best = j;
    out.push(best);
    seq.push(best);
  }
  return out;
}
