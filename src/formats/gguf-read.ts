// GGUF reader: header, metadata and tensor directory of a GGUF file (or a split set), every claim
// checked against the file before use. Tensor data is never read here: the native addon maps it.
//
// Layout (ggml docs/gguf.md, little-endian, v2/v3): magic "GGUF", u32 version, u64 tensor count,
// u64 kv count, kv pairs, tensor infos, padding to `general.alignment`, tensor data.
// We parse the header with chunked fs reads instead of @huggingface/gguf's parser: that parser
// silently truncates a string running past the end of the file and its errors carry no byte
// offsets. From the library we take the GGUFValueType enum.
import { open, stat, access } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { GGUFValueType } from '@huggingface/gguf';
import { FormatError } from './errors.ts';
import { GGML_TYPES, GgmlType } from './ggml-types.ts';
import { fp32ToBf16, fp8e4m3ToFp32 } from './half.ts';

export { GGUFValueType };

export type GgufValue = number | bigint | string | boolean | GgufValue[];

/** The stored GGUF type of a metadata value (arrays also carry their element type). */
export interface GgufMetaType {
  type: GGUFValueType;
  itemType?: GGUFValueType;
}

export interface GgufTensorInfo {
  name: string;
  type: GgmlType;
  /** ggml order: dims[0] = elements per row, the fastest-varying. */
  dims: number[];
  nElements: number;
  /** Index into GgufModel.files of the file holding the data. */
  fileIndex: number;
  file: string;
  /** Absolute byte offset of the data in `file`. */
  offset: number;
  nBytes: number;
  /**
   * Only for models read from Hugging Face folders (hf-model.ts): the data is these byte ranges
   * concatenated (per-expert tensors stacked into one 3-D tensor). When set, fileIndex and offset
   * are -1 and a loader must gather the ranges; GGUF files never set it.
   */
  segments?: TensorSegment[];
}

/** A byte range of one file. */
export interface TensorSegment {
  file: string;
  offset: number;
  nBytes: number;
  /**
   * Set for FP8 checkpoints: the range is F8_E4M3 bytes of a [nBytes / cols, cols] matrix, element
   * (r, c) = fp8 * values[floor(r / blockRows) * ceil(cols / blockCols) + floor(c / blockCols)], and
   * the tensor (type BF16) holds those values rounded to BF16.
   */
  fp8Scale?: Fp8BlockScale;
}

export interface Fp8BlockScale {
  values: Float32Array;
  blockRows: number;
  blockCols: number;
  cols: number;
}

export interface GgufModel {
  files: string[];
  fileSizes: number[];
  version: number;
  alignment: number;
  /** Metadata of the first file (for split sets, as llama.cpp does). u64/i64 values are bigints. */
  metadata: Map<string, GgufValue>;
  metadataTypes: Map<string, GgufMetaType>;
  /** All tensors of all parts, in file order. */
  tensors: Map<string, GgufTensorInfo>;
}

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** Limits that keep a lying header from making us allocate or loop without end. */
const MAX_KEY_BYTES = 65535; // gguf.md: keys are at most 2^16-1 bytes
const MAX_STRING_BYTES = 64 << 20;
const MAX_ARRAY_LENGTH = 1 << 24;
const MAX_TENSOR_NAME_BYTES = 63; // GGML_MAX_NAME = 64 including the terminating NUL
const MAX_DIMS = 4; // GGML_MAX_DIMS
/** Smallest possible kv pair (8-byte key length, 1-byte key, type, 1-byte value) and tensor info. */
const MIN_KV_BYTES = 14;
const MIN_TENSOR_INFO_BYTES = 33;
const CHUNK_BYTES = 1 << 20;

const SCALAR_BYTES: Partial<Record<GGUFValueType, number>> = {
  [GGUFValueType.UINT8]: 1,
  [GGUFValueType.INT8]: 1,
  [GGUFValueType.UINT16]: 2,
  [GGUFValueType.INT16]: 2,
  [GGUFValueType.UINT32]: 4,
  [GGUFValueType.INT32]: 4,
  [GGUFValueType.FLOAT32]: 4,
  [GGUFValueType.BOOL]: 1,
  [GGUFValueType.UINT64]: 8,
  [GGUFValueType.INT64]: 8,
  [GGUFValueType.FLOAT64]: 8,
};

