// `mixtile convert`: a Hugging Face Qwen3-MoE checkpoint folder (safetensors) to a GGUF laid out as
// llama.cpp's convert_hf_to_gguf.py + llama-quantize would make it. Streams row chunks, so memory
// stays bounded; the output is written to OUT.tmp and renamed when complete. Quantized types are
// computed on worker threads (QuantPool), one chunk of rows per job.
//
// Layout facts: HF Linear weights [out, in] are ggml dims [in, out] with the same bytes; per-expert
// weights are stacked into 3-D ffn_{gate,up,down}_exps; transformers 5's fused experts
// (mlp.experts.gate_up_proj [E, 2*ffn, hidden], mlp.experts.down_proj [E, hidden, ffn]) are split
// the same way; no q/k permutation (Qwen3 uses NeoX RoPE). FP8 (F8_E4M3) weights with
// `weight_scale_inv` block scales, as in Qwen's FP8 releases, are dequantized.
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { FormatError } from './errors.ts';
import { GgufWriter } from './gguf-write.ts';
import { GGML_TYPES, GgmlType } from './ggml-types.ts';
import { QUANT_TYPES, quantize } from './quant.ts';
import { FP16_TABLE, fp8e4m3ToFp32 } from './half.ts';
import { parseFileType, tensorTypeFor } from './file-types.ts';
import { QuantPool, quantizeOrdered } from './quant-pool.ts';
import { readSafetensorsDir, readSafetensorsRange, SAFETENSORS_DTYPES } from './safetensors.ts';
import type { SafetensorsModel, SafetensorsTensorInfo } from './safetensors.ts';
import { qwen3moeTensors, setQwen3MoeMetadata, setTokenizerMetadata } from './qwen3moe-gguf.ts';
import type { Qwen3MoeShape, Qwen3MoeRopeScaling, Qwen3MoeTensor } from './qwen3moe-gguf.ts';
import { hfTokenizerMetadata, HF_TOKENIZER_GGUF_TYPES } from './hf-tokenizer.ts';

export interface ConvertOptions {
  /** HF model folder: config.json, safetensors, tokenizer.json, tokenizer_config.json. */
  dir: string;
  out: string;
  /** F32 | F16 | BF16 (default) | Q8_0 | Q4_K_M | Q4_K_S | Q5_K_M | Q5_K_S | Q6_K */
  fileType?: string;
  /** Worker threads for quantized types (default: all cores). */
  threads?: number;
  /** Called after each chunk with bytes of tensor data written so far and in total. */
  onProgress?: (done: number, total: number) => void;
}

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
    ropeTheta: float('rope_theta', 10000),
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
interface Segment {
  src: SafetensorsTensorInfo;
  /** First element within src, and element count. */
  start: number;
  count: number;
  /** FP8 block scales of src: value = fp8 * scale[row / bh][col / bw]. */
  scale?: { values: Float32Array; bh: number; bw: number; cols: number };
}

const CHUNK_VALUES = 1 << 20;
const SOURCE_DTYPES = ['BF16', 'F16', 'F32', 'F8_E4M3'];

