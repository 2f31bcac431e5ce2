// Qwen3-MoE (GGUF "qwen3moe", HF Qwen3MoeForCausalLM): hyperparameters, module tree with HF names,
// and the decoder forward. Qwen3 dense (qwen3.ts) shares all of it but the MLP. Weight loading and
// checks live in load.ts; the math lives in the operators (src/operators/).
import { metaNumber, metaString, metaBool, type GgufModel } from '../formats/gguf-read.ts';
import { FormatError } from '../formats/errors.ts';
import { Attention } from '../operators/attention.ts';
import { Embedding } from '../operators/embedding.ts';
import { LMHead } from '../operators/lm-head.ts';
import { Mlp } from '../operators/mlp.ts';
import { MoeBlock, type FfnOperator } from '../operators/moe-block.ts';
import type { GpuRuntime } from '../operators/device.ts';
import { HiddenState } from '../operators/hidden.ts';
import type { KvCacheHandle } from '../native/kv-cache.ts';
import type { Architecture, BuiltModel, KwargsLookup, WeightLookup } from './architecture.ts';
import { ggufGlobal, ggufLayer } from './names.ts';
import type { ModelConfig } from './types.ts';

/** A module of the tree given to the rules engine: HF name and HF (or KTransformers) class. */
export interface ModuleInfo {
  name: string;
  className: string;
}

/** A tensor the architecture needs: GGUF name, the HF module it belongs to, dims in ggml order. */
export interface ExpectedTensor {
  gguf: string;
  module: string;
  dims: number[];
  /** Absent tensors are allowed (lm_head falls back to token_embd when tied). */
  optional?: boolean;
}

const HF = 'ktransformers.models.modeling_qwen3_moe';

// ---------------------------------------------------------------------------------------------
// readConfig

/** Reads and checks the hyperparameters; `moe` false for Qwen3 dense. Throws FormatError naming the key. */
export function readQwen3Config(gguf: GgufModel, moe: boolean): ModelConfig {
  const arch = metaString(gguf, 'general.architecture');
  const file = gguf.files[0];
  const key = (k: string) => `${arch}.${k}`;
  const positive = (k: string, fallback?: number): number => {
    const v = metaNumber(gguf, key(k), fallback);
    if (!Number.isInteger(v) || v <= 0) {
      throw new FormatError(`${file}: metadata key "${key(k)}" must be a positive integer, got ${v}`, { file, key: key(k) });
    }
    return v;
  };
  const hidden = positive('embedding_length');
  const nHeads = positive('attention.head_count');
  const nKvHeads = positive('attention.head_count_kv', nHeads);
  const headDim = positive('attention.key_length', hidden / nHeads);
  const valueDim = positive('attention.value_length', headDim);
  if (valueDim !== headDim) {
    throw new FormatError(`${file}: attention.value_length ${valueDim} differs from key_length ${headDim}; not supported`, { file, key: key('attention.value_length') });
  }
  if (nHeads % nKvHeads !== 0) {
    throw new FormatError(`${file}: attention.head_count ${nHeads} is not a multiple of head_count_kv ${nKvHeads}`, { file, key: key('attention.head_count_kv') });
  }
  const embd = gguf.tensors.get('token_embd.weight');
  if (!embd) throw new FormatError(`${file}: tensor token_embd.weight (model.embed_tokens) is missing`, { file, tensor: 'token_embd.weight' });
  const ropeTheta = metaNumber(gguf, key('rope.freq_base'), 1_000_000);
  const rmsEps = metaNumber(gguf, key('attention.layer_norm_rms_epsilon'), 1e-6);
  if (!(ropeTheta > 0)) throw new FormatError(`${file}: ${key('rope.freq_base')} must be positive, got ${ropeTheta}`, { file, key: key('rope.freq_base') });
  if (!(rmsEps > 0 && rmsEps < 1)) throw new FormatError(`${file}: ${key('attention.layer_norm_rms_epsilon')} must be in (0, 1), got ${rmsEps}`, { file, key: key('attention.layer_norm_rms_epsilon') });
  const config: ModelConfig = {
    architecture: arch,
    nLayers: positive('block_count'),
    hidden,
    nHeads,
    nKvHeads,
    headDim,
    nExperts: moe ? positive('expert_count') : 0,
    nExpertsUsed: moe ? positive('expert_used_count') : 0,
    expertFfn: moe ? positive('expert_feed_forward_length') : 0,
    ffn: moe ? metaNumber(gguf, key('feed_forward_length'), 0) : positive('feed_forward_length'),
    vocab: embd.dims[1] ?? 0,
    ropeTheta,
    rmsEps,
    contextLength: positive('context_length'),
    // llama.cpp hard-codes renormalised top-k for qwen3moe; newer files may carry the key.
    normTopKProb: moe ? metaBool(gguf, key('expert_weights_norm'), true) : false,
  };
  if (moe && config.nExpertsUsed > config.nExperts) {
    throw new FormatError(`${file}: ${key('expert_used_count')} ${config.nExpertsUsed} exceeds expert_count ${config.nExperts}`, { file, key: key('expert_used_count') });
  }
  return config;
}