/** Sequential reader over a file handle that keeps one chunk in memory. */
class ChunkReader {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  /** What is being read, for error messages: 'metadata key "x"', 'tensor info #3'. */
  ctx = 'header';

  constructor(
    private readonly fh: FileHandle,
    readonly file: string,
    readonly size: number,
  ) {}

  fail(message: string, at = this.pos): never {
    throw new FormatError(`${this.file}: ${this.ctx} at byte ${at}: ${message}`, { file: this.file, offset: at });
  }

  has(n: number): boolean {
    return this.pos + n <= this.bufStart + this.buf.length;
  }

  /** Makes bytes [pos, pos + n) readable; `what` names them if the file ends first. */
  async need(n: number, what: string): Promise<void> {
    if (this.has(n)) return;
    if (this.pos + n > this.size) {
      this.fail(`${what} needs ${n} bytes but the file ends at byte ${this.size}; the file looks truncated`);
    }
    const len = Math.min(Math.max(n, CHUNK_BYTES), this.size - this.pos);
    const buf = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await this.fh.read(buf, got, len - got, this.pos + got);
      if (bytesRead === 0) this.fail(`file shrank while reading (expected ${this.size} bytes)`, this.pos + got);
      got += bytesRead;
    }
    this.buf = buf;
    this.bufStart = this.pos;
  }

  private at(n: number): number {
    const o = this.pos - this.bufStart;
    this.pos += n;
    return o;
  }
  u8 = () => this.buf.readUInt8(this.at(1));
  i8 = () => this.buf.readInt8(this.at(1));
  u16 = () => this.buf.readUInt16LE(this.at(2));
  i16 = () => this.buf.readInt16LE(this.at(2));
  u32 = () => this.buf.readUInt32LE(this.at(4));
  i32 = () => this.buf.readInt32LE(this.at(4));
  f32 = () => this.buf.readFloatLE(this.at(4));
  f64 = () => this.buf.readDoubleLE(this.at(8));
  u64 = () => this.buf.readBigUInt64LE(this.at(8));
  i64 = () => this.buf.readBigInt64LE(this.at(8));
  utf8(n: number): string {
    const o = this.at(n);
    return this.buf.toString('utf8', o, o + n);
  }

  /** A u64 that must fit a JS number and be at most `max`. */
  async count(what: string, max: number): Promise<number> {
    await this.need(8, what);
    const at = this.pos;
    const v = this.u64();
    if (v > BigInt(max)) this.fail(`${what} is ${v}, more than the ${max} this file can hold`, at);
    return Number(v);
  }

  async string(what: string, maxBytes: number): Promise<string> {
    const n = await this.count(`${what} length`, Math.min(maxBytes, this.size - this.pos - 8));
    await this.need(n, what);
    return this.utf8(n);
  }
}

function scalar(r: ChunkReader, type: GGUFValueType): number | bigint | boolean {
  switch (type) {
    case GGUFValueType.UINT8: return r.u8();
    case GGUFValueType.INT8: return r.i8();
    case GGUFValueType.UINT16: return r.u16();
    case GGUFValueType.INT16: return r.i16();
    case GGUFValueType.UINT32: return r.u32();
    case GGUFValueType.INT32: return r.i32();
    case GGUFValueType.FLOAT32: return r.f32();
    case GGUFValueType.BOOL: return r.u8() !== 0;
    case GGUFValueType.UINT64: return r.u64();
    case GGUFValueType.INT64: return r.i64();
    case GGUFValueType.FLOAT64: return r.f64();
    default: throw new Error(`not a scalar GGUF type: ${type}`);
  }
}

function typeName(t: number): string {
  return GGUFValueType[t] ?? `unknown(${t})`;
}

