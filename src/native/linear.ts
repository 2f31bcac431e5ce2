// Dense linear layer on CPU through the addon: y[n, m] = x[n, k] · W^T for W [m, k] of any
// supported weight type (dims in ggml order [k, m]).
import { addon } from './addon.ts';
import type { NativeHandle, NativeWeight } from './tensor.ts';

export class LinearHandle {
  readonly k: number;
  readonly m: number;
  #handle: NativeHandle | undefined;

  constructor(handle: NativeHandle, k: number, m: number) {
    this.#handle = handle;
    this.k = k;
    this.m = m;
  }

  get handle(): NativeHandle {
    if (!this.#handle) throw new Error(`linear [${this.k} -> ${this.m}] was disposed`);
    return this.#handle;
  }

  /** Name of the kernel a call with nTokens would use (e.g. "bf16-avx512bf16", or "AMXBF16" for AMX panels). */
  kernelName(nTokens: number): string {
    return addon().linearKernelName(this.handle, nTokens) as string;
  }

  dispose(): void {
    if (this.#handle) addon().linearDispose(this.#handle);
    this.#handle = undefined;
  }
}

/** CPU linear backends: `auto` (AMX-BF16 panels for prefill where AMX exists), `AMXBF16`, `AMXInt8`, `AVX512` (no AMX). */
export type LinearBackend = 'auto' | 'AMXBF16' | 'AMXInt8' | 'AVX512';

/** Prepares a 2-D weight [k, m] (ggml order) for linearForward; the weight handle may be disposed after. */
export function linearLoad(w: NativeWeight, backend: LinearBackend = 'auto'): LinearHandle {
  if (w.dims.length > 2 && w.dims.slice(2).some((d) => d !== 1)) {
    throw new RangeError(`linearLoad: weight must be 2-D, got [${w.dims.join(', ')}]`);
  }
  return new LinearHandle(addon().linearLoad(w.handle, backend) as NativeHandle, w.dims[0], w.dims[1] ?? 1);
}

/** out[nTokens, m] = x[nTokens, k] · W^T (row-major F32). */
export function linearForward(h: LinearHandle, x: Float32Array, nTokens: number, out: Float32Array): void {
  addon().linearForward(h.handle, x, nTokens, out);
}

/** outs[i][nTokens, hs[i].m] = x · W_i^T for layers sharing the input (equal k): one pool job, as attention's q/k/v. */
export function linearForwardMulti(hs: LinearHandle[], x: Float32Array, nTokens: number, outs: Float32Array[]): void {
  addon().linearForwardMulti(
    hs.map((h) => h.handle),
    x,
    nTokens,
    outs,
  );
}
