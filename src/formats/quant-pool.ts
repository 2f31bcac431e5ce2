// Runs the reference quantizers on worker threads, so `convert` to K-quants uses every core
// (one JS thread quantizes Q4_K at ~1 M values/s). Results come back in submission order.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import type { GgmlType } from './ggml-types.ts';

interface Pending {
  resolve: (out: Uint8Array) => void;
  reject: (e: Error) => void;
}

/** The worker sits beside this file: quant-worker.ts under tsx, quant-worker.js in dist/. */
const WORKER_URL = new URL(`./quant-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

function startWorker(): Worker {
  if (WORKER_URL.pathname.endsWith('.js')) return new Worker(WORKER_URL);
  // Under tsx (tests, development) workers do not inherit its loader: register it, then load the .ts worker.
  const tsx = import.meta.resolve('tsx/esm/api');
  return new Worker(`import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(WORKER_URL.href)}); });`, { eval: true });
}

export class QuantPool {
  readonly size: number;
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private nextWorker = 0;
  private failed: Error | undefined;

  constructor(size = availableParallelism()) {
    this.size = Math.max(1, size);
    for (let i = 0; i < this.size; i++) {
      const w = startWorker();
      w.on('message', (m: { id: number; out?: Uint8Array; error?: string }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error !== undefined) p?.reject(new Error(m.error));
        else p?.resolve(m.out!);
      });
      w.on('error', (e) => this.fail(e));
      w.on('exit', (code) => code !== 0 && this.fail(new Error(`quantizer worker exited with code ${code}`)));
      this.workers.push(w);
    }
  }

  private fail(e: Error): void {
    this.failed ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  /** Quantizes `values` on a worker; the array's buffer is transferred (unusable afterwards). */
  quantize(type: GgmlType, values: Float32Array): Promise<Uint8Array> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    const w = this.workers[this.nextWorker++ % this.size];
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // A view into a larger buffer would transfer (and detach) more than it owns: copy it out.
      const own = values.byteOffset === 0 && values.byteLength === values.buffer.byteLength ? values : values.slice();
      w.postMessage({ id, type, values: own }, [own.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/**
 * Quantizes a stream of float chunks on `pool`, keeping up to `depth` chunks in flight, and yields
 * the results in input order.
 */
export async function* quantizeOrdered(pool: QuantPool, type: GgmlType, chunks: AsyncIterable<Float32Array>, depth = 2 * pool.size): AsyncGenerator<Uint8Array> {
  const inFlight: Array<Promise<Uint8Array>> = [];
  try {
    for await (const c of chunks) {
      inFlight.push(pool.quantize(type, c));
      if (inFlight.length >= depth) yield await inFlight.shift()!;
    }
    while (inFlight.length) yield await inFlight.shift()!;
  } finally {
    // Results of an abandoned stream must not surface as unhandled rejections.
    for (const p of inFlight) p.catch(() => {});
  }
}
