// ModelHost: the one model a server holds, through its life: loading (server already listening),
// ready, unloaded after keep_alive ran out (reloaded by the next request), or failed to load.
import type { Engine, ModelInfo } from '../engine/types.ts';
import { ApiError } from './errors.ts';

export type HostState = 'loading' | 'ready' | 'unloaded' | 'failed';

export interface ModelHostOptions {
  /** Loads the engine, reporting progress as a fraction 0..1. */
  load: (progress: (fraction: number) => void) => Promise<Engine>;
  /** How long the model stays loaded after its last request when a request names no keep_alive; < 0 = forever. */
  keepAliveMs: number;
  log?: (line: string) => void;
}

/** A held engine; release() once the request has finished with it. */
export interface EngineLease {
  engine: Engine;
  release(): void;
}

export class ModelHost {
  state: HostState = 'unloaded';
  engine?: Engine;
  /** The model's info from its first load; kept while unloaded so listings still show it. */
  info?: ModelInfo;
  loadError?: Error;
  /** When keep_alive will unload the model (undefined: not scheduled). */
  expiresAt?: Date;
  /** Load progress 0..1 while loading. */
  progress = 0;
  private loading?: Promise<Engine>;
  private active = 0;
  private timer?: NodeJS.Timeout;
  private keepAliveMs: number;

  constructor(private readonly opts: ModelHostOptions) {
    this.keepAliveMs = opts.keepAliveMs;
  }

  /** Starts loading (at server start, after listening, so /health can say "loading"). */
  load(): Promise<Engine> {
    if (this.engine) return Promise.resolve(this.engine);
    if (this.loading) return this.loading;
    this.state = 'loading';
    this.progress = 0;
    this.loading = this.opts.load((f) => (this.progress = f)).then(
      (engine) => {
        this.engine = engine;
        this.info = engine.info;
        this.state = 'ready';
        this.loadError = undefined;
        this.loading = undefined;
        this.schedule();
        return engine;
      },
      (err: Error) => {
        this.state = 'failed';
        this.loadError = err;
        this.loading = undefined;
        this.opts.log?.(`loading the model failed: ${err.message}`);
        throw err;
      },
    );
    return this.loading;
  }

  /**
   * The engine for one request. While the first load runs the answer is 503 (as llama-server);
   * a model unloaded by keep_alive is loaded again and the request waits for it.
   * @param keepAliveMs this request's keep_alive; it becomes the model's from now on (Ollama's rule).
   */
  async acquire(keepAliveMs?: number): Promise<EngineLease> {
    if (keepAliveMs !== undefined) this.keepAliveMs = keepAliveMs;
    if (this.state === 'loading' && !this.info) throw loadingError(this.progress);
    if (this.state === 'failed') throw new ApiError(503, 'unavailable_error', `the model failed to load: ${this.loadError?.message}`);
    this.cancelTimer();
    this.active++;
    let engine: Engine;
    try {
      engine = this.engine ?? (await this.load());
    } catch (err) {
      this.active--;
      throw new ApiError(503, 'unavailable_error', `the model failed to load: ${(err as Error).message}`);
    }
    let released = false;
    return {
      engine,
      release: () => {
        if (released) return;
        released = true;
        this.active--;
        this.schedule();
      },
    };
  }

  /** The engine if loaded, else a 503 saying why; for quick calls that must not trigger a load. */
  loaded(): Engine {
    if (this.engine) return this.engine;
    if (this.state === 'failed') throw new ApiError(503, 'unavailable_error', `the model failed to load: ${this.loadError?.message}`);
    if (this.state === 'loading') throw loadingError(this.progress);
    throw new ApiError(503, 'unavailable_error', 'the model is unloaded (keep_alive ran out); any generation request loads it again');
  }

  /** Sets keep_alive without a request (Ollama's empty /api/generate): 0 unloads at once when idle. */
  setKeepAlive(ms: number): void {
    this.keepAliveMs = ms;
    this.schedule();
  }

  async close(): Promise<void> {
    this.cancelTimer();
    const engine = this.engine ?? (await this.loading?.catch(() => undefined));
    this.engine = undefined;
    this.state = 'unloaded';
    await engine?.close();
  }

  private schedule(): void {
    this.cancelTimer();
    if (this.active > 0 || !this.engine || this.keepAliveMs < 0) return;
    this.expiresAt = new Date(Date.now() + this.keepAliveMs);
    this.timer = setTimeout(() => void this.unload(), this.keepAliveMs);
    this.timer.unref();
  }

  private cancelTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.expiresAt = undefined;
  }

  private async unload(): Promise<void> {
    const engine = this.engine;
    if (!engine || this.active > 0) return;
    this.engine = undefined;
    this.state = 'unloaded';
    this.expiresAt = undefined;
    this.opts.log?.(`keep_alive ran out: unloading ${engine.info.name}`);
    await engine.close();
  }
}

function loadingError(progress: number): ApiError {
  return new ApiError(503, 'unavailable_error', `Loading model (${Math.round(progress * 100)}%); retry when GET /health answers 200`);
}

/**
 * Ollama's keep_alive: a duration string ("5m", "1h30m", "10s", "-1"), or a number of seconds.
 * Negative means forever. Returns milliseconds, or undefined for an unreadable value.
 */
export function parseKeepAlive(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? (v < 0 ? -1 : v * 1000) : undefined;
  const s = v.trim();
  if (/^-?\d+(\.\d+)?$/.test(s)) return parseKeepAlive(Number(s));
  if (s.startsWith('-')) return parseKeepAlive(s.slice(1)) === undefined ? undefined : -1;
  const UNIT: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let ms = 0;
  let rest = s;
  while (rest) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!m) return undefined;
    ms += Number(m[1]) * UNIT[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return s ? ms : undefined;
}
