// llama-bench's two tests through our own scheduler, in-process: pp<N> = one prefill of N random
// tokens, tg<N> = N single-token steps starting from an empty cache (llama-bench's test_gen).
// Formatting the table is the CLI's job (src/cli/bench.ts).
import type { LoadedModel } from '../model/types.ts';
import { Prng } from './sampler.ts';
import { Scheduler, type SchedulerTokenizer } from './scheduler.ts';
import { DEFAULT_SAMPLING, type GenerateStats } from './types.ts';

export interface BenchTest {
  kind: 'pp' | 'tg';
  n: number;
}

export interface BenchResult {
  /** "pp512" / "tg128". */
  test: string;
  nPrompt: number;
  nGen: number;
  /** Tokens per second of each repetition. */
  samplesTs: number[];
  avgTs: number;
  sdTs: number;
  /** Per forward step: time inside model.forward, and everything else the engine did (batching, sampling, stop checks). */
  forwardMsPerStep: number;
  overheadMsPerStep: number;
  steps: number;
}

/** Runs each test `reps` times after one short warm-up (as llama-bench does); `seed` fixes the random tokens. */
export function runBench(
  model: LoadedModel,
  tokenizer: SchedulerTokenizer,
  tests: BenchTest[],
  opts: { reps: number; ubatch: number; seed?: number; onResult?: (r: BenchResult) => void },
): BenchResult[] {
  const rng = new Prng(opts.seed ?? 1);
  const randomTokens = (n: number) => Array.from({ length: n }, () => Math.floor(rng.next() * model.config.vocab));
  const results: BenchResult[] = [];
  for (const t of tests) {
    if (t.kind === 'pp') runOnce(model, tokenizer, opts.ubatch, randomTokens(Math.min(t.n, 32)), 1);
    else runOnce(model, tokenizer, opts.ubatch, randomTokens(1), 1);
    const samples: number[] = [];
    let forwardMs = 0;
    let stepMs = 0;
    let steps = 0;
    for (let r = 0; r < opts.reps; r++) {
      const run = t.kind === 'pp' ? runOnce(model, tokenizer, opts.ubatch, randomTokens(t.n), 1) : runOnce(model, tokenizer, opts.ubatch, randomTokens(1), t.n);
      // pp: prefill time (up to the first sampled token); tg: all n single-token steps.
      const ms = t.kind === 'pp' ? run.stats.promptMs : run.stats.promptMs + run.stats.decodeMs;
      samples.push((t.n / ms) * 1000);
      forwardMs += run.timings.forwardMs;
      stepMs += run.timings.stepMs;
      steps += run.timings.steps;
    }
    const avg = samples.reduce((a, b) => a + b, 0) / samples.length;
    const sd = samples.length > 1 ? Math.sqrt(samples.reduce((a, b) => a + (b - avg) ** 2, 0) / (samples.length - 1)) : 0;
    const result: BenchResult = {
      test: `${t.kind}${t.n}`,
      nPrompt: t.kind === 'pp' ? t.n : 0,
      nGen: t.kind === 'tg' ? t.n : 0,
      samplesTs: samples,
      avgTs: avg,
      sdTs: sd,
      forwardMsPerStep: forwardMs / steps,
      overheadMsPerStep: (stepMs - forwardMs) / steps,
      steps,
    };
    opts.onResult?.(result);
    results.push(result);
  }
  return results;
}

/** One request on a fresh scheduler (an empty cache), greedy, never stopping early. */
function runOnce(model: LoadedModel, tokenizer: SchedulerTokenizer, ubatch: number, prompt: number[], maxTokens: number) {
  const s = new Scheduler(model, tokenizer, { ubatch, maxQueue: 0 });
  let stats: GenerateStats | undefined;
  let error: string | undefined;
  s.submit(1, { prompt, maxTokens, sampling: { ...DEFAULT_SAMPLING, temperature: 0 }, stop: [], stopAtEog: false }, (ev) => {
    if (ev.type === 'done') {
      stats = ev.stats;
      error = ev.error;
    }
  });
  while (!s.idle()) s.step();
  if (error !== undefined || !stats) throw new Error(`bench: the model failed: ${error ?? 'no result'}`);
  return { stats, timings: s.timings };
}