async function readValue(r: ChunkReader, type: GGUFValueType): Promise<{ value: GgufValue; meta: GgufMetaType }> {
  if (type === GGUFValueType.STRING) return { value: await r.string('string', MAX_STRING_BYTES), meta: { type } };
  const size = SCALAR_BYTES[type];
  if (size !== undefined) {
    await r.need(size, typeName(type));
    return { value: scalar(r, type), meta: { type } };
  }
  if (type !== GGUFValueType.ARRAY) r.fail(`unknown value type ${type} (known: 0-12)`, r.pos - 4);
  await r.need(4, 'array element type');
  const itemAt = r.pos;
  const itemType = r.u32() as GGUFValueType;
  // llama.cpp's gguf.cpp rejects arrays of arrays too; nothing real writes them.
  if (itemType === GGUFValueType.ARRAY) r.fail('arrays of arrays are not supported', itemAt);
  const itemSize = itemType === GGUFValueType.STRING ? 8 : SCALAR_BYTES[itemType];
  if (itemSize === undefined) r.fail(`unknown array element type ${itemType} (known: 0-12)`, itemAt);
  const remaining = r.size - r.pos - 8;
  const n = await r.count('array length', Math.min(MAX_ARRAY_LENGTH, Math.floor(remaining / itemSize)));
  const out: GgufValue[] = new Array(n);
  if (itemType === GGUFValueType.STRING) {
    for (let i = 0; i < n; i++) {
      if (!r.has(8)) await r.need(8, `string length of item ${i}`);
      const len = r.u64();
      if (len > BigInt(Math.min(MAX_STRING_BYTES, r.size - r.pos))) {
        r.fail(`item ${i} is a string of ${len} bytes, past the end of the file or over the ${MAX_STRING_BYTES}-byte limit`, r.pos - 8);
      }
      const nb = Number(len);
      if (!r.has(nb)) await r.need(nb, `string item ${i}`);
      out[i] = r.utf8(nb);
    }
  } else {
    await r.need(n * itemSize, `${n} array items of ${typeName(itemType)}`);
    for (let i = 0; i < n; i++) out[i] = scalar(r, itemType);
  }
  return { value: out, meta: { type, itemType } };
}

interface GgufFileHeader {
  version: number;
  alignment: number;
  metadata: Map<string, GgufValue>;
  metadataTypes: Map<string, GgufMetaType>;
  tensors: GgufTensorInfo[];
}