/** HF source tensors of each GGUF tensor, in element order; validates presence, shapes and dtypes. */
async function planSegments(model: SafetensorsModel, t: Qwen3MoeTensor, s: Qwen3MoeShape, blockSize: [number, number] | undefined): Promise<Segment[]> {
  const need = (name: string, shape: number[]): SafetensorsTensorInfo => {
    const info = model.tensors.get(name);
    if (!info) throw new FormatError(`${model.dir}: tensor "${name}" (for ${t.name}) is missing from the checkpoint`, { file: model.dir, tensor: name });
    if (info.shape.join(',') !== shape.join(',')) {
      throw new FormatError(`${info.file}: tensor "${name}" has shape [${info.shape.join(', ')}] but config.json implies [${shape.join(', ')}] (for ${t.name})`, { file: info.file, tensor: name });
    }
    if (!SOURCE_DTYPES.includes(info.dtype)) {
      throw new FormatError(`${info.file}: tensor "${name}" is ${info.dtype}; convert reads ${SOURCE_DTYPES.join(', ')}`, { file: info.file, tensor: name });
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
      seg.scale = { values: decode(sc, await readSafetensorsRange(sc), 0, sc.nElements), bh, bw, cols };
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
function decode(src: SafetensorsTensorInfo, bytes: Uint8Array, start: number, count: number, scale?: Segment['scale']): Float32Array {
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

/** Source dtypes whose bytes are already the target type's. */
const SAME_BYTES: Partial<Record<string, GgmlType>> = { F32: GgmlType.F32, F16: GgmlType.F16, BF16: GgmlType.BF16 };

interface SourceChunk {
  seg: Segment;
  bytes: Uint8Array;
  /** Element index within seg.src of bytes[0], and element count. */
  start: number;
  count: number;
}

/** The source bytes of a GGUF tensor, whole rows at a time, in element order. */
async function* readChunks(segs: Segment[], rowLength: number, handles: Map<string, FileHandle>): AsyncGenerator<SourceChunk> {
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_VALUES / rowLength));
  for (const seg of segs) {
    const elemBytes = SAFETENSORS_DTYPES.get(seg.src.dtype)!;
    let fh = handles.get(seg.src.file);
    if (!fh) handles.set(seg.src.file, (fh = await open(seg.src.file, 'r')));
    for (let el = 0; el < seg.count; el += rowsPerChunk * rowLength) {
      const count = Math.min(rowsPerChunk * rowLength, seg.count - el);
      const bytes = new Uint8Array(count * elemBytes);
      const pos = seg.src.offset + (seg.start + el) * elemBytes;
      for (let got = 0; got < bytes.length; ) {
        const { bytesRead } = await fh.read(bytes, got, bytes.length - got, pos + got);
        if (bytesRead === 0) throw new FormatError(`${seg.src.file}: tensor "${seg.src.name}" data ends early at byte ${pos + got}`, { file: seg.src.file, tensor: seg.src.name, offset: pos + got });
        got += bytesRead;
      }
      yield { seg, bytes, start: seg.start + el, count };
    }
  }
}

async function* decoded(chunks: AsyncIterable<SourceChunk>): AsyncGenerator<Float32Array> {
  for await (const c of chunks) yield decode(c.seg.src, c.bytes, c.start, c.count, c.seg.scale);
}

/** Float targets convert inline; quantized ones go through the worker pool. */
const FLOAT_TYPES: ReadonlySet<GgmlType> = new Set([GgmlType.F32, GgmlType.F16, GgmlType.BF16]);

/** The GGUF tensor's bytes in `type`: copied when the source bytes already are, else converted. */
async function* tensorChunks(segs: Segment[], rowLength: number, type: GgmlType, handles: Map<string, FileHandle>, pool: () => QuantPool): AsyncGenerator<Uint8Array> {
  const chunks = readChunks(segs, rowLength, handles);
  if (segs.every((s) => SAME_BYTES[s.src.dtype] === type && !s.scale)) {
    for await (const c of chunks) yield c.bytes;
  } else if (FLOAT_TYPES.has(type)) {
    for await (const x of decoded(chunks)) yield quantize(type, x);
  } else {
    yield* quantizeOrdered(pool(), type, decoded(chunks));
  }
}

/** Converts `opts.dir` to a GGUF at `opts.out`; see the file comment for the layout rules. */
export async function convertHfToGguf(opts: ConvertOptions): Promise<void> {
  const model = await readSafetensorsDir(opts.dir);
  const configFile = resolve(opts.dir, 'config.json');
  const { shape, ropeScaling } = qwen3moeShapeFromConfig(model.config, configFile);
  const fileType = parseFileType(opts.fileType ?? 'BF16');
  const qc = model.config.quantization_config as { weight_block_size?: [number, number] } | undefined;
  const tensors = qwen3moeTensors(shape);
  const plans: Array<{ t: Qwen3MoeTensor; type: GgmlType; segs: Segment[] }> = [];
  for (const t of tensors) {
    const type = tensorTypeFor(fileType, t.name, { dims: t.dims, nLayers: shape.nLayers, nExperts: shape.nExperts, tiedEmbeddings: shape.tiedEmbeddings });
    if (!QUANT_TYPES.has(type)) {
      throw new Error(`convert: ${t.name} [${t.dims.join(', ')}] would be ${GGML_TYPES.get(type)!.name} in this file type (rows of ${t.dims[0]} do not fit K-quant blocks), which mixtile cannot write; choose a float type or Q8_0`);
    }
    plans.push({ t, type, segs: await planSegments(model, t, shape, qc?.weight_block_size) });
  }
  const tokenizer = await hfTokenizerMetadata(opts.dir, model.config, shape.vocab);

  const w = new GgufWriter(opts.out);
  const handles = new Map<string, FileHandle>();
  let quantPool: QuantPool | undefined;
  const pool = () => (quantPool ??= new QuantPool(opts.threads));
  try {
    setQwen3MoeMetadata(w, shape, { name: basename(resolve(opts.dir)), fileType, ropeScaling });
    setTokenizerMetadata(w, tokenizer, HF_TOKENIZER_GGUF_TYPES, shape.vocab);
    for (const p of plans) w.addTensor(p.t.name, p.type, p.t.dims);
    const total = plans.reduce((s, p) => s + w.tensorBytes(p.t.name), 0);
    await w.begin();
    let done = 0;
    for (const p of plans) {
      const counted = async function* (chunks: AsyncIterable<Uint8Array>) {
        for await (const c of chunks) {
          yield c;
          done += c.length;
          opts.onProgress?.(done, total);
        }
      };
      await w.writeTensor(p.t.name, counted(tensorChunks(p.segs, p.t.dims[0], p.type, handles, pool)));
    }
    await w.close();
  } catch (e) {
    await w.abort();
    throw e;
  } finally {
    for (const fh of handles.values()) await fh.close();
    await quantPool?.close();
  }
}
