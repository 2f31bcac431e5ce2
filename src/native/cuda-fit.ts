// Fit check for GPU placements (issue 9 item 4): before loading, compare what a placement needs on a
// device with what the device has free, and refuse with a message that says what, how much and which
// setting to change, instead of failing inside cudaMalloc halfway through a load.

/** Bytes a placement puts on one GPU, by kind; each part is reported separately when it does not fit. */
export interface GpuNeeds {
  /** Weights resident in VRAM (attention, norms, router, embeddings, lm_head, any experts on the GPU). */
  weightsBytes: number;
  /** KV cache: layers * 2 * slots * context * kvHeads * headDim * bytes per element. */
  kvBytes: number;
  /** Activations, attention split-K partials, cuBLAS workspace, staging for streamed experts. */
  workspaceBytes: number;
}

export interface FitInput extends GpuNeeds {
  /** Free bytes on the device now (cudaInfo().devices[i].freeBytes). */
  freeBytes: number;
  /** Device label for messages, e.g. "cuda:0 NVIDIA H100 80GB HBM3". */
  device: string;
  /** Bytes to keep free for the CUDA context growth and fragmentation; default 5% of free, at least 512 MiB. */
  reserveBytes?: number;
  /** What the KV cache size comes from, for the message (e.g. {contextLength: 32768, slots: 4}). */
  kv?: { contextLength: number; slots: number; bytesPerToken: number };
}

export type FitResult = { ok: true; spareBytes: number } | { ok: false; message: string; shortBytes: number };

const GIB = 2 ** 30;
const fmt = (b: number): string => (b >= GIB ? `${(b / GIB).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(0)} MiB`);

/** KV cache bytes of one layer set: 2 (K and V) * layers * slots * context * kvHeads * headDim * elementBytes. */
export function kvCacheBytes(p: {
  layers: number;
  slots: number;
  contextLength: number;
  kvHeads: number;
  headDim: number;
  elementBytes: number;
}): number {
  return 2 * p.layers * p.slots * p.contextLength * p.kvHeads * p.headDim * p.elementBytes;
}

/**
 * Checks that a placement fits a device. On failure the message names the largest part and the flags
 * that shrink it, e.g.
 * `cuda:0 NVIDIA RTX 4090: the placement needs 27.30 GiB (weights 14.20 GiB, KV cache 12.00 GiB, workspace 1.10 GiB) but 23.10 GiB are free (after a 1.15 GiB reserve); 4.20 GiB short. Lower --ctx-size (32768 -> 20480 frees 4.50 GiB) ...`
 */
export function checkGpuFit(x: FitInput): FitResult {
  for (const [k, v] of Object.entries({
    weightsBytes: x.weightsBytes,
    kvBytes: x.kvBytes,
    workspaceBytes: x.workspaceBytes,
    freeBytes: x.freeBytes,
  })) {
    if (!Number.isFinite(v) || v < 0) throw new RangeError(`checkGpuFit: ${k} must be a finite number >= 0, got ${v}`);
  }
  const reserve = x.reserveBytes ?? Math.max(512 * 2 ** 20, 0.05 * x.freeBytes);
  const usable = Math.max(0, x.freeBytes - reserve);
  const need = x.weightsBytes + x.kvBytes + x.workspaceBytes;
  if (need <= usable) return { ok: true, spareBytes: usable - need };
  const short = need - usable;
  const hints: string[] = [];
  if (x.kv && x.kv.bytesPerToken > 0 && x.kvBytes > 0) {
    // Context that would fit with everything else unchanged, rounded down to 1024 tokens.
    const perCtxToken = x.kv.bytesPerToken * x.kv.slots;
    const fitCtx = Math.floor(Math.max(0, x.kvBytes - short) / perCtxToken / 1024) * 1024;
    if (fitCtx >= 1024) {
      hints.push(
        `lower --ctx-size (${x.kv.contextLength} -> ${fitCtx} frees ${fmt((x.kv.contextLength - fitCtx) * perCtxToken)})`,
      );
    }
    if (x.kv.slots > 1) hints.push(`serve fewer parallel sequences (--parallel ${x.kv.slots} -> ${Math.max(1, x.kv.slots - 1)})`);
    hints.push('keep the KV cache in 8 bits (--cache-type q8_0) if the model tolerates it');
  }
  if (x.weightsBytes > 0) {
    hints.push(
      'move weights off the GPU in the rules file (e.g. experts generate_device: cpu, or lm_head / embeddings on cpu) ' +
        'or pick a smaller quantization',
    );
  }
  if (x.workspaceBytes > 0.25 * need) hints.push('lower the prefill batch (--ubatch-size), which sizes the workspace');
  const message =
    `${x.device}: the placement needs ${fmt(need)} (weights ${fmt(x.weightsBytes)}, KV cache ${fmt(x.kvBytes)}, ` +
    `workspace ${fmt(x.workspaceBytes)}) but ${fmt(usable)} are free (after a ${fmt(reserve)} reserve); ` +
    `${fmt(short)} short. ${hints.length ? `To fit: ${hints.join('; or ')}.` : ''}`.trimEnd();
  return { ok: false, message, shortBytes: short };
}
