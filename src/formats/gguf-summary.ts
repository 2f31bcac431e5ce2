// What `mixtile inspect` reports about a GGUF model: shape, parameter counts, tensor types and a
// memory estimate per placement. Works on any architecture's keys (`<arch>.block_count`, ...).
import { GGML_TYPES } from './ggml-types.ts';
import type { GgufModel, GgufValue } from './gguf-read.ts';
import { fileTypeName } from './file-types.ts';

export interface GgufHyperparams {
  nLayers?: number;
  hidden?: number;
  nHeads?: number;
  nKvHeads?: number;
  headDim?: number;
  nExperts?: number;
  nExpertsUsed?: number;
  expertFfn?: number;
  vocab?: number;
  contextLength?: number;
}

export interface GgufTypeCount {
  type: string;
  nTensors: number;
  nElements: number;
  nBytes: number;
}

export interface GgufSummary {
  files: string[];
  fileBytes: number;
  architecture: string;
  name?: string;
  fileType?: string;
  hparams: GgufHyperparams;
  nTensors: number;
  nParams: number;
  /**
   * Parameters a token uses, counted as Qwen does for "A3B": every non-expert tensor (token_embd
   * and output included) plus expert_used_count / expert_count of the routed expert tensors (*_exps).
   */
  nActiveParams: number;
  nExpertParams: number;
  types: GgufTypeCount[];
  tensorBytes: number;
  expertBytes: number;
  memory: {
    /** Context the KV estimate is for (tokens). */
    ctx: number;
    /** F16 K and V for every layer at `ctx` tokens. */
    kvBytes: number;
    allCpu: { ramBytes: number };
    expertsCpu: { ramBytes: number; vramBytes: number };
  };
}

/** Routed expert tensors: llama.cpp names them blk.N.ffn_{gate,up,down}_exps (shared experts are *_shexp). */
export const isExpertTensor = (name: string) => /\.ffn_(gate|up|down|gate_up)_exps\.weight$/.test(name);

function num(v: GgufValue | undefined): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return undefined;
}

/**
 * Summarizes a read model. The memory estimate counts weights (as stored) and an F16 KV cache
 * for `ctx` tokens (default min(4096, context length)); compute buffers are not included.
 */
export function summarizeGguf(model: GgufModel, opts: { ctx?: number } = {}): GgufSummary {
  const md = model.metadata;
  const architecture = typeof md.get('general.architecture') === 'string' ? (md.get('general.architecture') as string) : 'unknown';
  const k = (key: string) => num(md.get(`${architecture}.${key}`));
  const hidden = k('embedding_length');
  const nHeads = k('attention.head_count');
  const hp: GgufHyperparams = {
    nLayers: k('block_count'),
    hidden,
    nHeads,
    nKvHeads: k('attention.head_count_kv') ?? nHeads,
    headDim: k('attention.key_length') ?? (hidden && nHeads ? hidden / nHeads : undefined),
    nExperts: k('expert_count'),
    nExpertsUsed: k('expert_used_count'),
    expertFfn: k('expert_feed_forward_length'),
    vocab: model.tensors.get('token_embd.weight')?.dims[1] ?? (md.get('tokenizer.ggml.tokens') as unknown[] | undefined)?.length,
    contextLength: k('context_length'),
  };

  const byType = new Map<string, GgufTypeCount>();
  let nParams = 0, nExpertParams = 0, tensorBytes = 0, expertBytes = 0;
  for (const t of model.tensors.values()) {
    const type = GGML_TYPES.get(t.type)!.name;
    const c = byType.get(type) ?? { type, nTensors: 0, nElements: 0, nBytes: 0 };
    c.nTensors++;
    c.nElements += t.nElements;
    c.nBytes += t.nBytes;
    byType.set(type, c);
    nParams += t.nElements;
    tensorBytes += t.nBytes;
    if (isExpertTensor(t.name)) {
      nExpertParams += t.nElements;
      expertBytes += t.nBytes;
    }
  }
  const used = hp.nExperts && hp.nExpertsUsed ? hp.nExpertsUsed / hp.nExperts : 1;
  const ctx = opts.ctx ?? Math.min(4096, hp.contextLength ?? 4096);
  const kvBytes = hp.nLayers && hp.nKvHeads && hp.headDim ? 2 * hp.nLayers * hp.nKvHeads * hp.headDim * ctx * 2 : 0;
  const ft = num(md.get('general.file_type'));
  return {
    files: model.files,
    fileBytes: model.fileSizes.reduce((a, b) => a + b, 0),
    architecture,
    name: typeof md.get('general.name') === 'string' ? (md.get('general.name') as string) : undefined,
    fileType: ft === undefined ? undefined : fileTypeName(ft),
    hparams: hp,
    nTensors: model.tensors.size,
    nParams,
    nActiveParams: Math.round(nParams - nExpertParams + nExpertParams * used),
    nExpertParams,
    types: [...byType.values()].sort((a, b) => b.nBytes - a.nBytes),
    tensorBytes,
    expertBytes,
    memory: {
      ctx,
      kvBytes,
      allCpu: { ramBytes: tensorBytes + kvBytes },
      expertsCpu: { ramBytes: expertBytes, vramBytes: tensorBytes - expertBytes + kvBytes },
    },
  };
}
