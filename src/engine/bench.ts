// llama-bench's two tests through our own scheduler, in-process: pp<N> = one prefill of N random
// tokens, tg<N> = N single-token steps starting from an empty cache (llama-bench's test_gen).
// Formatting the table is the CLI's job (src/cli/bench.ts).
import type { LoadedModel } from '../model/types.ts';
import { opProfileAvailable, opProfileEnable, opProfileRead, opProfileReset, type OpProfileRow } from '../native/op-profile.ts';
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
  /** With `profile`: native time, bytes and FLOPs per CPU op kind over the timed repetitions (not the warm-up). */
  ops?: OpProfileRow[];
}

/** Runs each test `reps` times after one warm-up run (as llama-bench does); `seed` fixes the random tokens. */
export function runBench(
  model: LoadedModel,
  tokenizer: SchedulerTokenizer,
  tests: BenchTest[],
  opts: { reps: number; ubatch: number; seed?: number; profile?: boolean; onResult?: (r: BenchResult) => void },
): BenchResult[] {
  const profile = opts.profile === true && opProfileAvailable();
  if (profile) opProfileEnable(true);
  try {
    return runTests(model, tokenizer, tests, opts, profile);
  } finally {
    if (profile) opProfileEnable(false);
  }
}

function runTests(
  model: LoadedModel,
  tokenizer: SchedulerTokenizer,
  tests: BenchTest[],
  opts: { reps: number; ubatch: number; seed?: number; onResult?: (r: BenchResult) => void },
  profile: boolean,
): BenchResult[] {
  const rng = new Prng(opts.seed ?? 1);
  const randomTokens = (n: number) => Array.from({ length: n }, () => Math.floor(rng.next() * model.config.vocab));
  const results: BenchResult[] = [];
  for (const t of tests) {
    // Warm-up as llama-bench's: the whole prompt for pp (first-use costs of its batch size: GPU scratch,
    // cuBLAS plans, the experts' cost model), one token for tg.
    if (t.kind === 'pp') runOnce(model, tokenizer, opts.ubatch, randomTokens(t.n), 1);
    else runOnce(model, tokenizer, opts.ubatch, randomTokens(1), 1);
    if (profile) opProfileReset();
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
      ...(profile ? { ops: opProfileRead() } : {}),
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

/**
 * Where one step's time goes, as a markdown table (for `bench -v`): each native op kind's ms per
 * step, share of the step, weight GB/s and GFLOP/s, then the rest of model.forward (JS around the
 * native calls, embedding, GPU ops if any) and the engine's TS overhead outside it.
 */
export function formatOpProfile(r: BenchResult): string {
  if (!r.ops) return '';
  const step = r.forwardMsPerStep + r.overheadMsPerStep;
  const pct = (ms: number) => `${((100 * ms) / step).toFixed(1)}%`;
  const lines = [`${r.test}: ${step.toFixed(3)} ms per step`, '', '| op | calls/step | ms/step | share | GB/s | GFLOP/s |', '| --- | ---: | ---: | ---: | ---: | ---: |'];
  let nativeMs = 0;
  for (const o of r.ops) {
    if (o.calls === 0) continue;
    const ms = o.ns / 1e6 / r.steps;
    if (o.parent === null) nativeMs += ms;
    const rate = (x: number) => (o.ns > 0 && x > 0 ? (x / o.ns).toFixed(1) : '-');
    const name = o.parent === null ? o.name : `&nbsp;&nbsp;${o.name}`;
    lines.push(`| ${name} | ${(o.calls / r.steps).toFixed(1)} | ${ms.toFixed(3)} | ${pct(ms)} | ${rate(o.bytes)} | ${rate(o.flops)} |`);
  }
  const rest = r.forwardMsPerStep - nativeMs;
  lines.push(`| rest of model.forward (JS, embedding) | | ${rest.toFixed(3)} | ${pct(rest)} | | |`);
  lines.push(`| TS outside model.forward (sampling, batching) | | ${r.overheadMsPerStep.toFixed(3)} | ${pct(r.overheadMsPerStep)} | | |`);
  return lines.join('\n') + '\n';
}
