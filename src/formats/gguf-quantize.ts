// `mixtile quantize`: re-encode a GGUF into another file type the way llama-quantize does (same
// per-tensor choices, reference quantizers, no imatrix). Streams rows from the input, quantizes on
// worker threads and writes OUT.tmp, renamed when complete.
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { FormatError } from './errors.ts';
import { GGML_TYPES, GgmlType } from './ggml-types.ts';
import { GGUFValueType, readGguf } from './gguf-read.ts';
import type { GgufTensorInfo, GgufValue } from './gguf-read.ts';
import { GgufWriter } from './gguf-write.ts';
import { parseFileType, tensorTypeFor } from './file-types.ts';
import { QUANT_TYPES, dequantize, quantize } from './quant.ts';
import { QuantPool, quantizeOrdered } from './quant-pool.ts';

export interface QuantizeOptions {
  input: string;
  out: string;
  /** F32 | F16 | BF16 | Q8_0 | Q4_K_M | Q4_K_S | Q5_K_M | Q5_K_S | Q6_K */
  fileType: string;
  /** Worker threads (default: all cores). */
  threads?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Keys llama-quantize drops: the output is one file. */
const DROPPED_KEYS = new Set(['split.no', 'split.count', 'split.tensors.count']);
const FLOAT_TYPES: ReadonlySet<GgmlType> = new Set([GgmlType.F32, GgmlType.F16, GgmlType.BF16]);
const CHUNK_VALUES = 1 << 20;

/** Source rows of one tensor, chunk by chunk, as raw bytes. */
async function* rowChunks(t: GgufTensorInfo, fh: FileHandle): AsyncGenerator<{ bytes: Uint8Array; n: number }> {
  const info = GGML_TYPES.get(t.type)!;
  const rowLength = t.dims[0];
  const rowBytes = (rowLength / info.blockSize) * info.blockBytes;
  const nRows = t.nElements / rowLength;
  const rowsPerChunk = Math.max(1, Math.floor(CHUNK_VALUES / rowLength));
  for (let r = 0; r < nRows; r += rowsPerChunk) {
    const rows = Math.min(rowsPerChunk, nRows - r);
    const bytes = new Uint8Array(rows * rowBytes);
    for (let got = 0; got < bytes.length; ) {
      const { bytesRead } = await fh.read(bytes, got, bytes.length - got, t.offset + r * rowBytes + got);
      if (bytesRead === 0) throw new FormatError(`${t.file}: tensor "${t.name}" data ends early`, { file: t.file, tensor: t.name });
      got += bytesRead;
    }
    yield { bytes, n: rows * rowLength };
  }
}

/** Writes `opts.input` re-encoded as `opts.fileType` to `opts.out`. */
export async function quantizeGguf(opts: QuantizeOptions): Promise<void> {
  const model = await readGguf(opts.input);
  const fileType = parseFileType(opts.fileType);
  const arch = model.metadata.get('general.architecture');
  const num = (k: string, fallback: number) => {
    const v = model.metadata.get(`${arch}.${k}`);
    return typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : fallback;
  };
  const ctx = { nLayers: num('block_count', 1), nExperts: num('expert_count', 0), tiedEmbeddings: !model.tensors.has('output.weight') };
  const plans = [...model.tensors.values()].map((t) => {
    if (!QUANT_TYPES.has(t.type)) {
      throw new FormatError(`${t.file}: tensor "${t.name}" is ${GGML_TYPES.get(t.type)!.name}, which mixtile cannot decode (it reads ${[...QUANT_TYPES].map((x) => GGML_TYPES.get(x)!.name).join(', ')})`, { file: t.file, tensor: t.name });
    }
    // Tensors llama-quantize leaves alone (norms, router, 1-D) keep their type; the rest follow the mix.
    const chosen = tensorTypeFor(fileType, t.name, { ...ctx, dims: t.dims });
    const keep = chosen === GgmlType.F32 && t.type !== GgmlType.F32 && (t.dims.length < 2 || t.name.endsWith('_norm.weight') || t.name.includes('ffn_gate_inp'));
    const type = keep ? t.type : chosen;
    if (!QUANT_TYPES.has(type)) {
      throw new Error(`quantize: ${t.name} [${t.dims.join(', ')}] would be ${GGML_TYPES.get(type)!.name} (rows of ${t.dims[0]} do not fit K-quant blocks), which mixtile cannot write; choose a float type or Q8_0`);
    }
    return { t, type };
  });

  const w = new GgufWriter(opts.out, { alignment: model.alignment });
  const handles = model.files.map(() => undefined as FileHandle | undefined);
  let pool: QuantPool | undefined;
  try {
    for (const [key, value] of model.metadata) {
      if (DROPPED_KEYS.has(key) || key === 'general.alignment') continue;
      const mt = model.metadataTypes.get(key)!;
      w.setMeta(key, value as GgufValue, mt.type === GGUFValueType.ARRAY ? mt.itemType : mt.type);
    }
    w.setMeta('general.file_type', fileType, GGUFValueType.UINT32);
    w.setMeta('general.quantization_version', 2, GGUFValueType.UINT32);
    for (const p of plans) w.addTensor(p.t.name, p.type, p.t.dims);
    const total = plans.reduce((s, p) => s + w.tensorBytes(p.t.name), 0);
    await w.begin();
    let done = 0;
    for (const { t, type } of plans) {
      const fh = (handles[t.fileIndex] ??= await open(t.file, 'r'));
      const src = rowChunks(t, fh);
      const floats = async function* () {
        for await (const c of src) yield dequantize(t.type, c.bytes, c.n);
      };
      const data =
        type === t.type
          ? (async function* () { for await (const c of src) yield c.bytes; })()
          : FLOAT_TYPES.has(type)
            ? (async function* () { for await (const x of floats()) yield quantize(type, x); })()
            : quantizeOrdered((pool ??= new QuantPool(opts.threads)), type, floats());
      const counted = async function* () {
        for await (const c of data) {
          yield c;
          done += c.length;
          opts.onProgress?.(done, total);
        }
      };
      await w.writeTensor(t.name, counted());
    }
    await w.close();
  } catch (e) {
    await w.abort();
    throw e;
  } finally {
    for (const fh of handles) await fh?.close();
    await pool?.close();
  }
}
