// loadEngine(): the Engine that the server and CLI hold. The model runs in a worker thread
// (worker.ts); this main-thread proxy keeps its own tokenizer and chat template so tokenize,
// detokenize and applyChatTemplate stay synchronous, and streams each request's events back.
import { Worker } from 'node:worker_threads';
import { openModel } from '../formats/open-model.ts';
import type { KvType } from '../model/types.ts';
import { ChatTemplate } from '../tokenizer/chat-template.ts';
import { Tokenizer } from '../tokenizer/tokenizer.ts';
import { EngineError } from './errors.ts';
import { modelInfo } from './model-info.ts';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.ts';
import { checkRequest } from './scheduler.ts';
import type { ChatMessage, ChatTemplateOptions, Engine, GenerateEvent, GenerateRequest, ModelInfo } from './types.ts';

export { EngineError, type EngineErrorCode } from './errors.ts';

export interface EngineOptions {
  modelPath: string;
  /** CPU threads for the kernels; default: all cores. */
  threads?: number;
  /** Positions per slot; default min(4096, the model's trained context). */
  ctxSize?: number;
  /** Concurrent sequences (KV slots); default 1 (CLI); `serve` passes 4. */
  parallel?: number;
  /** Most tokens per forward step; default 512. */
  ubatch?: number;
  /** Requests that may wait for a slot before generate() throws EngineError('queue_full'); default 64. */
  maxQueue?: number;
  /** Rule file or preset name (src/optimize). */
  rules?: string;
  kvType?: KvType;
  /** Marks the built-in random-weight demo model (ModelInfo.isDemo, name "mixtile-demo"). */
  isDemo?: boolean;
  onProgress?: (done: number, total: number, what: string) => void;
  /** Diagnostic lines (worker start, load time). */
  log?: (line: string) => void;
}

const DEFAULT_UBATCH = 512;
const DEFAULT_MAX_QUEUE = 64;
/** How long close() waits for the worker to finish its step and free the model. */
const CLOSE_TIMEOUT_MS = 10_000;

/**
 * Loads a model into a worker thread and returns the Engine.
 * Example: `const e = await loadEngine({ modelPath: 'm.gguf' }); for await (const ev of e.generate(req)) …; await e.close();`
 */
export async function loadEngine(opts: EngineOptions): Promise<Engine> {
  const gguf = await openModel(opts.modelPath);
  const tokenizer = Tokenizer.fromGguf(gguf.metadata);
  const source = tokenizer.chatTemplate;
  const template = source !== undefined ? new ChatTemplate(source) : undefined;
  const init: WorkerInit = {
    modelPath: opts.modelPath,
    ctxSize: opts.ctxSize,
    nSeq: opts.parallel ?? 1,
    ubatch: opts.ubatch ?? DEFAULT_UBATCH,
    threads: opts.threads,
    rules: opts.rules,
    kvType: opts.kvType,
    maxQueue: opts.maxQueue ?? DEFAULT_MAX_QUEUE,
  };
  const worker = startWorker(init);
  const ready = await new Promise<{ ctxSize: number; nSeq: number; loadMs: number }>((resolve, reject) => {
    const onMessage = (m: FromWorker) => {
      if (m.type === 'progress') opts.onProgress?.(m.done, m.total, m.what);
      else if (m.type === 'ready') done(() => resolve(m));
      else if (m.type === 'load-failed') {
        const e = new Error(m.message);
        e.name = m.name;
        done(() => reject(e));
      }
    };
    const onError = (e: Error) => done(() => reject(e));
    const onExit = (code: number) => done(() => reject(new Error(`engine worker exited with code ${code} while loading ${opts.modelPath}`)));
    const done = (f: () => void) => {
      worker.off('message', onMessage).off('error', onError).off('exit', onExit);
      f();
    };
    worker.on('message', onMessage).on('error', onError).on('exit', onExit);
  }).catch(async (e) => {
    await worker.terminate();
    throw e;
  });
  opts.log?.(`model loaded in ${(ready.loadMs / 1000).toFixed(1)} s: ${ready.nSeq} slot(s) of ${ready.ctxSize} positions`);
  const info = modelInfo(gguf, { path: opts.modelPath, ctxSize: ready.ctxSize, isDemo: opts.isDemo ?? false });
  const vocab = tokenizer.vocabSize;
  return new WorkerEngine(worker, info, tokenizer, template, { ...ready, vocab, maxQueue: init.maxQueue });
}

/**
 * Starts worker.js next to this file. From src/ (running under tsx) the file is worker.ts: Node 20
 * refuses a .ts worker entry even with `--import tsx` in execArgv (the extension check runs before
 * the hooks), so a small eval'd bootstrap registers tsx's loader in the worker first, then imports it.
 */
function startWorker(init: WorkerInit): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./worker.js', import.meta.url), { workerData: init });
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const file = JSON.stringify(new URL('./worker.ts', import.meta.url).href);
  const boot = `import(${tsx}).then((tsx) => { tsx.register(); return import(${file}); })`;
  return new Worker(boot, { eval: true, workerData: init, execArgv: [] });
}

/** Events of one request, buffered until the consumer pulls them. */
class EventQueue {
  private readonly events: GenerateEvent[] = [];
  private wake?: () => void;
  ended = false;