/** Parses and validates one GGUF file's header; `fileIndex` is its place in a split set. */
async function readGgufFile(path: string, fileIndex: number): Promise<GgufFileHeader & { size: number }> {
  const size = (await stat(path)).size;
  const fh = await open(path, 'r');
  try {
    const r: ChunkReader = new ChunkReader(fh, path, size);
    await r.need(24, 'GGUF header (magic, version, tensor and kv counts)');
    const magic = r.u32();
    if (magic !== GGUF_MAGIC) {
      const found = Buffer.from(new Uint32Array([magic]).buffer).toString('latin1');
      r.fail(`expected the magic "GGUF", found ${JSON.stringify(found)}; this is not a GGUF file`, 0);
    }
    const version = r.u32();
    if (version !== 2 && version !== 3) {
      const hint = (version & 0xffff) === 0 ? ' (a big-endian file? only little-endian GGUF is supported)' : version === 1 ? ' (GGUF v1 from before 2023-08; reconvert the model)' : '';
      r.fail(`unsupported GGUF version ${version}, expected 2 or 3${hint}`, 4);
    }
    const nTensors = await r.count('tensor count', Math.floor(size / MIN_TENSOR_INFO_BYTES));
    const nKv = await r.count('metadata kv count', Math.floor(size / MIN_KV_BYTES));
    if (24 + nTensors * MIN_TENSOR_INFO_BYTES + nKv * MIN_KV_BYTES > size) {
      r.fail(`header claims ${nTensors} tensors and ${nKv} metadata entries, which cannot fit in a ${size}-byte file`, 8);
    }

    const metadata = new Map<string, GgufValue>();
    const metadataTypes = new Map<string, GgufMetaType>();
    for (let i = 0; i < nKv; i++) {
      r.ctx = `metadata entry #${i}`;
      const keyAt = r.pos;
      const key = await r.string('key', MAX_KEY_BYTES);
      if (key.length === 0) r.fail('empty key', keyAt);
      r.ctx = `metadata key "${key}"`;
      if (metadata.has(key)) r.fail('duplicate key', keyAt);
      await r.need(4, 'value type');
      const { value, meta } = await readValue(r, r.u32() as GGUFValueType);
      metadata.set(key, value);
      metadataTypes.set(key, meta);
    }

    r.ctx = 'metadata key "general.alignment"';
    const alignValue = metadata.get('general.alignment') ?? GGUF_DEFAULT_ALIGNMENT;
    const alignment = typeof alignValue === 'bigint' ? Number(alignValue) : alignValue;
    if (typeof alignment !== 'number' || !Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
      r.fail(`alignment must be a power of two, found ${String(alignValue)}`, 0);
    }

    const infos: Array<GgufTensorInfo & { relOffset: number }> = [];
    const seen = new Set<string>();
    for (let i = 0; i < nTensors; i++) {
      r.ctx = `tensor info #${i}`;
      const nameAt = r.pos;
      const name = await r.string('tensor name', MAX_TENSOR_NAME_BYTES);
      if (name.length === 0) r.fail('empty tensor name', nameAt);
      r.ctx = `tensor "${name}"`;
      if (seen.has(name)) r.fail('duplicate tensor name', nameAt);
      seen.add(name);
      await r.need(4, 'dimension count');
      const nDims = r.u32();
      if (nDims < 1 || nDims > MAX_DIMS) r.fail(`has ${nDims} dimensions, expected 1 to ${MAX_DIMS}`, r.pos - 4);
      await r.need(8 * nDims + 12, 'dims, type and offset');
      const dims: number[] = [];
      let nElements = 1n;
      for (let d = 0; d < nDims; d++) {
        const v = r.u64();
        if (v < 1n) r.fail(`dimension ${d} is 0`, r.pos - 8);
        nElements *= v;
        if (nElements > BigInt(Number.MAX_SAFE_INTEGER)) r.fail(`has more than 2^53 elements (dimension ${d} is ${v})`, r.pos - 8);
        dims.push(Number(v));
      }
      const typeAt = r.pos;
      const type = r.u32() as GgmlType;
      const info = GGML_TYPES.get(type);
      if (!info) r.fail(`unknown ggml type ${type} (known: ${[...GGML_TYPES.keys()].join(', ')})`, typeAt);
      if (dims[0] % info.blockSize !== 0) {
        r.fail(`type ${info.name} needs rows of a multiple of ${info.blockSize} elements, but dims[0] is ${dims[0]}`, typeAt);
      }
      const offsetAt = r.pos;
      const relOffset = r.u64();
      if (relOffset > BigInt(size)) r.fail(`data offset ${relOffset} is past the end of the ${size}-byte file`, offsetAt);
      if (relOffset % BigInt(alignment) !== 0n) r.fail(`data offset ${relOffset} is not a multiple of the alignment ${alignment}`, offsetAt);
      const n = Number(nElements);
      infos.push({ name, type, dims, nElements: n, fileIndex, file: path, offset: 0, relOffset: Number(relOffset), nBytes: (n / info.blockSize) * info.blockBytes });
    }

    // Tensors follow each other in declared order, each padded to the alignment; llama.cpp
    // (gguf.cpp) requires exactly that, and it is what exposes dims or types that lie about sizes.
    const dataStart = Math.ceil(r.pos / alignment) * alignment;
    let expected = 0;
    let prev: GgufTensorInfo | undefined;
    for (const t of infos) {
      if (t.relOffset !== expected) {
        const why = prev
          ? `the tensor before it, "${prev.name}" (${GGML_TYPES.get(prev.type)!.name} [${prev.dims.join(', ')}] = ${prev.nBytes} bytes), ends at data offset ${expected} after padding`
          : 'the first tensor must start at data offset 0';
        throw new FormatError(
          `${path}: tensor "${t.name}" starts at data offset ${t.relOffset} (byte ${dataStart + t.relOffset}) but ${why}; the tensor sizes implied by dims and types do not match the offsets`,
          { file: path, tensor: t.name, offset: dataStart + t.relOffset },
        );
      }
      t.offset = dataStart + t.relOffset;
      if (t.offset + t.nBytes > size) {
        throw new FormatError(
          `${path}: tensor "${t.name}" ends at byte ${t.offset + t.nBytes} but the file has ${size} bytes; the file looks truncated`,
          { file: path, tensor: t.name, offset: t.offset },
        );
      }
      expected = t.relOffset + Math.ceil(t.nBytes / alignment) * alignment;
      prev = t;
    }
    const tensors = infos.map(({ relOffset: _, ...t }) => t);
    return { version, alignment, metadata, metadataTypes, tensors, size };
  } finally {
    await fh.close();
  }
}

