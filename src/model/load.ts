// loadModel: GGUF file or HF folder -> checked config and tensors -> operators placed by the rules -> KV cache,
// returned as a LoadedModel whose forward() runs batches of tokens from several sequences.
// Sampling, scheduling and tokenization stay above, in engine/ and tokenizer/.
import { performance } from 'node:perf_hooks';
import { GGML_TYPES } from '../formats/ggml-types.ts';
import { metaString, type GgufModel } from '../formats/gguf-read.ts';
import { openModel } from '../formats/open-model.ts';
import { FormatError } from '../formats/errors.ts';
import { QUANT_TYPES } from '../formats/quant.ts';
import { cudaInfo } from '../native/cuda.ts';
import { checkGpuFit } from '../native/cuda-fit.ts';
import { gpuContextCreate, gpuContextDispose, gpuKvCopy, gpuLoadDone, gpuStats } from '../native/gpu.ts';
import { kvCacheCreate, kvCacheDispose, type KvCacheHandle } from '../native/kv-cache.ts';
import { setThreads } from '../native/isa.ts';
import type { GpuRuntime } from '../operators/device.ts';
import { probeHardware, type Hardware } from '../optimize/hardware.ts';
import { loadRules, placeModules } from '../optimize/rules.ts';
import { MappedFile, weightFromFile, weightGather, type NativeWeight } from '../native/tensor.ts';
import type { BuiltModel, KwargsLookup, WeightLookup } from './architecture.ts';
import { gpuNeeds, planGpu, type GpuPlan } from './gpu-plan.ts';
import { KvSlotTable } from './kv-slots.ts';
import type { ExpectedTensor, ModuleInfo } from './qwen3moe.ts';
import { architectureFor } from './registry.ts';
import type { ForwardBatch, KvSlots, LoadedModel, LoadOptions, ModelConfig } from './types.ts';

const DEFAULT_CTX = 4096;
const DEFAULT_UBATCH = 512;

/**
 * Loads a GGUF model or a Hugging Face folder; the rules place each operator on the CPU or the GPU
 * (e.g. preset qwen3moe-hybrid: experts on the CPU, the rest on the GPU).
 * Example: `const m = await loadModel('q.gguf', { ctxSize: 2048, nSeq: 4, rules: 'qwen3moe-hybrid' })`.
 */
