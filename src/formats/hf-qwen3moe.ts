// How a Hugging Face Qwen3-MoE checkpoint maps onto the qwen3moe GGUF layout: the shape from
// config.json, and for every GGUF tensor the byte ranges of the HF tensors it is made of (per-expert
// weights stacked into 3-D, transformers 5's fused experts split), with dtype decoding. Used by
// `convert` (hf-convert.ts) and by the direct-run view (hf-model.ts).
import { FormatError } from './errors.ts';
import { FP16_TABLE, fp8e4m3ToFp32 } from './half.ts';
import { readSafetensorsRange } from './safetensors.ts';
import type { SafetensorsModel, SafetensorsTensorInfo } from './safetensors.ts';
import type { Qwen3MoeShape, Qwen3MoeRopeScaling, Qwen3MoeTensor } from './qwen3moe-gguf.ts';

/** The model shape from config.json, checked; throws naming the key. */
export function qwen3moeShapeFromConfig(config: Record<string, unknown>, file: string): { shape: Qwen3MoeShape; ropeScaling?: Qwen3MoeRopeScaling } {
  const bad = (key: string, msg: string): never => {
    throw new FormatError(`${file}: "${key}" ${msg}`, { file, key });
  };
  const arch = (config.architectures as unknown[] | undefined)?.[0];
  if (arch !== 'Qwen3MoeForCausalLM') bad('architectures', `is ${JSON.stringify(config.architectures)}; convert supports Qwen3MoeForCausalLM`);
  const int = (key: string, fallback?: number): number => {
    const v = config[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) bad(key, `must be a positive integer, found ${JSON.stringify(config[key])}`);
    return v as number;
  };
  const float = (key: string, fallback: number): number => {
    const v = config[key] ?? fallback;
    if (typeof v !== 'number' || !(v > 0)) bad(key, `must be a positive number, found ${JSON.stringify(config[key])}`);
    return v as number;
  };
  const hidden = int('hidden_size');
  const nHeads = int('num_attention_heads');
  const shape: Qwen3MoeShape = {
    nLayers: int('num_hidden_layers'),
    hidden,
    nHeads,
    nKvHeads: int('num_key_value_heads', nHeads),
    headDim: int('head_dim', hidden / nHeads),
    nExperts: int('num_experts'),
    nExpertsUsed: int('num_experts_per_tok'),
    expertFfn: int('moe_intermediate_size'),
    ffn: int('intermediate_size', 1),
    vocab: int('vocab_size'),
    contextLength: int('max_position_embeddings'),
    // transformers >= 5 writes rope_theta inside rope_parameters; older configs keep it top-level.
    ropeTheta: float('rope_theta', ropeParameterTheta(config) ?? 10000),
    rmsEps: float('rms_norm_eps', 1e-6),
    tiedEmbeddings: config.tie_word_embeddings === true,
  };
  // llama.cpp's qwen3moe graph: every layer sparse, top-k weights renormalized.
  if ((config.decoder_sparse_step ?? 1) !== 1) bad('decoder_sparse_step', 'must be 1: llama.cpp\'s qwen3moe has no dense layers');
  if (Array.isArray(config.mlp_only_layers) && config.mlp_only_layers.length > 0) bad('mlp_only_layers', 'must be empty: llama.cpp\'s qwen3moe has no dense layers');
  if (config.norm_topk_prob === false) bad('norm_topk_prob', 'is false, but llama.cpp\'s qwen3moe always renormalizes the top-k weights');
  let ropeScaling: Qwen3MoeRopeScaling | undefined;
  const rs = config.rope_scaling as Record<string, unknown> | null | undefined;
  if (rs) {
    const type = rs.rope_type ?? rs.type;
    if (type !== 'yarn' && type !== 'linear') bad('rope_scaling', `type ${JSON.stringify(type)} is not supported (yarn, linear)`);
    ropeScaling = { type: type as 'yarn' | 'linear', factor: Number(rs.factor), originalContextLength: typeof rs.original_max_position_embeddings === 'number' ? rs.original_max_position_embeddings : undefined };
  }
  return { shape, ropeScaling };
}

/** A run of consecutive elements of one HF tensor, whole rows of the GGUF tensor. */
export interface Segment {
  src: SafetensorsTensorInfo;
  /** First element within src, and element count. */
  start: number;
  count: number;
  /** FP8 block scales of src: value = fp8 * scale[row / bh][col / bw]. */
  scale?: { name: string; values: Float32Array; bh: number; bw: number; cols: number };
}

const SOURCE_DTYPES = ['BF16', 'F16', 'F32', 'F8_E4M3'];