/** llama.cpp's split naming: `<prefix>-00001-of-00003.gguf`. */
const SPLIT_RE = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/;

/** The paths of every part when `path` names one part of a split set, else [path]. */
export async function ggufParts(path: string): Promise<string[]> {
  const m = SPLIT_RE.exec(basename(path));
  if (!m) return [path];
  const count = Number(m[3]);
  if (count < 1) throw new FormatError(`${path}: split file name says "of ${m[3]}" parts`, { file: path });
  const parts: string[] = [];
  for (let i = 1; i <= count; i++) {
    const part = join(dirname(path), `${m[1]}-${String(i).padStart(5, '0')}-of-${m[3]}.gguf`);
    try {
      await access(part);
    } catch {
      throw new FormatError(`${path}: part ${i} of ${count} of this split model is missing (expected ${part})`, { file: part });
    }
    parts.push(part);
  }
  return parts;
}

/**
 * Reads and validates the header, metadata and tensor directory of a GGUF file; split sets
 * (`x-00001-of-00003.gguf`, any part may be named) are read as one model. Reads no tensor data.
 */
export async function readGguf(path: string): Promise<GgufModel> {
  const parts = await ggufParts(path);
  const headers = [];
  for (let i = 0; i < parts.length; i++) headers.push(await readGgufFile(parts[i], i));
  const first = headers[0];
  const tensors = new Map<string, GgufTensorInfo>();
  for (const [i, h] of headers.entries()) {
    if (parts.length > 1) {
      const no = h.metadata.get('split.no');
      if (no !== undefined && Number(no) !== i) {
        throw new FormatError(`${parts[i]}: metadata key "split.no" is ${no} but the file name says part ${i + 1} (split.no counts from 0)`, { file: parts[i], key: 'split.no' });
      }
      const cnt = h.metadata.get('split.count');
      if (cnt !== undefined && Number(cnt) !== parts.length) {
        throw new FormatError(`${parts[i]}: metadata key "split.count" is ${cnt} but the file name says ${parts.length} parts`, { file: parts[i], key: 'split.count' });
      }
    }
    for (const t of h.tensors) {
      const other = tensors.get(t.name);
      if (other) throw new FormatError(`${t.file}: tensor "${t.name}" also appears in ${other.file}`, { file: t.file, tensor: t.name });
      tensors.set(t.name, t);
    }
  }
  const splitCount = first.metadata.get('split.count');
  if (parts.length === 1 && splitCount !== undefined && Number(splitCount) > 1) {
    throw new FormatError(`${path}: metadata says this is one of ${splitCount} parts of a split model, but the file name does not follow <name>-0000N-of-0000M.gguf, so the other parts cannot be found`, { file: path, key: 'split.count' });
  }
  const total = first.metadata.get('split.tensors.count');
  if (parts.length > 1 && total !== undefined && Number(total) !== tensors.size) {
    throw new FormatError(`${parts[0]}: metadata key "split.tensors.count" is ${total} but the ${parts.length} parts hold ${tensors.size} tensors`, { file: parts[0], key: 'split.tensors.count' });
  }
  return {
    files: parts,
    fileSizes: headers.map((h) => h.size),
    version: first.version,
    alignment: first.alignment,
    metadata: first.metadata,
    metadataTypes: first.metadataTypes,
    tensors,
  };
}

function describe(v: GgufValue): string {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  const s = typeof v === 'string' ? JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v) : String(v);
  return `a ${typeof v} (${s})`;
}

