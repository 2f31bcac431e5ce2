// Continuous batching over the model's KV slots: every step carries one decode token from each
// running sequence plus a chunk of waiting prompts, one model.forward() per step. Runs where the
// model lives (the engine worker, or in-process for `bench`); knows nothing about messages or HTTP.
import type { LoadedModel } from '../model/types.ts';
import type { StreamDecoder } from '../tokenizer/tokenizer.ts';
import { EngineError } from './errors.ts';
import { JsonConstraint } from './json-constraint.ts';
import type { JsonTopLevel } from './json-validator.ts';
import { Sampler } from './sampler.ts';
import { StopCondition } from './stop.ts';
import type { FinishReason, GenerateEvent, GenerateRequest } from './types.ts';

/**
 * What the scheduler needs of the tokenizer: end-of-generation ids and streaming detokenization;
 * for constrained (JSON) requests also each token's bytes and which ids are control tokens.
 */
export interface SchedulerTokenizer {
  readonly eogIds: ReadonlySet<number>;
  createStreamDecoder(): StreamDecoder;
  tokenBytes?(id: number): Uint8Array;
  isControl?(id: number): boolean;
}

export interface SchedulerOptions {
  /** Most tokens per forward step (decode tokens + prompt chunk). */
  ubatch: number;
  /** Requests that may wait for a slot; one more is refused with EngineError('queue_full'). */
  maxQueue: number;
}

/** Time split of the steps run so far, for `bench --verbose` (TS overhead per decoded token). */
export interface StepTimings {
  steps: number;
  /** Tokens passed to forward() in all steps. */
  tokens: number;
  forwardMs: number;
  /** Whole step: batch building, forward, sampling, stop checks, emitting. */
  stepMs: number;
}

type Emit = (ev: GenerateEvent) => void;

interface Job {
  id: number;
  req: GenerateRequest;
  emit: Emit;
  submittedAt: number;
  /** The prompt actually used (after truncation). */
  prompt: number[];
  admittedAt?: number;
  firstTokenAt?: number;
  cachedTokens: number;
  completionTokens: number;
  sampler?: Sampler;
  decoder?: StreamDecoder;
  stop?: StopCondition;
  /** Set for requests whose output must be one JSON value (req.json). */
  constraint?: JsonConstraint;
  /** Prompt tokens already in the KV. */
  nPrompted: number;
  /** The last sampled token, fed in the next step. */
  next?: number;
}

interface Slot {
  index: number;
  job?: Job;
  /** Tokens whose KV this slot holds, in order: the prefix cache. */
  cached: number[];
  /** Step counter when it was last freed (least recently used is evicted first). */
  freedAt: number;
}

/** Schedules generate requests onto the model's nSeq slots. Call step() until idle(). */
export class Scheduler {
  readonly timings: StepTimings = { steps: 0, tokens: 0, forwardMs: 0, stepMs: 0 };
  private readonly slots: Slot[];
  private readonly queue: Job[] = [];
  private readonly byId = new Map<number, Job>();
  private stepNo = 0;

  constructor(
    private readonly model: LoadedModel,
    private readonly tokenizer: SchedulerTokenizer,
    private readonly opts: SchedulerOptions,
  ) {
    this.slots = Array.from({ length: model.nSeq }, (_, index) => ({ index, cached: [], freedAt: -1 }));
  }

  /** Queues a request; events go to `emit`. Throws EngineError for a request that can never run or a full queue. */
  submit(id: number, req: GenerateRequest, emit: Emit): void {
    const prompt = checkRequest(req, this.model.ctxSize, this.model.config.vocab);
    if (req.json !== undefined && !(this.tokenizer.tokenBytes && this.tokenizer.isControl)) {
      throw new EngineError('bad_request', 'JSON-constrained output needs token bytes, which this tokenizer does not give');
    }
    if (this.byId.has(id)) throw new EngineError('bad_request', `request id ${id} is already in use`);
    // Queued jobs first fill the free slots (at the next step); beyond those, maxQueue may wait.
    const free = this.slots.filter((s) => !s.job).length;
    if (this.queue.length >= free + this.opts.maxQueue) {
      throw new EngineError('queue_full', `all ${this.slots.length} slots are busy and ${this.opts.maxQueue} requests are already waiting (the queue limit); retry later`);
    }
    const job: Job = { id, req, emit, prompt, submittedAt: performance.now(), cachedTokens: 0, completionTokens: 0, nPrompted: 0 };
    this.byId.set(id, job);
    this.queue.push(job);
  }

  /** Ends request `id` with 'cancelled' at once and frees its slot (its KV stays as prefix cache). */
  cancel(id: number): void {
    const job = this.byId.get(id);
    if (!job) return;
    const qi = this.queue.indexOf(job);
    if (qi >= 0) this.queue.splice(qi, 1);
    this.finish(job, 'cancelled');
  }

