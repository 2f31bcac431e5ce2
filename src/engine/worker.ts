// The engine worker thread: loads the model, runs the scheduler step after step, and talks to the
// Engine proxy (index.ts) by messages, so forward passes never block the main thread's event loop.
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { loadModel } from '../model/load.ts';
import { Tokenizer } from '../tokenizer/tokenizer.ts';
import { EngineError } from './errors.ts';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.ts';
import { Scheduler } from './scheduler.ts';

if (!parentPort) throw new Error('src/engine/worker.ts runs only as a worker thread (started by loadEngine)');
const port: MessagePort = parentPort;
const init = workerData as WorkerInit;
const post = (m: FromWorker) => port.postMessage(m);

async function start(): Promise<void> {
  let model;
  let tokenizer;
  try {
    model = await loadModel(init.modelPath, {
      ctxSize: init.ctxSize,
      nSeq: init.nSeq,
      ubatch: init.ubatch,
      threads: init.threads,
      rules: init.rules,
      kvType: init.kvType,
      onProgress: (done: number, total: number, what: string) => post({ type: 'progress', done, total, what }),
    });
    tokenizer = Tokenizer.fromGguf(model.gguf.metadata);
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    post({ type: 'load-failed', name: e.name, message: e.message });
    return;
  }
  const scheduler = new Scheduler(model, tokenizer, { ubatch: init.ubatch, maxQueue: init.maxQueue });
  let lastStats = '';
  const postStats = () => {
    const s = scheduler.stats();
    const key = `${s.running}/${s.queued}`;
    if (key !== lastStats) post({ type: 'stats', running: s.running, queued: s.queued });
    lastStats = key;
  };

  // One step per macrotask: between steps the event loop delivers cancel/submit messages.
  let pumping = false;
  const pump = () => {
    if (pumping) return;
    pumping = true;
    setImmediate(loop);
  };
  const loop = () => {
    pumping = false;
    scheduler.step();
    postStats();
    if (!scheduler.idle()) pump();
  };

  port.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'submit':
        try {
          scheduler.submit(m.id, m.req, (ev) => {
            // Counts first (sent only when changed), so engine.stats() is never older than the
            // events a caller has seen: running after a first token, the slot freed after 'done'.
            postStats();
            post({ type: 'event', id: m.id, ev });
          });
        } catch (err) {
          const e = err instanceof EngineError ? err : new EngineError('bad_request', String(err));
          post({ type: 'rejected', id: m.id, code: e.code, message: e.message });
          return;
        }
        postStats();
        pump();
        break;
      case 'cancel':
        scheduler.cancel(m.id);
        postStats();
        break;
      case 'close':
        scheduler.cancelAll();
        model.dispose();
        post({ type: 'closed' });
        port.close();
        break;
    }
  });
  post({ type: 'ready', ctxSize: model.ctxSize, nSeq: model.nSeq, loadMs: model.loadMs });
}

await start();
