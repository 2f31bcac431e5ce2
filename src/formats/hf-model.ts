// A Hugging Face Qwen3-MoE folder seen as a GgufModel, so a loader can run it without converting:
// metadata exactly as `mixtile convert` writes it (qwen3moe.*, tokenizer.*), tensors under their
// GGUF names and ggml dims in the checkpoint's own dtype (BF16/F16/F32), pointing at the
// safetensors bytes. A tensor stored in one piece has file/fileIndex/offset like a GGUF tensor;
// per-expert weights, stacked into 3-D by GGUF, carry `segments` instead (see GgufTensorInfo).
// FP8 tensors (Qwen's FP8 releases) are BF16 here, with segments carrying their block scales:
// the loader dequantizes them to the BF16 values `mixtile convert` would write.
import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { FormatError } from './errors.ts';
import { GgmlType } from './ggml-types.ts';
import { GGUFValueType } from './gguf-read.ts';
import type { GgufModel, GgufMetaType, GgufTensorInfo, GgufValue } from './gguf-read.ts';
import { GgufWriter } from './gguf-write.ts';
import { LlamaFileType } from './file-types.ts';
import { readSafetensorsDir, SAFETENSORS_DTYPES } from './safetensors.ts';
import { qwen3moeTensors, setQwen3MoeMetadata, setTokenizerMetadata } from './qwen3moe-gguf.ts';
import { checkAllUsed, planSegments, qwen3moeShapeFromConfig } from './hf-qwen3moe.ts';
import { hfTokenizerMetadata, HF_TOKENIZER_GGUF_TYPES } from './hf-tokenizer.ts';

const DTYPE_TYPES: Readonly<Record<string, GgmlType>> = { BF16: GgmlType.BF16, F16: GgmlType.F16, F32: GgmlType.F32 };
const DTYPE_FILE_TYPES: Readonly<Record<string, LlamaFileType>> = { BF16: LlamaFileType.MOSTLY_BF16, F16: LlamaFileType.MOSTLY_F16, F32: LlamaFileType.ALL_F32 };

/** Reads `dir` (config, shard headers, tokenizer) into a GgufModel view; reads no tensor data. */
export async function openHfModel(dir: string): Promise<GgufModel> {
  const st = await readSafetensorsDir(dir);
  const { shape, ropeScaling } = qwen3moeShapeFromConfig(st.config, resolve(dir, 'config.json'));
  const layout = qwen3moeTensors(shape);
  const qc = st.config.quantization_config as { weight_block_size?: [number, number] } | undefined;
  const tensors = new Map<string, GgufTensorInfo>();
  const planned = [];
  for (const t of layout) {
    const segs = await planSegments(st, t, qc?.weight_block_size);
    planned.push(segs);
    const dtype = segs[0].src.dtype;
    const fp8 = dtype === 'F8_E4M3';
    const type = fp8 ? GgmlType.BF16 : DTYPE_TYPES[dtype];
    if (type === undefined || segs.some((s) => s.src.dtype !== dtype)) {
      const bad = segs.find((s) => s.src.dtype !== dtype) ?? segs[0];
      throw new FormatError(`${bad.src.file}: tensor "${bad.src.name}" is ${bad.src.dtype}; running a folder directly needs BF16, F16, F32 or F8_E4M3 weights, the same dtype for every part of ${t.name}`, { file: bad.src.file, tensor: bad.src.name });
    }
    const elem = SAFETENSORS_DTYPES.get(dtype)!;
    const ranges = segs.map((s) => ({
      file: s.src.file,
      offset: s.src.offset + s.start * elem,
      nBytes: s.count * elem,
      ...(s.scale ? { fp8Scale: { values: s.scale.values, blockRows: s.scale.bh, blockCols: s.scale.bw, cols: s.scale.cols } } : {}),
    }));
    // FP8 must be converted at load, so even a one-piece FP8 tensor goes through segments.
    const one = ranges.length === 1 && !fp8;
    tensors.set(t.name, {
      name: t.name,
      type,
      dims: t.dims,
      nElements: t.dims.reduce((a, b) => a * b, 1),
      fileIndex: one ? st.files.indexOf(ranges[0].file) : -1,
      file: ranges[0].file,
      offset: one ? ranges[0].offset : -1,
      nBytes: ranges.reduce((a, r) => a + r.nBytes, 0) * (fp8 ? 2 : 1),
      ...(one ? {} : { segments: ranges }),
    });
  }

  checkAllUsed(st, planned);

  // The header convert would write, built by the same code through an unused writer.
  const w = new GgufWriter(resolve(dir, '(in-memory header)'));
  const embd = tensors.get('token_embd.weight')!;
  const fileType = DTYPE_FILE_TYPES[embd.type === GgmlType.BF16 ? 'BF16' : embd.type === GgmlType.F16 ? 'F16' : 'F32'];
  setQwen3MoeMetadata(w, shape, { name: basename(resolve(dir)), fileType, ropeScaling });
  setTokenizerMetadata(w, await hfTokenizerMetadata(dir, st.config, shape.vocab), HF_TOKENIZER_GGUF_TYPES, shape.vocab);
  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, GgufMetaType>();
  for (const [key, e] of w.metadataEntries()) {
    // As a file would store them: FLOAT32 values rounded to float32 (rms eps 1e-6 is not exact).
    const f32 = (v: GgufValue) => (typeof v === 'number' ? Math.fround(v) : v);
    const value = e.type === GGUFValueType.FLOAT32 ? f32(e.value) : e.itemType === GGUFValueType.FLOAT32 ? (e.value as GgufValue[]).map(f32) : e.value;
    metadata.set(key, value);
    metadataTypes.set(key, e.itemType === undefined ? { type: e.type } : { type: e.type, itemType: e.itemType });
  }
  return {
    files: st.files,
    fileSizes: await Promise.all(st.files.map(async (f) => (await stat(f)).size)),
    version: 3,
    alignment: 32,
    metadata,
    metadataTypes,
    tensors,
  };
}