  /** Cancels everything (engine shutdown). */
  cancelAll(): void {
    for (const id of [...this.byId.keys()]) this.cancel(id);
  }

  stats(): { running: number; queued: number; slots: number } {
    return { running: this.slots.filter((s) => s.job).length, queued: this.queue.length, slots: this.slots.length };
  }

  idle(): boolean {
    return this.byId.size === 0;
  }

  /** Runs one forward step over all running sequences; returns false when there was nothing to do. */
  step(): boolean {
    this.admit();
    const t0 = performance.now();
    const batch = this.buildBatch();
    if (batch.entries.length === 0) return false;
    const n = batch.entries.length;
    const tokens = new Int32Array(n);
    const positions = new Int32Array(n);
    const seqIds = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const e = batch.entries[i];
      tokens[i] = e.token;
      positions[i] = e.pos;
      seqIds[i] = e.slot.index;
    }
    const logitsFor = Int32Array.from(batch.wantLogits.map((w) => w.at));
    let logits: Float32Array;
    const tf = performance.now();
    try {
      logits = this.model.forward({ tokens, positions, seqIds, logitsFor });
    } catch (err) {
      // A failed step leaves these slots' KV in an unknown state: drop it and fail their requests.
      const msg = err instanceof Error ? err.message : String(err);
      for (const slot of new Set(batch.entries.map((e) => e.slot))) {
        this.model.kv.clear(slot.index);
        slot.cached = [];
        if (slot.job) this.finish(slot.job, 'error', msg);
      }
      return true;
    }
    const forwardMs = performance.now() - tf;
    for (const e of batch.entries) e.slot.cached.push(e.token);
    const vocab = this.model.config.vocab;
    batch.wantLogits.forEach((w, row) => this.afterLogits(w.slot, logits.subarray(row * vocab, (row + 1) * vocab)));
    this.stepNo++;
    this.timings.steps++;
    this.timings.tokens += n;
    this.timings.forwardMs += forwardMs;
    this.timings.stepMs += performance.now() - t0;
    return true;
  }

  /**
   * Moves queued jobs into free slots, reusing the longest cached prefix: a free slot's own KV, or
   * a copy of a busy slot's (two chats sharing a system prompt). Copying KV costs far less than
   * recomputing it.
   */
  private admit(): void {
    while (this.queue.length > 0) {
      const free = this.slots.filter((s) => !s.job);
      if (free.length === 0) return;
      const job = this.queue.shift()!;
      // At least the last prompt token is recomputed: its logits give the first sampled token.
      const usable = (s: Slot) => Math.min(commonPrefix(s.cached, job.prompt), job.prompt.length - 1);
      let best = free[0];
      let reuse = -1;
      for (const s of free) {
        const len = usable(s);
        // Longest prefix wins; among equals, the least recently used slot keeps fresher caches alive.
        if (len > reuse || (len === reuse && s.freedAt < best.freedAt)) {
          best = s;
          reuse = len;
        }
      }
      let donor: Slot | undefined;
      let donorLen = reuse;
      for (const s of this.slots) {
        if (!s.job) continue;
        const len = usable(s);
        if (len > donorLen) {
          donor = s;
          donorLen = len;
        }
      }
      if (donor) {
        // Overwrite the least recently used free slot rather than the one holding a cache.
        best = free.reduce((a, b) => (b.freedAt < a.freedAt ? b : a));
        this.model.kv.copy(donor.index, best.index, donorLen);
        best.cached = donor.cached.slice(0, donorLen);
        reuse = donorLen;
      } else if (reuse > 0) this.model.kv.truncate(best.index, reuse);
      else this.model.kv.clear(best.index);
      best.cached.length = reuse;
      best.job = job;
      job.cachedTokens = reuse;
      job.nPrompted = reuse;
      job.admittedAt = performance.now();
      job.sampler = new Sampler(job.req.sampling, job.prompt);
      job.decoder = this.tokenizer.createStreamDecoder();
      if (job.req.json !== undefined) {
        const t = this.tokenizer;
        job.constraint = new JsonConstraint(job.req.json, { eogIds: t.eogIds, tokenBytes: (id) => t.tokenBytes!(id), isControl: (id) => t.isControl!(id) });
      }
      job.stop = new StopCondition({ maxTokens: job.req.maxTokens, stop: job.req.stop, eogIds: this.tokenizer.eogIds, stopAtEog: job.req.stopAtEog });
    }
  }

  private buildBatch(): { entries: Array<{ slot: Slot; token: number; pos: number }>; wantLogits: Array<{ slot: Slot; at: number }> } {
    const entries: Array<{ slot: Slot; token: number; pos: number }> = [];
    const wantLogits: Array<{ slot: Slot; at: number }> = [];
    const prefilling: Slot[] = [];
    for (const slot of this.slots) {
      const job = slot.job;
      if (!job) continue;
      if (job.next === undefined) {
        prefilling.push(slot);
        continue;
      }
      wantLogits.push({ slot, at: entries.length });
      entries.push({ slot, token: job.next, pos: slot.cached.length });
    }
    // Earliest-admitted prompt first, so a burst of requests gets first tokens in arrival order.
    prefilling.sort((a, b) => a.job!.admittedAt! - b.job!.admittedAt!);
    let budget = Math.max(1, this.opts.ubatch - entries.length);
    for (const slot of prefilling) {
      if (budget <= 0) break;
      const job = slot.job!;
      const take = Math.min(budget, job.prompt.length - job.nPrompted);
      for (let i = 0; i < take; i++) entries.push({ slot, token: job.prompt[job.nPrompted + i], pos: job.nPrompted + i });
      job.nPrompted += take;
      budget -= take;
      if (job.nPrompted === job.prompt.length) wantLogits.push({ slot, at: entries.length - 1 });
    }
    return { entries, wantLogits };
  }

  private afterLogits(slot: Slot, row: Float32Array): void {
    const job = slot.job!;
    const c = job.constraint;
    let id: number;
    try {
      id = job.sampler!.sample(row, c?.allow);
      c?.accept(id);
    } catch (err) {
      this.finish(job, 'error', err instanceof Error ? err.message : String(err));
      return;
    }
    if (job.firstTokenAt === undefined) job.firstTokenAt = performance.now();
    job.completionTokens++;
    const r = job.stop!.step(id, job.decoder!.push(id));
    let finish = r.finish;
    let text = r.text;
    // The JSON value is complete: only whitespace could follow, so end as the model's EOG would.
    if (!finish && c?.done) {
      finish = 'stop';
      text += job.stop!.flush();
    }
    // The next step would write position cached.length; past the context there is no room.
    if (!finish && slot.cached.length >= this.model.ctxSize) {
      finish = 'length';
      text += job.stop!.flush();
    }
    if (!(finish === 'stop' && job.req.stopAtEog && this.tokenizer.eogIds.has(id))) job.emit({ type: 'token', id, text });
    if (finish) this.finish(job, finish);
    else job.next = id;
  }

  private finish(job: Job, reason: FinishReason, error?: string): void {
    this.byId.delete(job.id);
    const slot = this.slots.find((s) => s.job === job);
    if (slot) {
      slot.job = undefined;
      slot.freedAt = this.stepNo;
    }
    const now = performance.now();
    const admitted = job.admittedAt ?? now;
    const first = job.firstTokenAt ?? now;
    job.emit({
      type: 'done',
      reason,
      ...(error !== undefined ? { error } : {}),
      stats: {
        promptTokens: job.prompt.length,
        cachedTokens: job.cachedTokens,
        completionTokens: job.completionTokens,
        queueMs: admitted - job.submittedAt,
        promptMs: first - admitted,
        decodeMs: now - first,
      },
    });
  }
}