/** HF source tensors of each GGUF tensor, in element order; validates presence, shapes and dtypes. */
export async function planSegments(model: SafetensorsModel, t: Qwen3MoeTensor, blockSize: [number, number] | undefined): Promise<Segment[]> {
  const need = (name: string, shape: number[]): SafetensorsTensorInfo => {
    const info = model.tensors.get(name);
    if (!info) throw new FormatError(`${model.dir}: tensor "${name}" (for ${t.name}) is missing from the checkpoint`, { file: model.dir, tensor: name });
    if (info.shape.join(',') !== shape.join(',')) {
      throw new FormatError(`${info.file}: tensor "${name}" has shape [${info.shape.join(', ')}] but config.json implies [${shape.join(', ')}] (for ${t.name})`, { file: info.file, tensor: name });
    }
    if (!SOURCE_DTYPES.includes(info.dtype)) {
      throw new FormatError(`${info.file}: tensor "${name}" is ${info.dtype}; mixtile reads ${SOURCE_DTYPES.join(', ')}`, { file: info.file, tensor: name });
    }
    return info;
  };
  const whole = async (name: string, shape: number[]): Promise<Segment> => {
    const src = need(name, shape);
    const seg: Segment = { src, start: 0, count: src.nElements };
    if (src.dtype === 'F8_E4M3') {
      const scaleName = `${name}_scale_inv`;
      const [rows, cols] = shape;
      if (!blockSize || shape.length !== 2) throw new FormatError(`${src.file}: FP8 tensor "${name}" needs config.json quantization_config.weight_block_size`, { file: src.file, tensor: name });
      const [bh, bw] = blockSize;
      const sc = need(scaleName, [Math.ceil(rows / bh), Math.ceil(cols / bw)]);
      seg.scale = { name: scaleName, values: decode(sc, await readSafetensorsRange(sc), 0, sc.nElements), bh, bw, cols };
    }
    return seg;
  };
  const rev = (dims: number[]) => [...dims].reverse();
  if (t.kind !== 'experts') return [await whole(t.hf, rev(t.dims))];

  const [cols, rows, nExperts] = t.dims;
  const layer = t.name.split('.')[1];
  const fusedBase = `model.layers.${layer}.mlp.experts.`;
  const isDown = t.name.includes('down');
  const fusedName = (n: string) => [fusedBase + n, `${fusedBase}${n}.weight`].find((x) => model.tensors.has(x));
  const fused = fusedName(isDown ? 'down_proj' : 'gate_up_proj');
  if (fused && !model.tensors.has(t.hf.replace('{e}', '0'))) {
    const f = model.tensors.get(fused)!;
    if (f.dtype === 'F8_E4M3') throw new FormatError(`${f.file}: fused FP8 expert tensor "${fused}" is not supported (per-expert FP8 weights with weight_scale_inv are)`, { file: f.file, tensor: fused });
    if (isDown) return [{ src: need(fused, [nExperts, rows, cols]), start: 0, count: nExperts * rows * cols }];
    const src = need(fused, [nExperts, 2 * rows, cols]);
    const second = t.name.includes('up_exps') ? 1 : 0; // gate rows first, then up rows, per expert
    return Array.from({ length: nExperts }, (_, e) => ({ src, start: (2 * e + second) * rows * cols, count: rows * cols }));
  }
  const segs: Segment[] = [];
  for (let e = 0; e < nExperts; e++) segs.push(await whole(t.hf.replace('{e}', String(e)), [rows, cols]));
  return segs;
}

/** Float values of elements [start, start + count) of `src`, given their bytes. */
export function decode(src: SafetensorsTensorInfo, bytes: Uint8Array, start: number, count: number, scale?: Segment['scale']): Float32Array {
  const out = new Float32Array(count);
  switch (src.dtype) {
    case 'F32':
      new Uint8Array(out.buffer).set(bytes.subarray(0, count * 4));
      break;
    case 'F16':
      for (let i = 0; i < count; i++) out[i] = FP16_TABLE[bytes[2 * i] | (bytes[2 * i + 1] << 8)];
      break;
    case 'BF16': {
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) u[i] = (bytes[2 * i] | (bytes[2 * i + 1] << 8)) << 16;
      break;
    }
    case 'F8_E4M3':
      for (let i = 0; i < count; i++) {
        let v = fp8e4m3ToFp32(bytes[i]);
        if (scale) {
          const el = start + i;
          const r = Math.floor(el / scale.cols);
          const c = el - r * scale.cols;
          v *= scale.values[Math.floor(r / scale.bh) * Math.ceil(scale.cols / scale.bw) + Math.floor(c / scale.bw)];
        }
        out[i] = v;
      }
      break;
  }
  return out;
}

/** rope_parameters.rope_theta of transformers >= 5 configs, when present. */
function ropeParameterTheta(config: Record<string, unknown>): number | undefined {
  const rp = config.rope_parameters as Record<string, unknown> | null | undefined;
  return typeof rp?.rope_theta === 'number' ? rp.rope_theta : undefined;
}

/** Tensors a checkpoint may carry that the GGUF layout drops on purpose (llama.cpp skips them too). */
const IGNORED = [/\.rotary_emb\.inv_freq$/, /^lm_head\.weight$/];

/**
 * Throws if the checkpoint has tensors no GGUF tensor was built from: an unknown tensor means a
 * layout this converter does not understand (a shared expert, an MTP head), not something to drop.
 */
export function checkAllUsed(model: SafetensorsModel, segments: Iterable<Segment[]>): void {
  const used = new Set<string>();
  for (const segs of segments) for (const s of segs) {
    used.add(s.src.name);
    if (s.scale) used.add(s.scale.name);
  }
  const extra = [...model.tensors.keys()].filter((n) => !used.has(n) && !IGNORED.some((re) => re.test(n)));
  if (extra.length) {
    const f = model.tensors.get(extra[0])!.file;
    throw new FormatError(`${f}: the checkpoint has ${extra.length} tensors that are not part of a Qwen3-MoE model as llama.cpp lays it out (e.g. ${extra.slice(0, 3).map((n) => `"${n}"`).join(', ')})`, { file: f, tensor: extra[0] });
  }
}
