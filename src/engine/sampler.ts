// Token sampling for one sequence: penalties, top-k, top-p, min-p, temperature, then a seeded draw,
// in llama.cpp's default chain order. Stop conditions live in stop.ts; the scheduler owns one Sampler per request.
// The scans over the whole vocabulary (argmax, top-k, ids near the max) run natively when the addon
// has them (~10-50 µs instead of ~0.2 ms per 152k-logit row); the JS versions below are their
// references (test/kernels/sampling.test.ts) and run when the native one declines (NaN rows).
import { randomInt } from 'node:crypto';
import { nativeAboveGap, nativeArgmax, nativeSamplingAvailable, nativeTopK } from '../native/sampling.ts';
import type { SamplingParams } from './types.ts';

/** mulberry32: a small seeded PRNG; the same seed gives the same stream on every platform. */
export class Prng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}

/** Rejected candidates redrawn one by one before the whole row is masked (constrained decoding). */
const CONSTRAINED_RETRIES = 8;

/** Logits below max - this are dropped before sorting when top-k is off: their share is < e^-30 each. */
export const NEGLIGIBLE_LOGIT_GAP = 30;

/**
 * Samples tokens for one sequence. Chain (llama.cpp common_sampler defaults): penalties → top-k →
 * top-p → min-p → temperature → softmax → draw. temperature <= 0 is greedy (argmax after penalties).
 * top-p and min-p therefore see the temperature-1 distribution, as in llama.cpp.
 */
export class Sampler {
  readonly params: SamplingParams;
  readonly seed: number;
  private readonly rng: Prng;
  /** Token history for penalties: the prompt then the sampled tokens, newest last. */
  private readonly history: number[];

  constructor(params: SamplingParams, history: readonly number[] = []) {
    checkParams(params);
    this.params = params;
    this.seed = params.seed ?? randomInt(0, 2 ** 32 - 1);
    this.rng = new Prng(this.seed);
    this.history = history.slice();
  }

  /** Records a token that is now part of the sequence (each sampled token, via sample()). */
  accept(id: number): void {
    this.history.push(id);
  }

  /**
   * Picks the next token from one row of logits `[vocab]` and accepts it. Penalties are applied to
   * `logits` in place (the row is the caller's scratch copy of the model output).
   */
  sample(logits: Float32Array, allow?: (id: number) => boolean): number {
    this.applyPenalties(logits);
    let id = this.pick(logits);
    if (allow && !allow(id)) id = this.pickAllowed(logits, allow, id);
    this.accept(id);
    return id;
  }

  private pick(logits: Float32Array): number {
    return this.params.temperature <= 0 ? scanArgmax(logits) : this.draw(logits);
  }

  /**
   * The same chain over the tokens `allow` accepts (constrained decoding): a rejected pick is masked
   * to -Infinity and the chain runs again, so the best allowed candidate wins (greedy) or is drawn
   * with its renormalized probability. After a few misses the whole row is masked at once: testing
   * every token costs one pass over the vocabulary instead of a scan per rejected candidate.
   */
  private pickAllowed(logits: Float32Array, allow: (id: number) => boolean, rejected: number): number {
    logits[rejected] = -Infinity;
    for (let tries = 0; tries < CONSTRAINED_RETRIES; tries++) {
      const id = this.pick(logits);
      if (logits[id] === -Infinity) break; // everything left in reach is masked
      if (allow(id)) return id;
      logits[id] = -Infinity;
    }
    let best = -1;
    for (let i = 0; i < logits.length; i++) {
      if (logits[i] === -Infinity) continue;
      if (!allow(i)) logits[i] = -Infinity;
      else if (best < 0 || logits[i] > logits[best]) best = i;
    }
    if (best < 0) throw new Error('constrained decoding: no token of the vocabulary continues the output');
    const id = this.pick(logits);
    return logits[id] === -Infinity ? best : id; // a draw landing in the rounding gap on a masked id
  }

