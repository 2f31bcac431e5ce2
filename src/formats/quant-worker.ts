// Worker thread of QuantPool: quantizes float chunks with the reference quantizers.
import { parentPort } from 'node:worker_threads';
import { quantize } from './quant.ts';
import type { GgmlType } from './ggml-types.ts';

interface Job {
  id: number;
  type: GgmlType;
  values: Float32Array;
}

parentPort!.on('message', ({ id, type, values }: Job) => {
  try {
    const out = quantize(type, values);
    parentPort!.postMessage({ id, out }, [out.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ id, error: (e as Error).message });
  }
});