export async function loadModel(path: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const t0 = performance.now();
  const gguf = await openModel(path);
  const arch = architectureFor(metaString(gguf, 'general.architecture'), path);
  const config = arch.readConfig(gguf);
  const expected = arch.tensors(config);
  checkTensors(gguf, expected);

  const ctxSize = opts.ctxSize ?? Math.min(DEFAULT_CTX, config.contextLength);
  const nSeq = opts.nSeq ?? 1;
  const ubatch = opts.ubatch ?? DEFAULT_UBATCH;
  for (const [name, v] of [
    ['ctxSize', ctxSize],
    ['nSeq', nSeq],
    ['ubatch', ubatch],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`loadModel: ${name} must be a positive integer, got ${v}`);
  }
  if (opts.threads !== undefined) setThreads(opts.threads);
  const modules = arch.modules(config);
  const kwargs = placementKwargs(opts.rules, modules, opts.onWarning);
  // Operators on a GPU share one context: stream, ubatch buffers, the KV cache of their layers in VRAM.
  const plan = planGpu(config, kwargs);
  const gpu = plan ? openGpu(path, gguf, config, plan, { ctxSize, nSeq, ubatch, kvType: opts.kvType, onWarning: opts.onWarning }) : undefined;

  // Map every file once; weights view the mappings and keep them alive, so the files can close.
  // The weight handles are small and stay until dispose() (the embedding reads its table per step).
  let files: MappedFile[];
  try {
    files = gguf.files.map((f) => MappedFile.open(f));
  } catch (e) {
    if (gpu) gpuContextDispose(gpu.ctx);
    throw e;
  }
  const present = expected.filter((t) => gguf.tensors.has(t.gguf));
  const made = new Map<string, NativeWeight>();
  const weights: WeightLookup = {
    has: (name) => gguf.tensors.has(name),
    get: (name) => {
      let w = made.get(name);
      if (w) return w;
      const info = gguf.tensors.get(name);
      if (!info) throw new FormatError(`${path}: tensor ${name} is missing`, { file: path, tensor: name });
      // HF folders store each expert apart: those tensors are gathered into one native buffer.
      w = info.segments ? weightGather(files, info.segments, info.type, info.dims, name) : weightFromFile(files[info.fileIndex]!, info.offset, info.type, info.dims);
      made.set(name, w);
      opts.onProgress?.(made.size, present.length, name);
      return w;
    },
  };
  let built: BuiltModel;
  try {
    built = arch.build(config, weights, kwargs, gpu);
    if (gpu) gpuLoadDone(gpu.ctx);
  } catch (e) {
    for (const w of made.values()) w.dispose();
    if (gpu) gpuContextDispose(gpu.ctx);
    throw e;
  } finally {
    for (const f of files) f.close();
  }

  let kv: KvCacheHandle | undefined = kvCacheCreate({
    type: opts.kvType ?? 'f16',
    nSeq,
    nLayers: config.nLayers,
    ctx: ctxSize,
    nKvHeads: config.nKvHeads,
    headDim: config.headDim,
  });
  const cache = () => {
    if (!kv) throw new Error(`${path}: model was disposed`);
    return kv;
  };
  const table = new KvSlotTable(nSeq, ctxSize, cache);
  // Prefix sharing copies the GPU layers' KV too (the table checks the request and copies the RAM cache).
  const slots: KvSlots = gpu
    ? {
        clear: (s) => table.clear(s),
        truncate: (s, n) => table.truncate(s, n),
        length: (s) => table.length(s),
        copy: (src, dst, n) => {
          table.copy(src, dst, n);
          gpuKvCopy(gpu.ctx, src, dst, n);
        },
      }
    : table;
  const vocab = config.vocab;
  const loadMs = performance.now() - t0;

  function forward(b: ForwardBatch): Float32Array {
    const next = table.plan(b, vocab);
    const n = b.tokens.length;
    const k = b.logitsFor.length;
    const logits = new Float32Array(k * vocab);
    // Long batches run in ubatch chunks through all layers; a later chunk attends to the KV the
    // earlier ones wrote. Logits rows are gathered back in logitsFor order.
    for (let start = 0; start < n; start += ubatch) {
      const end = Math.min(n, start + ubatch);
      const rows: number[] = [];
      const dest: number[] = [];
      for (let j = 0; j < k; j++) {
        const r = b.logitsFor[j]!;
        if (r >= start && r < end) {
          rows.push(r - start);
          dest.push(j);
        }
      }
      const direct = rows.length === k && dest.every((d, j) => d === j);
      const out = direct ? logits : new Float32Array(rows.length * vocab);
      built.forward(cache(), b.tokens.subarray(start, end), b.positions.subarray(start, end), b.seqIds.subarray(start, end), Int32Array.from(rows), out);
      if (!direct) dest.forEach((d, m) => logits.set(out.subarray(m * vocab, (m + 1) * vocab), d * vocab));
    }
    table.commit(next);
    return logits;
  }

  return {
    config,
    gguf,
    ctxSize,
    nSeq,
    loadMs,
    kv: slots,
    forward,
    ...(gpu && plan ? { gpu: { index: gpu.index, operators: plan.count, stats: () => gpuStats(gpu.ctx) } } : {}),
    dispose() {
      built.dispose();
      for (const w of made.values()) w.dispose();
      if (gpu && kv) gpuContextDispose(gpu.ctx);
      if (kv) kvCacheDispose(kv);
      kv = undefined;
    },
  };
}

