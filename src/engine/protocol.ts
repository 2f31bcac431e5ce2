// Messages between the Engine proxy (main thread, index.ts) and the engine worker (worker.ts).
// Plain structured-clone data only: no classes, no functions.
import type { KvType } from '../model/types.ts';
import type { EngineErrorCode } from './errors.ts';
import type { GenerateEvent, GenerateRequest } from './types.ts';

export interface WorkerInit {
  modelPath: string;
  ctxSize?: number;
  nSeq: number;
  ubatch: number;
  threads?: number;
  rules?: string;
  kvType?: KvType;
  maxQueue: number;
}

export type ToWorker =
  | { type: 'submit'; id: number; req: GenerateRequest }
  | { type: 'cancel'; id: number }
  | { type: 'close' };

export type FromWorker =
  | { type: 'progress'; done: number; total: number; what: string }
  | { type: 'ready'; ctxSize: number; nSeq: number; loadMs: number }
  | { type: 'load-failed'; name: string; message: string }
  | { type: 'event'; id: number; ev: GenerateEvent }
  | { type: 'rejected'; id: number; code: EngineErrorCode; message: string }
  | { type: 'stats'; running: number; queued: number }
  | { type: 'closed' };