  private applyPenalties(logits: Float32Array): void {
    const { repeatPenalty, presencePenalty, frequencyPenalty, repeatLastN } = this.params;
    if (repeatLastN === 0 || (repeatPenalty === 1 && presencePenalty === 0 && frequencyPenalty === 0)) return;
    const n = repeatLastN < 0 ? this.history.length : Math.min(repeatLastN, this.history.length);
    const counts = new Map<number, number>();
    for (let i = this.history.length - n; i < this.history.length; i++) {
      const t = this.history[i];
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    // llama_sampler_penalties_apply: divide positive logits, multiply negative ones, then subtract.
    for (const [t, c] of counts) {
      if (t < 0 || t >= logits.length) continue;
      let l = logits[t];
      l = l <= 0 ? l * repeatPenalty : l / repeatPenalty;
      logits[t] = l - c * frequencyPenalty - presencePenalty;
    }
  }

  private draw(logits: Float32Array): number {
    const { topK, topP, minP, temperature } = this.params;
    // Candidates sorted by logit, descending. With top-k and top-p both off, min-p needs only the
    // max, so the whole vocabulary is not sorted (a 152k sort costs tens of ms per token).
    let ids = topK > 0 ? scanTopK(logits, topK) : scanAboveGap(logits, topP < 1);
    let vals = Float64Array.from(ids, (i) => logits[i]);
    // top-p and min-p on the temperature-1 softmax of what is left.
    let probs = softmax(vals, 1);
    if (topP < 1) {
      let cum = 0;
      let keep = probs.length;
      for (let i = 0; i < probs.length; i++) {
        cum += probs[i];
        if (cum >= topP) {
          keep = i + 1;
          break;
        }
      }
      ids = ids.subarray(0, keep);
      vals = vals.subarray(0, keep);
      probs = softmax(vals, 1);
    }
    if (minP > 0) {
      // Kept in order, not as a prefix: only the first entry is known to be the best when unsorted.
      const floor = probs[0] * minP;
      const keep = Array.from(ids.keys()).filter((i) => probs[i] >= floor);
      ids = Int32Array.from(keep, (i) => ids[i]);
      vals = Float64Array.from(keep, (i) => vals[i]);
    }
    const p = softmax(vals, temperature);
    const r = this.rng.next();
    let cum = 0;
    for (let i = 0; i < p.length; i++) {
      cum += p[i];
      if (r < cum) return ids[i];
    }
    return ids[ids.length - 1]; // r landed in the rounding gap at the top
  }
}

function checkParams(p: SamplingParams): void {
  const bad = (what: string) => {
    throw new RangeError(`sampling: ${what}`);
  };
  if (!(p.temperature >= 0)) bad(`temperature must be >= 0, got ${p.temperature}`);
  if (!Number.isInteger(p.topK) || p.topK < 0) bad(`topK must be an integer >= 0, got ${p.topK}`);
  if (!(p.topP > 0 && p.topP <= 1)) bad(`topP must be in (0, 1], got ${p.topP}`);
  if (!(p.minP >= 0 && p.minP <= 1)) bad(`minP must be in [0, 1], got ${p.minP}`);
  if (!(p.repeatPenalty > 0)) bad(`repeatPenalty must be > 0, got ${p.repeatPenalty}`);
  if (!Number.isInteger(p.repeatLastN) || p.repeatLastN < -1) bad(`repeatLastN must be an integer >= -1, got ${p.repeatLastN}`);
  if (p.seed !== undefined && !(Number.isInteger(p.seed) && p.seed >= 0 && p.seed < 2 ** 32)) bad(`seed must be an integer in [0, 2^32), got ${p.seed}`);
}

let nativeScans = true;

/** Turns the native scans off (true: use them where the addon has them); tests compare both paths. */
export function setNativeScans(on: boolean): void {
  nativeScans = on;
}

const useNative = () => nativeScans && nativeSamplingAvailable();

// Native when available, else (or for rows it declines) the JS reference.
function scanArgmax(logits: Float32Array): number {
  return (useNative() ? nativeArgmax(logits) : undefined) ?? argmax(logits);
}

function scanTopK(logits: Float32Array, k: number): Int32Array {
  return (useNative() ? nativeTopK(logits, k) : undefined) ?? topKIndices(logits, k);
}

function scanAboveGap(logits: Float32Array, sorted: boolean): Int32Array {
  const native = useNative() ? nativeAboveGap(logits, NEGLIGIBLE_LOGIT_GAP, sorted) : undefined;
  return native ?? (sorted ? sortedAboveGap(logits) : bestFirstAboveGap(logits));
}

/** Index of the largest logit; ties go to the lowest id (as llama.cpp's greedy sampler). */
export function argmax(logits: Float32Array): number {
  let best = 0;
  let bestV = logits[0];
  for (let i = 1; i < logits.length; i++) {
    if (logits[i] > bestV) {
      bestV = logits[i];
      best = i;
    }
  }
  return best;
}

/** Softmax of `vals / temperature`, in float64; vals[0] is the largest. */
function softmax(vals: Float64Array, temperature: number): Float64Array {
  const out = new Float64Array(vals.length);
  const max = vals[0];
  let sum = 0;
  for (let i = 0; i < vals.length; i++) {
    out[i] = Math.exp((vals[i] - max) / temperature);
    sum += out[i];
  }
  for (let i = 0; i < vals.length; i++) out[i] /= sum;
  return out;
}

/** The k largest logits' ids, sorted descending (ties: lower id first); O(n log k) with a min-heap. */
export function topKIndices(logits: Float32Array, k: number): Int32Array {
  k = Math.min(k, logits.length);
  const heap = new Int32Array(k); // min-heap on (logit, then higher id = smaller)
  let size = 0;
  const less = (a: number, b: number) => logits[a] < logits[b] || (logits[a] === logits[b] && a > b);
  const siftDown = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < size && less(heap[l], heap[m])) m = l;
      if (r < size && less(heap[r], heap[m])) m = r;
      if (m === i) return;
      const t = heap[i];
      heap[i] = heap[m];
      heap[m] = t;
      i = m;
    }
  };
  for (let id = 0; id < logits.length; id++) {
    if (size < k) {
      let i = size++;
      heap[i] = id;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!less(heap[i], heap[p])) break;
        const t = heap[i];
        heap[i] = heap[p];
        heap[p] = t;
        i = p;
      }
    } else if (logits[id] > logits[heap[0]]) {
      // Ids come in increasing order, so an equal logit never beats the heap's (lower-id) minimum.
      heap[0] = id;
      siftDown(0);
    }
  }
  return heap.sort((a, b) => logits[b] - logits[a] || a - b);
}

/** All ids within NEGLIGIBLE_LOGIT_GAP of the max, best first, the rest in id order (no sort). */
export function bestFirstAboveGap(logits: Float32Array): Int32Array {
  const best = argmax(logits);
  const floor = logits[best] - NEGLIGIBLE_LOGIT_GAP;
  const ids: number[] = [best];
  for (let i = 0; i < logits.length; i++) if (i !== best && logits[i] >= floor) ids.push(i);
  return Int32Array.from(ids);
}

/** All ids within NEGLIGIBLE_LOGIT_GAP of the max, sorted descending (top-k off). */
export function sortedAboveGap(logits: Float32Array): Int32Array {
  const floor = logits[argmax(logits)] - NEGLIGIBLE_LOGIT_GAP;
  const ids: number[] = [];
  for (let i = 0; i < logits.length; i++) if (logits[i] >= floor) ids.push(i);
  return Int32Array.from(ids).sort((a, b) => logits[b] - logits[a] || a - b);
}