const JSON_TOP_LEVELS: readonly JsonTopLevel[] = ['any', 'object', 'array', 'string', 'number', 'integer', 'boolean', 'null'];

/** Checks a request against the model; returns the prompt to run (truncated when asked). */
export function checkRequest(req: GenerateRequest, ctxSize: number, vocab: number): number[] {
  if (req.prompt.length === 0) throw new EngineError('bad_request', 'the prompt is empty; at least one token is needed');
  if (!Number.isInteger(req.maxTokens) || req.maxTokens < 1) throw new EngineError('bad_request', `maxTokens must be an integer >= 1, got ${req.maxTokens}`);
  for (const [i, t] of req.prompt.entries()) {
    if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new EngineError('bad_request', `prompt token ${i} is ${t}, outside the vocabulary [0, ${vocab})`);
  }
  if (req.json !== undefined && !JSON_TOP_LEVELS.includes(req.json)) throw new EngineError('bad_request', `json must be one of ${JSON_TOP_LEVELS.join(', ')}, got ${String(req.json)}`);
  try {
    new Sampler(req.sampling);
  } catch (err) {
    throw new EngineError('bad_request', (err as Error).message);
  }
  // One position must stay free for the first generated token's KV.
  if (req.prompt.length < ctxSize) return req.prompt;
  if (!req.truncatePrompt) {
    throw new EngineError('prompt_too_long', `the prompt has ${req.prompt.length} tokens but the context holds ${ctxSize}; shorten it, start with a larger --ctx-size, or ask for truncation`);
  }
  // Keep the end of the prompt (the most recent turns) and leave room for half the context to generate.
  const keep = Math.max(1, ctxSize - Math.min(req.maxTokens, Math.floor(ctxSize / 2)));
  return req.prompt.slice(req.prompt.length - keep);
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}
