// `mixtile synth`: writes a Qwen3-MoE (qwen3moe) GGUF with random weights at any size, with the
// tensor names, shapes, types and metadata keys llama.cpp's converter and llama-quantize produce,
// and the real Qwen3 tokenizer. Streams tensor by tensor, so memory stays bounded at any size.
//
// Weight init (so a forward pass is far from uniform and comparisons mean something):
//   token_embd            std 1 (unit-scale residual stream)
//   attn_q/k/v, experts   std 1/sqrt(fan_in): activations keep unit scale through each projection
//   gate/up; attn_output, ffn_down_exps likewise with their own fan_in
//   ffn_gate_inp (router) std 3/sqrt(hidden): router logits of std ~3, so top-k is decisive
//   output                std 3/sqrt(hidden): logits of std ~3 after the final RMSNorm
//   every *_norm          1 + U(-0.1, 0.1)
// All values are uniform with that mean/std (src/formats/random-tensor.ts).
import { GgufWriter } from '../formats/gguf-write.ts';
import { GGUFValueType } from '../formats/gguf-read.ts';
import { GGML_TYPES } from '../formats/ggml-types.ts';
import { QUANT_TYPES } from '../formats/quant.ts';
import { parseFileType, tensorTypeFor, LlamaFileType } from '../formats/file-types.ts';
import { randomTensorChunks } from '../formats/random-tensor.ts';
import type { RandomTensorSpec } from '../formats/random-tensor.ts';
import { qwen3moeTensors, setQwen3MoeMetadata, setTokenizerMetadata } from '../formats/qwen3moe-gguf.ts';
import type { Qwen3MoeShape, Qwen3MoeTensor } from '../formats/qwen3moe-gguf.ts';
import { qwen3TokenizerMetadata, QWEN3_TOKENIZER_GGUF_TYPES } from '../tokenizer/qwen3-vocab.ts';

export type SynthPreset = 'tiny' | 'qwen3-30b-a3b' | 'qwen3-235b-a22b';

export interface SynthOptions {
  preset: SynthPreset;
  out: string;
  /** F32 | F16 | BF16 (default) | Q8_0 | Q4_K_M | Q4_K_S | Q5_K_M | Q5_K_S | Q6_K */
  fileType?: string;
  layers?: number;
  experts?: number;
  expertsUsed?: number;
  hidden?: number;
  expertFfn?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  /** Embedding rows; at least the tokenizer's 151 669 tokens (extra rows get [PADn] tokens). */
  vocab?: number;
  contextLength?: number;
  seed?: number;
  /** Quantize K-quant tensors with the (slow) reference quantizer instead of random blocks. */
  exactQuant?: boolean;
  /** Called after each chunk with bytes of tensor data written so far and in total. */
  onProgress?: (done: number, total: number) => void;
}

/** Hyperparameters of a synthetic model (always untied output, as the Qwen3-MoE releases). */
export type SynthConfig = Qwen3MoeShape;

export const SYNTH_PRESETS: Readonly<Record<SynthPreset, SynthConfig>> = {
  // CI-sized: rows of 256 so every K-quant mix applies; the real 151 936-row vocabulary.
  tiny: { nLayers: 2, hidden: 256, nHeads: 4, nKvHeads: 2, headDim: 64, nExperts: 8, nExpertsUsed: 2, expertFfn: 256, ffn: 768, vocab: 151936, contextLength: 4096, ropeTheta: 1e6, rmsEps: 1e-6 },
  // Qwen/Qwen3-30B-A3B config.json
  'qwen3-30b-a3b': { nLayers: 48, hidden: 2048, nHeads: 32, nKvHeads: 4, headDim: 128, nExperts: 128, nExpertsUsed: 8, expertFfn: 768, ffn: 6144, vocab: 151936, contextLength: 40960, ropeTheta: 1e6, rmsEps: 1e-6 },
  // Qwen/Qwen3-235B-A22B config.json
  'qwen3-235b-a22b': { nLayers: 94, hidden: 4096, nHeads: 64, nKvHeads: 4, headDim: 128, nExperts: 128, nExpertsUsed: 8, expertFfn: 1536, ffn: 12288, vocab: 151936, contextLength: 40960, ropeTheta: 1e6, rmsEps: 1e-6 },
};

/** Tokens in the Qwen3 tokenizer (ids 0..151668); embedding rows past them are padding. */
const QWEN3_TOKENS = 151669;