// ---------------------------------------------------------------------------------------------
// Module tree

/** The HF module tree: what rules match on (name regex, class). */
export function qwen3Modules(c: ModelConfig, moe: boolean): ModuleInfo[] {
  const prefix = moe ? 'Qwen3Moe' : 'Qwen3';
  const cls = (n: string) => `${HF}.${prefix}${n}`;
  const out: ModuleInfo[] = [
    { name: 'model', className: cls('Model') },
    { name: 'model.embed_tokens', className: 'torch.nn.Embedding' },
  ];
  for (let i = 0; i < c.nLayers; i++) {
    const l = `model.layers.${i}`;
    out.push(
      { name: l, className: cls('DecoderLayer') },
      { name: `${l}.input_layernorm`, className: cls('RMSNorm') },
      { name: `${l}.self_attn`, className: cls('Attention') },
      { name: `${l}.self_attn.q_proj`, className: 'torch.nn.Linear' },
      { name: `${l}.self_attn.k_proj`, className: 'torch.nn.Linear' },
      { name: `${l}.self_attn.v_proj`, className: 'torch.nn.Linear' },
      { name: `${l}.self_attn.o_proj`, className: 'torch.nn.Linear' },
      { name: `${l}.self_attn.q_norm`, className: cls('RMSNorm') },
      { name: `${l}.self_attn.k_norm`, className: cls('RMSNorm') },
      { name: `${l}.self_attn.rotary_emb`, className: cls('RotaryEmbedding') },
      { name: `${l}.post_attention_layernorm`, className: cls('RMSNorm') },
    );
    if (moe) {
      out.push(
        { name: `${l}.mlp`, className: cls('SparseMoeBlock') },
        { name: `${l}.mlp.gate`, className: 'torch.nn.Linear' },
        { name: `${l}.mlp.experts`, className: 'torch.nn.ModuleList' },
      );
    } else {
      out.push(
        { name: `${l}.mlp`, className: cls('MLP') },
        { name: `${l}.mlp.gate_proj`, className: 'torch.nn.Linear' },
        { name: `${l}.mlp.up_proj`, className: 'torch.nn.Linear' },
        { name: `${l}.mlp.down_proj`, className: 'torch.nn.Linear' },
      );
    }
  }
  out.push({ name: 'model.norm', className: cls('RMSNorm') }, { name: 'lm_head', className: 'torch.nn.Linear' });
  return out;
}

