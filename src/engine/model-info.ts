// ModelInfo from a GGUF header: display name, file type, total and active parameter counts.
// Reads only metadata and the tensor directory (no weights).
import { basename } from 'node:path';
import type { GgufModel } from '../formats/gguf-read.ts';
import type { ModelInfo } from './types.ts';

/** llama.cpp's llama_ftype values (general.file_type) and their usual names. */
const FILE_TYPES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 7: 'Q8_0', 8: 'Q5_0', 9: 'Q5_1', 10: 'Q2_K', 11: 'Q3_K_S',
  12: 'Q3_K_M', 13: 'Q3_K_L', 14: 'Q4_K_S', 15: 'Q4_K_M', 16: 'Q5_K_S', 17: 'Q5_K_M', 18: 'Q6_K',
  19: 'IQ2_XXS', 20: 'IQ2_XS', 24: 'IQ1_S', 25: 'IQ4_NL', 30: 'IQ4_XS', 32: 'BF16',
};

export function fileTypeName(gguf: GgufModel): string {
  const v = gguf.metadata.get('general.file_type');
  if (v === undefined) return 'unknown';
  return FILE_TYPES[Number(v)] ?? `file_type ${v}`;
}

/** Parameter counts; routed-expert tensors (`*_exps`) count nExpertsUsed/nExperts of their size as active. */
export function paramCounts(gguf: GgufModel): { total: number; active: number } {
  const arch = String(gguf.metadata.get('general.architecture') ?? '');
  const nExperts = Number(gguf.metadata.get(`${arch}.expert_count`) ?? 0);
  const nUsed = Number(gguf.metadata.get(`${arch}.expert_used_count`) ?? 0);
  let total = 0;
  let active = 0;
  for (const t of gguf.tensors.values()) {
    total += t.nElements;
    active += nExperts > 0 && t.name.includes('_exps') ? (t.nElements * nUsed) / nExperts : t.nElements;
  }
  return { total, active: Math.round(active) };
}

export function modelInfo(gguf: GgufModel, opts: { path: string; ctxSize: number; isDemo: boolean }): ModelInfo {
  const { total, active } = paramCounts(gguf);
  return {
    name: opts.isDemo ? 'mixtile-demo' : basename(opts.path).replace(/(-\d{5}-of-\d{5})?\.gguf$/i, ''),
    path: opts.path,
    architecture: String(gguf.metadata.get('general.architecture') ?? 'unknown'),
    fileType: fileTypeName(gguf),
    nParams: total,
    nActiveParams: active,
    contextLength: opts.ctxSize,
    sizeBytes: gguf.fileSizes.reduce((a, b) => a + b, 0),
    isDemo: opts.isDemo,
  };
}