/** The preset with the options' overrides applied and checked. */
export function synthConfig(opts: SynthOptions): SynthConfig {
  const base = SYNTH_PRESETS[opts.preset];
  if (!base) throw new Error(`unknown preset "${opts.preset}" (known: ${Object.keys(SYNTH_PRESETS).join(', ')})`);
  const c: SynthConfig = {
    ...base,
    nLayers: opts.layers ?? base.nLayers,
    hidden: opts.hidden ?? base.hidden,
    nHeads: opts.heads ?? base.nHeads,
    nKvHeads: opts.kvHeads ?? base.nKvHeads,
    headDim: opts.headDim ?? base.headDim,
    nExperts: opts.experts ?? base.nExperts,
    nExpertsUsed: opts.expertsUsed ?? base.nExpertsUsed,
    expertFfn: opts.expertFfn ?? base.expertFfn,
    vocab: opts.vocab ?? base.vocab,
    contextLength: opts.contextLength ?? base.contextLength,
  };
  for (const [k, v] of Object.entries(c)) {
    if (!(typeof v === 'number' && v > 0 && (k === 'ropeTheta' || k === 'rmsEps' || Number.isSafeInteger(v)))) {
      throw new Error(`synth: ${k} must be a positive integer, got ${v}`);
    }
  }
  if (c.nHeads % c.nKvHeads !== 0) throw new Error(`synth: heads (${c.nHeads}) must be a multiple of kv heads (${c.nKvHeads})`);
  if (c.nExpertsUsed > c.nExperts) throw new Error(`synth: experts used (${c.nExpertsUsed}) exceeds experts (${c.nExperts})`);
  if (c.headDim % 2 !== 0) throw new Error(`synth: head dim must be even for RoPE, got ${c.headDim}`);
  if (c.vocab < QWEN3_TOKENS) throw new Error(`synth: vocab must hold the Qwen3 tokenizer's ${QWEN3_TOKENS} tokens, got ${c.vocab}`);
  return c;
}

/** Init of each kind of tensor; see the table at the top of this file. */
function init(t: Qwen3MoeTensor): { mean: number; std: number } {
  switch (t.kind) {
    case 'norm': return { mean: 1, std: 0.1 / Math.sqrt(3) }; // 1 + U(-0.1, 0.1)
    case 'embedding': return { mean: 0, std: 1 };
    case 'router':
    case 'output': return { mean: 0, std: 3 / Math.sqrt(t.fanIn) };
    case 'linear':
    case 'experts': return { mean: 0, std: 1 / Math.sqrt(t.fanIn) };
  }
}

/** Every tensor of the model in file order, with its type in `fileType` and its init. */
export function synthTensors(c: SynthConfig, fileType: LlamaFileType): RandomTensorSpec[] {
  return qwen3moeTensors(c).map((t) => {
    const type = tensorTypeFor(fileType, t.name, { dims: t.dims, nLayers: c.nLayers, nExperts: c.nExperts });
    if (!QUANT_TYPES.has(type)) {
      throw new Error(`synth: tensor ${t.name} [${t.dims.join(', ')}] would be ${GGML_TYPES.get(type)!.name} in this file type (its rows of ${t.dims[0]} do not fit K-quant blocks of 256), which mixtile cannot write; use sizes that are multiples of 256 or a float file type`);
    }
    return { name: t.name, type, dims: t.dims, ...init(t) };
  });
}

/** Metadata keys with the types llama.cpp's converter writes them, plus the synth markers. */
function synthMetadata(w: GgufWriter, c: SynthConfig, opts: SynthOptions, fileType: LlamaFileType): void {
  setQwen3MoeMetadata(w, c, {
    name: `Mixtile synthetic ${opts.preset}`,
    description: `random weights from mixtile synth (preset ${opts.preset}, seed ${opts.seed ?? 0}); output is noise`,
    fileType,
  });
  // Marks the file as synthetic for the engine (ModelInfo.isDemo); llama.cpp ignores unknown keys.
  w.setMeta('mixtile.synth.preset', opts.preset);
  w.setMeta('mixtile.synth.seed', opts.seed ?? 0, GGUFValueType.UINT32);
  setTokenizerMetadata(w, qwen3TokenizerMetadata(), QWEN3_TOKENIZER_GGUF_TYPES, c.vocab);
}

/** Writes the synthetic model to opts.out (via out.tmp, renamed when complete). */
export async function synthModel(opts: SynthOptions): Promise<void> {
  const c = synthConfig(opts);
  const fileType = parseFileType(opts.fileType ?? 'BF16');
  const tensors = synthTensors(c, fileType);
  const seed = opts.seed ?? 0;
  const w = new GgufWriter(opts.out);
  try {
    synthMetadata(w, c, opts, fileType);
    for (const t of tensors) w.addTensor(t.name, t.type, t.dims);
    const total = tensors.reduce((s, t) => s + w.tensorBytes(t.name), 0);
    await w.begin();
    let done = 0;
    for (const t of tensors) {
      const progress = function* (chunks: Iterable<Uint8Array>) {
        for (const chunk of chunks) {
          yield chunk;
          done += chunk.length;
          opts.onProgress?.(done, total);
        }
      };
      await w.writeTensor(t.name, progress(randomTensorChunks(t, seed, opts.exactQuant)));
    }
    await w.close();
  } catch (e) {
    await w.abort();
    throw e;
  }
}
