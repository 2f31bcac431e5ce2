// loadModel: GGUF file or HF folder -> checked config and tensors -> operators placed by the rules -> KV cache,
// returned as a LoadedModel whose forward() runs batches of tokens from several sequences.
// Sampling, scheduling and tokenization stay above, in engine/ and tokenizer/.
import { performance } from 'node:perf_hooks';
import { GGML_TYPES } from '../formats/ggml-types.ts';
import { metaString, type GgufModel } from '../formats/gguf-read.ts';
import { openModel } from '../formats/open-model.ts';
import { FormatError } from '../formats/errors.ts';
import { QUANT_TYPES } from '../formats/quant.ts';
import { kvCacheCreate, kvCacheDispose, type KvCacheHandle } from '../native/kv-cache.ts';
import { setThreads } from '../native/isa.ts';
import { requireCpu } from '../operators/device.ts';
import { probeHardware } from '../optimize/hardware.ts';
import { loadRules, placeModules } from '../optimize/rules.ts';
import { MappedFile, weightFromFile, weightGather, type NativeWeight } from '../native/tensor.ts';
import type { BuiltModel, KwargsLookup, WeightLookup } from './architecture.ts';
import { KvSlotTable } from './kv-slots.ts';
import type { ExpectedTensor, ModuleInfo } from './qwen3moe.ts';
import { architectureFor } from './registry.ts';
import type { ForwardBatch, LoadedModel, LoadOptions } from './types.ts';

const DEFAULT_CTX = 4096;
const DEFAULT_UBATCH = 512;

/** Loads a GGUF model or a Hugging Face folder for CPU inference. Example: `const m = await loadModel('q.gguf', { ctxSize: 2048, nSeq: 4 })`. */
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
  // Operators run their child modules too (q_proj inside Attention): none may ask for a GPU.
  for (const m of modules) requireCpu(m.name, kwargs(m.name));

  // Map every file once; weights view the mappings and keep them alive, so the files can close.
  // The weight handles are small and stay until dispose() (the embedding reads its table per step).
  const files = gguf.files.map((f) => MappedFile.open(f));
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
    built = arch.build(config, weights, kwargs);
  } catch (e) {
    for (const w of made.values()) w.dispose();
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
  const slots = new KvSlotTable(nSeq, ctxSize, cache);
  const vocab = config.vocab;
  const loadMs = performance.now() - t0;

  function forward(b: ForwardBatch): Float32Array {
    const next = slots.plan(b, vocab);
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
    slots.commit(next);
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
    dispose() {
      built.dispose();
      for (const w of made.values()) w.dispose();
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
  // The engine has no GPU operators yet (issue "GPU + CPU hybrid"): to the placement this machine's
  // GPUs do not exist, so rules that name cuda fall back to the CPU with a warning each (or fail
  // under strict), exactly as on a machine without a GPU.
  const hardware = { ...probeHardware(), gpus: [], gpuNote: 'this build runs every operator on the CPU; GPU operators are not wired into the engine yet' };
  const result = placeModules(modules, set, hardware);
  for (const w of [...set.warnings, ...result.warnings]) onWarning?.(w);
  return (module) => {
    const owner = result.coveredBy.get(module) ?? module;
    return result.placements.get(owner)?.kwargs as Record<string, unknown> | undefined;
  };
}