/** Every tensor the forward reads, with its shape in ggml order ([hidden, vocab] = vocab rows of hidden). */
export function qwen3Tensors(c: ModelConfig, moe: boolean): ExpectedTensor[] {
  const q = c.nHeads * c.headDim;
  const kv = c.nKvHeads * c.headDim;
  const t = (hf: string, dims: number[], optional?: boolean): ExpectedTensor => ({ gguf: ggufGlobal(hf), module: hf, dims, optional });
  const out: ExpectedTensor[] = [t('model.embed_tokens', [c.hidden, c.vocab])];
  for (let i = 0; i < c.nLayers; i++) {
    const l = (part: string, dims: number[]): ExpectedTensor => ({ gguf: ggufLayer(i, part), module: `model.layers.${i}.${part}`, dims });
    out.push(
      l('input_layernorm', [c.hidden]),
      l('self_attn.q_proj', [c.hidden, q]),
      l('self_attn.k_proj', [c.hidden, kv]),
      l('self_attn.v_proj', [c.hidden, kv]),
      l('self_attn.o_proj', [q, c.hidden]),
      l('self_attn.q_norm', [c.headDim]),
      l('self_attn.k_norm', [c.headDim]),
      l('post_attention_layernorm', [c.hidden]),
    );
    if (moe) {
      out.push(
        l('mlp.gate', [c.hidden, c.nExperts]),
        l('mlp.experts.gate_proj', [c.hidden, c.expertFfn, c.nExperts]),
        l('mlp.experts.up_proj', [c.hidden, c.expertFfn, c.nExperts]),
        l('mlp.experts.down_proj', [c.expertFfn, c.hidden, c.nExperts]),
      );
    } else {
      out.push(l('mlp.gate_proj', [c.hidden, c.ffn]), l('mlp.up_proj', [c.hidden, c.ffn]), l('mlp.down_proj', [c.ffn, c.hidden]));
    }
  }
  out.push(t('model.norm', [c.hidden]), t('lm_head', [c.hidden, c.vocab], true));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Forward

export interface DecoderLayer {
  selfAttn: Attention;
  /** MoE block (qwen3moe) or dense SwiGLU MLP (qwen3). */
  mlp: FfnOperator;
}

/** The built operators of a Qwen3 / Qwen3-MoE decoder. */
export interface Qwen3Operators {
  embedTokens: Embedding;
  layers: DecoderLayer[];
  lmHead: LMHead;
}

/**
 * One ubatch through the decoder:
 *
 *   x = embed_tokens(tokens)                      [n, hidden]
 *   for each layer:
 *     x += self_attn(input_layernorm(x))          (q/k norm, RoPE, KV write, causal GQA, o_proj)
 *     x += mlp(post_attention_layernorm(x))       (router top-k + experts, or SwiGLU)
 *   logits = lm_head(norm(x[rows]))               [rows.length, vocab]
 *
 * The norms and residual adds run inside each operator's single native call. Each operator runs on the
 * CPU or the GPU (its rules); x moves between host and GPU only where consecutive operators differ.
 */
export function qwen3Forward(
  ops: Qwen3Operators,
  kv: KvCacheHandle,
  hidden: number,
  tokens: Int32Array,
  positions: Int32Array,
  seqIds: Int32Array,
  rows: Int32Array,
  logits: Float32Array,
  gpu?: GpuRuntime,
): void {
  const x = HiddenState.begin(tokens.length, hidden, positions, seqIds, gpu);
  ops.embedTokens.forward(tokens, x);
  for (const layer of ops.layers) {
    layer.selfAttn.forward(x, positions, seqIds, kv);
    layer.mlp.forward(x);
  }
  if (rows.length > 0) ops.lmHead.forward(x, rows, logits);
}

// ---------------------------------------------------------------------------------------------
// Build

/**
 * Builds the operators (kwargs from the rules, weights by GGUF name) and returns the runnable model.
 * `gpu`: the model's GPU context, which operators placed on cuda use (load.ts makes it when any is).
 */
export function buildQwen3(c: ModelConfig, moe: boolean, w: WeightLookup, kwargs: KwargsLookup, gpu?: GpuRuntime): BuiltModel {
  const embedTokens = new Embedding('model.embed_tokens', kwargs('model.embed_tokens'), gpu);
  embedTokens.load({ weight: w.get(ggufGlobal('model.embed_tokens')) });
  const layers: DecoderLayer[] = [];
  for (let i = 0; i < c.nLayers; i++) {
    const l = `model.layers.${i}`;
    const g = (part: string) => w.get(ggufLayer(i, part));
    const selfAttn = new Attention(
      `${l}.self_attn`,
      { layer: i, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headDim: c.headDim, eps: c.rmsEps, ropeTheta: c.ropeTheta },
      kwargs(`${l}.self_attn`),
      gpu,
      kwargs(`${l}.self_attn.q_proj`),
    );
    selfAttn.load({
      norm: g('input_layernorm'),
      qProj: g('self_attn.q_proj'),
      kProj: g('self_attn.k_proj'),
      vProj: g('self_attn.v_proj'),
      oProj: g('self_attn.o_proj'),
      qNorm: g('self_attn.q_norm'),
      kNorm: g('self_attn.k_norm'),
    });
    let mlp: FfnOperator;
    if (moe) {
      const block = new MoeBlock(
        `${l}.mlp`,
        { layer: i, eps: c.rmsEps, nExpertsUsed: c.nExpertsUsed, normTopKProb: c.normTopKProb },
        kwargs(`${l}.mlp`),
        kwargs(`${l}.mlp.experts`),
        gpu,
      );
      block.load({
        norm: g('post_attention_layernorm'),
        gate: g('mlp.gate'),
        gateExps: g('mlp.experts.gate_proj'),
        upExps: g('mlp.experts.up_proj'),
        downExps: g('mlp.experts.down_proj'),
      });
      mlp = block;
    } else {
      const dense = new Mlp(`${l}.mlp`, { layer: i, eps: c.rmsEps }, kwargs(`${l}.mlp`), gpu);
      dense.load({ norm: g('post_attention_layernorm'), gateProj: g('mlp.gate_proj'), upProj: g('mlp.up_proj'), downProj: g('mlp.down_proj') });
      mlp = dense;
    }
    layers.push({ selfAttn, mlp });
  }
  const lmHead = new LMHead('lm_head', c.rmsEps, kwargs('lm_head'), gpu);
  // Tied embeddings: files without output.weight reuse token_embd as the output projection.
  const out = w.has(ggufGlobal('lm_head')) ? ggufGlobal('lm_head') : ggufGlobal('model.embed_tokens');
  lmHead.load({ norm: w.get(ggufGlobal('model.norm')), out: w.get(out) });
  const ops: Qwen3Operators = { embedTokens, layers, lmHead };
  return {
    forward: (kv, tokens, positions, seqIds, rows, logits) => qwen3Forward(ops, kv, c.hidden, tokens, positions, seqIds, rows, logits, gpu),
    dispose: () => {
      embedTokens.dispose();
      for (const layer of layers) {
        layer.selfAttn.dispose();
        layer.mlp.dispose();
      }
      lmHead.dispose();
    },
  };
}

export const QWEN3MOE: Architecture = {
  ggufName: 'qwen3moe',
  hfClass: 'Qwen3MoeForCausalLM',
  readConfig: (gguf) => readQwen3Config(gguf, true),
  modules: (c) => qwen3Modules(c, true),
  tensors: (c) => qwen3Tensors(c, true),
  build: (c, w, kw, gpu) => buildQwen3(c, true, w, kw, gpu),
};
