// What an architecture file provides to load.ts: config reading, the HF module tree, the tensors
// it needs, and how to build its operators. Registered in registry.ts.
import type { GgufModel } from '../formats/gguf-read.ts';
import type { NativeWeight } from '../native/tensor.ts';
import type { KvCacheHandle } from '../native/kv-cache.ts';
import type { GpuRuntime } from '../operators/device.ts';
import type { ExpectedTensor, ModuleInfo } from './qwen3moe.ts';
import type { ModelConfig } from './types.ts';

/** Weights by GGUF tensor name, mapped natively on first use. */
export interface WeightLookup {
  get(gguf: string): NativeWeight;
  has(gguf: string): boolean;
}

/** Operator kwargs by HF module name, from the rules engine (empty = defaults, all CPU). */
export type KwargsLookup = (module: string) => Record<string, unknown> | undefined;

/** A built model: runs one ubatch, frees its native parts. */
export interface BuiltModel {
  /** See qwen3Forward: tokens/positions/seqIds [n]; logits [rows.length, vocab] for batch rows `rows`. */
  forward(kv: KvCacheHandle, tokens: Int32Array, positions: Int32Array, seqIds: Int32Array, rows: Int32Array, logits: Float32Array): void;
  dispose(): void;
}

export interface Architecture {
  /** GGUF general.architecture. */
  ggufName: string;
  /** HF config "architectures" entry. */
  hfClass: string;
  readConfig(gguf: GgufModel): ModelConfig;
  modules(config: ModelConfig): ModuleInfo[];
  tensors(config: ModelConfig): ExpectedTensor[];
  /** `gpu`: the model's GPU context, for the operators the rules put on a GPU. */
  build(config: ModelConfig, weights: WeightLookup, kwargs: KwargsLookup, gpu?: GpuRuntime): BuiltModel;
}