  push(ev: GenerateEvent): void {
    if (this.ended) return;
    if (ev.type === 'done') this.ended = true;
    this.events.push(ev);
    this.wake?.();
  }

  async *drain(onEarlyExit: () => void): AsyncGenerator<GenerateEvent> {
    try {
      for (;;) {
        while (this.events.length > 0) {
          const ev = this.events.shift()!;
          yield ev;
          if (ev.type === 'done') return;
        }
        await new Promise<void>((r) => (this.wake = r));
        this.wake = undefined;
      }
    } finally {
      // The consumer stopped iterating (break, throw) before done: the request is not wanted any more.
      if (!this.ended) onEarlyExit();
    }
  }
}

class WorkerEngine implements Engine {
  private nextId = 1;
  private readonly pending = new Map<number, EventQueue>();
  private running = 0;
  private queued = 0;
  private closed?: string;

  constructor(
    private readonly worker: Worker,
    readonly info: ModelInfo,
    private readonly tokenizer: Tokenizer,
    private readonly template: ChatTemplate | undefined,
    private readonly limits: { ctxSize: number; nSeq: number; vocab: number; maxQueue: number },
  ) {
    worker.on('message', (m: FromWorker) => this.onMessage(m));
    worker.on('error', (e) => this.fail(`engine worker crashed: ${e.message}`));
    worker.on('exit', (code) => this.fail(`engine worker exited (code ${code})`));
  }

  tokenize(text: string, opts?: { addSpecial?: boolean; parseSpecial?: boolean }): number[] {
    return this.tokenizer.encode(text, opts);
  }

  detokenize(ids: number[]): string {
    return this.tokenizer.decode(ids);
  }

  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions): string {
    if (!this.template) throw new EngineError('bad_request', `${this.info.path} has no chat template (GGUF key tokenizer.chat_template); send a raw prompt instead`);
    return this.template.render(messages, opts);
  }

  /** Throws EngineError at once (not on iteration) when the request cannot be accepted. */
  generate(req: GenerateRequest, signal?: AbortSignal): AsyncIterable<GenerateEvent> {
    if (this.closed) throw new EngineError('closed', this.closed);
    const prompt = checkRequest(req, this.limits.ctxSize, this.limits.vocab);
    if (this.pending.size >= this.limits.nSeq + this.limits.maxQueue) {
      throw new EngineError('queue_full', `all ${this.limits.nSeq} slots are busy and ${this.limits.maxQueue} requests are already waiting (the queue limit); retry later`);
    }
    const id = this.nextId++;
    const q = new EventQueue();
    this.pending.set(id, q);
    this.post({ type: 'submit', id, req: { ...req, prompt } });
    const cancel = () => {
      if (!q.ended) this.post({ type: 'cancel', id });
    };
    if (signal?.aborted) cancel();
    else signal?.addEventListener('abort', cancel, { once: true });
    const stream = q.drain(cancel);
    const cleanup = () => signal?.removeEventListener('abort', cancel);
    return {
      [Symbol.asyncIterator]: () => ({
        next: async () => {
          const r = await stream.next();
          if (r.done) cleanup();
          return r;
        },
        return: async () => {
          cleanup();
          return stream.return(undefined);
        },
      }),
    };
  }

  stats(): { running: number; queued: number; slots: number } {
    return { running: this.running, queued: this.queued, slots: this.limits.nSeq };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = 'the engine is closed';
    const exited = new Promise<void>((r) => this.worker.once('exit', () => r()));
    this.post({ type: 'close' });
    // The worker finishes its current step, cancels everything, frees the model and says 'closed';
    // a worker that does not answer within CLOSE_TIMEOUT_MS is terminated anyway.
    const said = new Promise<void>((r) => this.worker.on('message', (m: FromWorker) => m.type === 'closed' && r()));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((r) => (timer = setTimeout(r, CLOSE_TIMEOUT_MS)));
    await Promise.race([exited, said, late]);
    clearTimeout(timer);
    await this.worker.terminate();
  }

  private post(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'event': {
        const q = this.pending.get(m.id);
        if (!q) return;
        q.push(m.ev);
        if (m.ev.type === 'done') this.pending.delete(m.id);
        break;
      }
      case 'rejected': {
        // The worker refused a request the proxy accepted (a race on the queue limit): end it as an error.
        const q = this.pending.get(m.id);
        this.pending.delete(m.id);
        q?.push({ type: 'done', reason: 'error', error: `${m.code}: ${m.message}`, stats: emptyStats(0) });
        break;
      }
      case 'stats':
        this.running = m.running;
        this.queued = m.queued;
        break;
    }
  }

  /** The worker is gone: every open request ends with an error, and new ones are refused. */
  private fail(why: string): void {
    this.closed ??= why;
    for (const q of this.pending.values()) q.push({ type: 'done', reason: 'error', error: why, stats: emptyStats(0) });
    this.pending.clear();
    this.running = 0;
    this.queued = 0;
  }
}

function emptyStats(promptTokens: number) {
  return { promptTokens, cachedTokens: 0, completionTokens: 0, queueMs: 0, promptMs: 0, decodeMs: 0 };
}
