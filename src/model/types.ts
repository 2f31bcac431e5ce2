// The model layer's contract with the engine: hyperparameters, one forward step over a batch of
// tokens from several sequences, and the KV slots those sequences live in. Sampling, scheduling and
// tokenization stay in engine/ and tokenizer/.
import type { GgufModel } from '../formats/gguf-read.ts';
import type { GpuStats } from '../native/gpu.ts';

/** Hyperparameters of a loaded architecture, read and checked from GGUF metadata. */
export interface ModelConfig {
  /** GGUF general.architecture, e.g. "qwen3moe". */
  architecture: string;
  nLayers: number;
  hidden: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Routed experts per MoE layer; 0 for dense models. */
  nExperts: number;
  nExpertsUsed: number;
  /** Intermediate size of one expert's FFN; 0 for dense models. */
  expertFfn: number;
  /** Intermediate size of the dense FFN; 0 for MoE models without one. */
  ffn: number;
  vocab: number;
  ropeTheta: number;
  rmsEps: number;
  /** Context length the model was trained with (metadata), not the engine's ctxSize. */
  contextLength: number;
  /** Renormalise the top-k router weights to sum to 1 (Qwen3-MoE: true). */
  normTopKProb: boolean;
}

/**
 * One forward step: `tokens[i]` at `positions[i]` of KV slot `seqIds[i]`. Tokens of one sequence
 * must appear in increasing position order and continue that slot's cache (position = kv length
 * at that point). `logitsFor` lists batch indexes whose logits are returned, in that order.
 */
export interface ForwardBatch {
  tokens: Int32Array;
  positions: Int32Array;
  /** KV slot per token, 0 <= seqId < nSeq. */
  seqIds: Int32Array;
  /** Batch indexes whose logits are wanted, usually the last token of each sequence. */
  logitsFor: Int32Array;
}

/** KV slot management; a slot holds one sequence's cache for every layer. */
export interface KvSlots {
  /** Empties slot `seq`. */
  clear(seq: number): void;
  /** Keeps the first `nTokens` positions of slot `seq` (drops the rest). */
  truncate(seq: number, nTokens: number): void;
  /** Copies the first `nTokens` positions of slot `src` into slot `dst` (prefix sharing); dst's length becomes nTokens. */
  copy(src: number, dst: number, nTokens: number): void;
  /** Positions currently cached in slot `seq`. */
  length(seq: number): number;
}

/** A model whose weights are mapped and operators built; forward() runs synchronously on native threads. */
export interface LoadedModel {
  readonly config: ModelConfig;
  readonly gguf: GgufModel;
  /** Positions per KV slot. */
  readonly ctxSize: number;
  /** Number of KV slots (concurrent sequences). */
  readonly nSeq: number;
  /** Runs the batch through the model; returns logits [logitsFor.length, vocab], row-major. */
  forward(batch: ForwardBatch): Float32Array;
  readonly kv: KvSlots;
  /** Milliseconds loadModel took (mmap, checks, repacking). */
  readonly loadMs: number;
  /** Present when the placement runs operators on a GPU: which one, how many operators, and what ran there. */
  readonly gpu?: { readonly index: number; readonly operators: number; stats(): GpuStats };
  /** Frees native memory (KV cache, repacked weights) and unmaps the file. */
  dispose(): void;
}

export type KvType = 'f16' | 'bf16' | 'f32';

export interface LoadOptions {
  /** Positions per KV slot; default min(4096, trained context). */
  ctxSize?: number;
  /** KV slots; default 1. */
  nSeq?: number;
  /** Tokens per chunk when a batch is long (prefill); default 512. */
  ubatch?: number;
  /** CPU threads for native kernels; default: all cores. */
  threads?: number;
  /** Rule file path or preset name (src/optimize); default: all-CPU placement. */
  rules?: string;
  /** KV cache element type; default f16. */
  kvType?: KvType;
  onProgress?: (done: number, total: number, what: string) => void;
  /** Rule-file warnings (fallbacks, ignored kwargs), each with file:line. */
  onWarning?: (message: string) => void;
}