/** Every expected tensor present (unless optional) with the expected dims and a type the kernels run. */
function checkTensors(gguf: GgufModel, expected: ExpectedTensor[]): void {
  const file = gguf.files[0];
  for (const t of expected) {
    const info = gguf.tensors.get(t.gguf);
    if (!info) {
      if (t.optional) continue;
      throw new FormatError(`${file}: tensor ${t.gguf} (${t.module}) is missing`, { file, tensor: t.gguf });
    }
    // GGUF may drop trailing 1-dims; compare with them stripped on both sides.
    const strip = (d: number[]) => {
      const x = [...d];
      while (x.length > 1 && x[x.length - 1] === 1) x.pop();
      return x;
    };
    if (strip(info.dims).join(',') !== strip(t.dims).join(',')) {
      throw new FormatError(`${info.file}: tensor ${t.gguf} (${t.module}) has shape [${info.dims.join(', ')}], expected [${t.dims.join(', ')}] (ggml order)`, {
        file: info.file,
        tensor: t.gguf,
        offset: info.offset,
      });
    }
    if (!QUANT_TYPES.has(info.type)) {
      const name = GGML_TYPES.get(info.type)?.name ?? `type ${info.type}`;
      const ok = [...QUANT_TYPES].map((x) => GGML_TYPES.get(x)?.name).join(', ');
      throw new FormatError(`${info.file}: tensor ${t.gguf} (${t.module}) has type ${name}, which Mixtile cannot run (supported: ${ok})`, {
        file: info.file,
        tensor: t.gguf,
      });
    }
  }
}

/**
 * kwargs per module from a rule file or preset (src/optimize); without rules every operator takes
 * its defaults (all CPU). A module served by a `recursive: false` ancestor gets the ancestor's kwargs.
 */
function placementKwargs(rules: string | undefined, modules: ModuleInfo[], onWarning?: (message: string) => void): KwargsLookup {
  if (rules === undefined) return () => undefined;
  const set = loadRules(rules);
  const result = placeModules(modules, set, hardwareForPlacement());
  for (const w of [...set.warnings, ...result.warnings]) onWarning?.(w);
  return (module) => {
    const owner = result.coveredBy.get(module) ?? module;
    return result.placements.get(owner)?.kwargs as Record<string, unknown> | undefined;
  };
}

/**
 * This machine as the placement sees it, with the GPUs the CUDA library can use (not nvidia-smi's list):
 * where the library or driver is missing, rules that name cuda fall back to the CPU with a warning.
 */
function hardwareForPlacement(): Hardware {
  const hw = probeHardware();
  const info = cudaInfo();
  if (!info.available) return { ...hw, gpus: [], gpuNote: `CUDA unavailable: ${info.reason ?? 'unknown reason'}` };
  return {
    ...hw,
    gpus: info.devices.map((d, index) => ({ index, name: d.name, memoryTotalBytes: d.vramBytes, memoryFreeBytes: d.freeBytes })),
    gpuNote: undefined,
  };
}

/** Checks the plan fits the GPU (a clear error naming what to change, before any allocation) and makes the context. */
function openGpu(
  path: string,
  gguf: GgufModel,
  c: ModelConfig,
  plan: GpuPlan,
  o: { ctxSize: number; nSeq: number; ubatch: number; kvType?: string; onWarning?: (message: string) => void },
): GpuRuntime {
  const info = cudaInfo();
  const dev = info.devices[plan.index];
  if (!info.available || !dev) throw new Error(`${path}: the placement puts ${plan.count} operators on cuda:${plan.index}, which CUDA does not offer (${info.available ? `${info.devices.length} device(s)` : info.reason})`);
  const needs = gpuNeeds(c, gguf, plan, { ctx: o.ctxSize, nSeq: o.nSeq, ubatch: o.ubatch });
  const fit = checkGpuFit({
    ...needs,
    freeBytes: dev.freeBytes,
    device: `cuda:${plan.index} ${dev.name}`,
    kv: { contextLength: o.ctxSize, slots: o.nSeq, bytesPerToken: needs.bytesPerToken },
  });
  if (!fit.ok) throw new Error(`${path}: ${fit.message}`);
  let kvType: 'f16' | 'bf16' = 'f16';
  if (o.kvType === 'bf16') kvType = 'bf16';
  else if (o.kvType !== undefined && o.kvType !== 'f16') o.onWarning?.(`the GPU KV cache holds f16 or bf16; ${o.kvType} was asked, using f16 for the GPU layers`);
  const moe = c.nExperts > 0;
  const ctx = gpuContextCreate({
    device: plan.index,
    hidden: c.hidden,
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    headDim: c.headDim,
    nExperts: moe ? c.nExperts : 0,
    topK: moe ? c.nExpertsUsed : 0,
    ffn: moe ? 0 : c.ffn,
    vocab: c.vocab,
    ubatch: o.ubatch,
    kvType,
    nSeq: o.nSeq,
    ctx: o.ctxSize,
    kvLayers: plan.attention,
  });
  return { ctx, index: plan.index };
}
