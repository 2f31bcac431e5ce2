// Reference 2: llama.cpp itself, through node-llama-cpp's prebuilt CPU binary (dev dependency
// node-llama-cpp@3.22.1). Evaluates a token sequence and returns the raw logits of every position,
// plus the comparison statistics the tests and test/engine/compare-llamacpp.ts print.
import type { Token } from 'node-llama-cpp';

export interface LlamaRun {
  logits(prompt: number[]): Promise<Array<Map<number, number>>>;
  dispose(): Promise<void>;
}

/** Loads `path` in node-llama-cpp on the CPU; returns a reason string if it cannot run here. */
export async function openLlama(path: string, contextSize = 64): Promise<LlamaRun | string> {
  let mod: typeof import('node-llama-cpp');
  try {
    mod = await import('node-llama-cpp');
  } catch (e) {
    return `node-llama-cpp is not installed (${(e as Error).message}); npm install --ignore-scripts -D node-llama-cpp@3.22.1`;
  }
  try {
    const llama = await mod.getLlama({ gpu: false, build: 'never', logLevel: mod.LlamaLogLevel.error });
    const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
    const ctx = await model.createContext({ contextSize, threads: 2 });
    const seq = ctx.getSequence();
    return {
      async logits(prompt) {
        await seq.clearHistory();
        // node-llama-cpp brands token ids (Token = number & {...}); ours are plain vocabulary indexes.
        const input = prompt.map((t): [Token, { generateNext: { logits: boolean } }] => [t as Token, { generateNext: { logits: true } }]);
        const out = await seq.controlledEvaluate(input);
        return prompt.map((_, i) => {
          const l = out[i]?.next.logits;
          if (!l) throw new Error(`node-llama-cpp returned no logits for position ${i}`);
          return l;
        });
      },
      async dispose() {
        await ctx.dispose();
        await model.dispose();
        await llama.dispose();
      },
    };
  } catch (e) {
    return `node-llama-cpp's prebuilt llama.cpp cannot run here: ${(e as Error).message}`;
  }
}

/** KL(p_ref || p_got) of the softmaxes, max |diff| and the std of the reference logits. */
export function logitStats(ref: Map<number, number>, got: Float32Array, off: number, vocab: number) {
  const r = new Float64Array(vocab);
  for (const [t, v] of ref) r[t] = v;
  const g = Float64Array.from(got.subarray(off, off + vocab));
  const logSoftmax = (x: Float64Array) => {
    let m = -Infinity;
    for (const v of x) m = Math.max(m, v);
    let s = 0;
    for (const v of x) s += Math.exp(v - m);
    const lse = m + Math.log(s);
    return x.map((v) => v - lse);
  };
  const lr = logSoftmax(r);
  const lg = logSoftmax(g);
  let kl = 0;
  let maxDiff = 0;
  let mean = 0;
  let sq = 0;
  let topR = 0;
  let topG = 0;
  for (let i = 0; i < vocab; i++) {
    kl += Math.exp(lr[i]!) * (lr[i]! - lg[i]!);
    maxDiff = Math.max(maxDiff, Math.abs(r[i]! - g[i]!));
    mean += r[i]!;
    sq += r[i]! * r[i]!;
    if (r[i]! > r[topR]!) topR = i;
    if (g[i]! > g[topG]!) topG = i;
  }
  mean /= vocab;
  return { kl, maxDiff, std: Math.sqrt(sq / vocab - mean * mean), topR, topG };
}

