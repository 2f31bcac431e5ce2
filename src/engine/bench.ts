// llama-bench's tests through our own scheduler, in-process: pp<N> = one prefill of N random tokens,
// tg<N> = N single-token steps (llama-bench's test_gen), each at a context depth d: the KV cache already
// holds d tokens when the timed part starts ("pp512 @ d4096"), prefilled once per depth and not timed.
// Formatting the table is the CLI's job (src/cli/bench.ts).
import type { LoadedModel } from '../model/types.ts';
import { opProfileAvailable, opProfileEnable, opProfileRead, opProfileReset, type OpProfileRow } from '../native/op-profile.ts';
import { Prng } from './sampler.ts';
import { Scheduler, type SchedulerTokenizer } from './scheduler.ts';
import { DEFAULT_SAMPLING, type GenerateStats } from './types.ts';

export interface BenchTest {
  kind: 'pp' | 'tg';
  n: number;
  /** Tokens already in the KV cache when the timed part starts (llama-bench -d). */
  depth: number;
}

export interface BenchResult {
  /** llama-bench's name: "pp512", "tg128", "pp512 @ d4096". */
  test: string;
  nPrompt: number;
  nGen: number;
  nDepth: number;
  /** Tokens per second and milliseconds of each repetition. */
  samplesTs: number[];
  samplesMs: number[];
  avgTs: number;
  sdTs: number;
  /**
   * pp tests: mean milliseconds from the request to its first sampled token (prefill of the n prompt
   * tokens on top of the depth, the output head, sampling): the time to first token of an n-token
   * prompt, or of an n-token turn after a d-token conversation whose KV is cached.
   */
  ttftMs?: number;
  /** Per forward step: time inside model.forward, and everything else the engine did (batching, sampling, stop checks). */
  forwardMsPerStep: number;
  overheadMsPerStep: number;
  steps: number;
  /** With `profile`: native time, bytes and FLOPs per CPU op kind over the timed repetitions (not the warm-up). */
  ops?: OpProfileRow[];
}

export class BenchError extends Error {}

/**
 * llama-bench's test list and order: for each depth, every pp test, then every tg test (0 = none).
 * Example: benchTests([512], [128], [0, 4096]) -> pp512, tg128, pp512 @ d4096, tg128 @ d4096.
 */
export function benchTests(nPrompt: readonly number[], nGen: readonly number[], depths: readonly number[]): BenchTest[] {
  const tests: BenchTest[] = [];
  for (const depth of depths) {
    for (const n of nPrompt) if (n > 0) tests.push({ kind: 'pp', n, depth });
    for (const n of nGen) if (n > 0) tests.push({ kind: 'tg', n, depth });
  }
  return tests;
}

export function testName(t: BenchTest): string {
  return `${t.kind}${t.n}${t.depth > 0 ? ` @ d${t.depth}` : ''}`;
}

/**
 * KV positions per slot the tests need: depth + n for the deepest test, plus the one position a
 * request keeps free (src/engine/scheduler.ts checkRequest). Throws BenchError, naming the test, when
 * that is more than the model was trained for (llama-bench sizes its context the same way, d + n).
 */
export function benchContextSize(tests: readonly BenchTest[], trainedContext: number): number {
  let worst = tests[0]!;
  for (const t of tests) if (t.depth + t.n > worst.depth + worst.n) worst = t;
  const need = worst.depth + worst.n + 1;
  if (need > trainedContext) {
    throw new BenchError(
      `${testName(worst)} needs ${need} positions of context (depth ${worst.depth} + ${worst.n} tokens + 1) but the model's context length is ${trainedContext}; lower -d, -p or -n`,
    );
  }
  return need;
}

/** Runs each test `reps` times after one warm-up run (as llama-bench does); `seed` fixes the random tokens. */
export function runBench(
  model: LoadedModel,
  tokenizer: SchedulerTokenizer,
  tests: BenchTest[],
  opts: BenchOptions,
): BenchResult[] {
  const profile = opts.profile === true && opProfileAvailable();
  if (profile) opProfileEnable(true);
  try {
    return new BenchRunner(model, tokenizer, opts).run(tests, profile);
  } finally {
    if (profile) opProfileEnable(false);
  }
}

export interface BenchOptions {
  reps: number;
  ubatch: number;
  seed?: number;
  profile?: boolean;
  onResult?: (r: BenchResult) => void;
  /** Called once per depth > 0 after its untimed prefill (ms: request to first token of that d-token prompt, one cold run). */
  onDepth?: (depth: number, ms: number) => void;
}

/**
 * One scheduler with one KV slot for the whole run. The slot's prefix cache carries the depth: every
 * request at depth d is the same d random tokens followed by the test's own tokens, so the scheduler
 * keeps exactly d positions (truncating what the last run appended) and computes only the test's part.
 * llama-bench restores a saved state at depth d before each repetition; this is the same KV.
 */
class BenchRunner {
  private readonly rng: Prng;
  private readonly sched: Scheduler;
  /** The depth tokens now cached in the slot, and the token the last request put right after them. */
  private context: number[] = [];
  private lastAfterContext = -1;
  /** The slot's first cached token (-1: empty): a new context must start differently to share nothing. */
  private slotFirst = -1;