function metaGet<T>(model: GgufModel, key: string, expected: string, fallback: T | undefined, check: (v: GgufValue) => T | undefined): T {
  const v = model.metadata.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new FormatError(`${model.files[0]}: metadata key "${key}" is missing; expected ${expected}`, { file: model.files[0], key });
  }
  const out = check(v);
  if (out === undefined) throw new FormatError(`${model.files[0]}: metadata key "${key}" is ${describe(v)}, expected ${expected}`, { file: model.files[0], key });
  return out;
}

/** A numeric metadata value (u64/i64 converted when exact); `fallback` when the key is absent. */
export function metaNumber(model: GgufModel, key: string, fallback?: number): number {
  return metaGet(model, key, 'a number', fallback, (v) =>
    typeof v === 'number' ? v : typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined,
  );
}

export function metaString(model: GgufModel, key: string, fallback?: string): string {
  return metaGet(model, key, 'a string', fallback, (v) => (typeof v === 'string' ? v : undefined));
}

export function metaBool(model: GgufModel, key: string, fallback?: boolean): boolean {
  return metaGet(model, key, 'a bool', fallback, (v) => (typeof v === 'boolean' ? v : undefined));
}

export function metaArray(model: GgufModel, key: string, fallback?: GgufValue[]): GgufValue[] {
  return metaGet(model, key, 'an array', fallback, (v) => (Array.isArray(v) ? v : undefined));
}

/** Tensors larger than this are refused by readTensorBytes: they belong in native memory. */
const MAX_JS_TENSOR_BYTES = 512 << 20;

/**
 * Reads one tensor's raw bytes into the JS heap. ONLY for tests, reference code and small tensors
 * (norms, tokenizer-sized data); the engine maps tensor data natively and never calls this.
 */
export async function readTensorBytes(model: GgufModel, name: string): Promise<Uint8Array> {
  const t = model.tensors.get(name);
  if (!t) throw new FormatError(`${model.files[0]}: no tensor named "${name}"`, { file: model.files[0], tensor: name });
  if (t.nBytes > MAX_JS_TENSOR_BYTES) {
    throw new FormatError(`${t.file}: tensor "${name}" is ${t.nBytes} bytes; readTensorBytes is for small tensors (at most ${MAX_JS_TENSOR_BYTES}), map it natively instead`, { file: t.file, tensor: name });
  }
  const out = new Uint8Array(t.nBytes);
  let at = 0;
  for (const seg of t.segments ?? [{ file: t.file, offset: t.offset, nBytes: t.nBytes }]) {
    // FP8 ranges are read apart, then widened to BF16 (2 bytes per source byte).
    const dst = seg.fp8Scale ? new Uint8Array(seg.nBytes) : out.subarray(at, at + seg.nBytes);
    const fh = await open(seg.file, 'r');
    try {
      for (let got = 0; got < seg.nBytes; ) {
        const { bytesRead } = await fh.read(dst, got, seg.nBytes - got, seg.offset + got);
        if (bytesRead === 0) throw new FormatError(`${seg.file}: tensor "${name}" data ends early at byte ${seg.offset + got} (file changed since it was read?)`, { file: seg.file, tensor: name, offset: seg.offset + got });
        got += bytesRead;
      }
    } finally {
      await fh.close();
    }
    if (seg.fp8Scale) out.set(new Uint8Array(fp8ToBf16(dst, seg.fp8Scale).buffer), at);
    at += seg.fp8Scale ? 2 * seg.nBytes : seg.nBytes;
  }
  return out;
}

/** BF16 values of FP8 bytes with block scales (see TensorSegment.fp8Scale), as `mixtile convert` rounds them. */
function fp8ToBf16(fp8: Uint8Array, s: Fp8BlockScale): Uint16Array {
  const out = new Uint16Array(fp8.length);
  const nbc = Math.ceil(s.cols / s.blockCols);
  for (let i = 0; i < fp8.length; i++) {
    const r = Math.floor(i / s.cols);
    const c = i - r * s.cols;
    out[i] = fp32ToBf16(Math.fround(fp8e4m3ToFp32(fp8[i]) * s.values[Math.floor(r / s.blockRows) * nbc + Math.floor(c / s.blockCols)]));
  }
  return out;
}
