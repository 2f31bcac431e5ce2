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
import { parseFileType, tensorTypeFor } from './file-types.ts';
import { QuantPool, quantizeOrdered } from './quant-pool.ts';
import { readSafetensorsDir, SAFETENSORS_DTYPES } from './safetensors.ts';
import { qwen3moeTensors, setQwen3MoeMetadata, setTokenizerMetadata } from './qwen3moe-gguf.ts';
import type { Qwen3MoeTensor } from './qwen3moe-gguf.ts';
import { checkAllUsed, decode, planSegments, qwen3moeShapeFromConfig } from './hf-qwen3moe.ts';
import type { Segment } from './hf-qwen3moe.ts';
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

/** Values per chunk of rows: 4 MiB of float32. */
const CHUNK_VALUES = 1 << 20;

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
    plans.push({ t, type, segs: await planSegments(model, t, qc?.weight_block_size) });
  }
  checkAllUsed(model, plans.map((p) => p.segs));
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