  constructor(
    private readonly model: LoadedModel,
    private readonly tokenizer: SchedulerTokenizer,
    private readonly opts: BenchOptions,
  ) {
    if (model.nSeq !== 1) throw new BenchError(`bench: the model must be loaded with one KV slot (nSeq 1), got ${model.nSeq}`);
    this.rng = new Prng(opts.seed ?? 1);
    this.sched = new Scheduler(model, tokenizer, { ubatch: opts.ubatch, maxQueue: 0 });
  }

  run(tests: readonly BenchTest[], profile: boolean): BenchResult[] {
    for (const t of tests) {
      if (t.depth + t.n >= this.model.ctxSize) {
        throw new BenchError(`${testName(t)} needs ${t.depth + t.n + 1} positions of context but the model was loaded with ${this.model.ctxSize}`);
      }
    }
    const results: BenchResult[] = [];
    for (const t of tests) {
      if (t.depth !== this.context.length) this.prefillDepth(t.depth);
      // Warm-up as llama-bench's: the whole prompt for pp (first-use costs of its batch size: GPU scratch,
      // cuBLAS plans, the experts' cost model), one token for tg. llama-bench warms up at depth 0 and then
      // restores the depth; here the warm-up runs on top of the depth, which leaves the same KV behind.
      this.request(t.kind === 'pp' ? t.n : 1, 1);
      if (profile) opProfileReset();
      const samplesMs: number[] = [];
      let ttftMs = 0;
      const before = { ...this.sched.timings };
      for (let r = 0; r < this.opts.reps; r++) {
        const stats = t.kind === 'pp' ? this.request(t.n, 1) : this.request(1, t.n);
        // pp: prefill time (up to the first sampled token); tg: all n single-token steps.
        samplesMs.push(t.kind === 'pp' ? stats.promptMs : stats.promptMs + stats.decodeMs);
        ttftMs += stats.queueMs + stats.promptMs;
      }
      const after = this.sched.timings;
      const steps = after.steps - before.steps;
      const forwardMs = after.forwardMs - before.forwardMs;
      const samplesTs = samplesMs.map((ms) => (t.n / ms) * 1000);
      const avg = samplesTs.reduce((a, b) => a + b, 0) / samplesTs.length;
      const sd = samplesTs.length > 1 ? Math.sqrt(samplesTs.reduce((a, b) => a + (b - avg) ** 2, 0) / (samplesTs.length - 1)) : 0;
      const result: BenchResult = {
        test: testName(t),
        nPrompt: t.kind === 'pp' ? t.n : 0,
        nGen: t.kind === 'tg' ? t.n : 0,
        nDepth: t.depth,
        samplesTs,
        samplesMs,
        avgTs: avg,
        sdTs: sd,
        ...(t.kind === 'pp' ? { ttftMs: ttftMs / this.opts.reps } : {}),
        forwardMsPerStep: forwardMs / steps,
        overheadMsPerStep: (after.stepMs - before.stepMs - forwardMs) / steps,
        steps,
        ...(profile ? { ops: opProfileRead() } : {}),
      };
      this.opts.onResult?.(result);
      results.push(result);
    }
    return results;
  }

  private randomTokens(n: number): number[] {
    return Array.from({ length: n }, () => Math.floor(this.rng.next() * this.model.config.vocab));
  }

  /** Fills the KV with `depth` new random tokens (untimed; the cache holds exactly those afterwards). */
  private prefillDepth(depth: number): void {
    this.context = this.differentFirst(this.randomTokens(depth), this.slotFirst);
    // At depth 0 the next request must not reuse the old context's first token either.
    this.lastAfterContext = depth === 0 ? this.slotFirst : -1;
    if (depth === 0) return;
    const stats = this.runRequest(this.context, 1, 0);
    this.slotFirst = this.context[0]!;
    this.opts.onDepth?.(depth, stats.queueMs + stats.promptMs);
  }

  private differentFirst(tokens: number[], avoid: number): number[] {
    if (tokens.length > 0 && tokens[0] === avoid) tokens[0] = (avoid + 1) % this.model.config.vocab;
    return tokens;
  }

  /**
   * One greedy request of `nPrompt` fresh tokens after the depth context, generating `maxTokens`.
   * Its first token differs from the last request's, so the prefix cache reuses exactly the depth.
   */
  private request(nPrompt: number, maxTokens: number): GenerateStats {
    const own = this.differentFirst(this.randomTokens(nPrompt), this.lastAfterContext);
    this.lastAfterContext = own[0]!;
    if (this.context.length === 0) this.slotFirst = own[0]!;
    return this.runRequest([...this.context, ...own], maxTokens, this.context.length);
  }

  private runRequest(prompt: number[], maxTokens: number, expectCached: number): GenerateStats {
    let stats: GenerateStats | undefined;
    let error: string | undefined;
    this.sched.submit(1, { prompt, maxTokens, sampling: { ...DEFAULT_SAMPLING, temperature: 0 }, stop: [], stopAtEog: false }, (ev) => {
      if (ev.type === 'done') {
        stats = ev.stats;
        error = ev.error;
      }
    });
    while (!this.sched.idle()) this.sched.step();
    if (error !== undefined || !stats) throw new Error(`bench: the model failed: ${error ?? 'no result'}`);
    // The timed part must start on exactly the depth: neither a recomputed context nor a longer reused prefix.
    if (stats.cachedTokens !== expectCached) {
      throw new Error(`bench: the KV cache held ${stats.cachedTokens} tokens at the start of a request, expected the depth ${expectCached}`);
    }
    return stats;
  }
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
