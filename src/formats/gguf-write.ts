// GGUF writer (v3, little-endian): metadata and tensor directory first, then tensor data streamed
// in declared order with alignment padding, so memory stays bounded by one chunk of one tensor.
// Writes `path + ".tmp"` and renames it at close, so no half-written file ever carries the name.
import { open, rename, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { GGUFValueType, GGUF_DEFAULT_ALIGNMENT } from './gguf-read.ts';
import type { GgufValue } from './gguf-read.ts';
import { GGML_TYPES, GgmlType } from './ggml-types.ts';

/**
 * Keys whose values are floats even when they happen to be whole numbers (rope theta 1e6):
 * llama.cpp reads them with gguf_get_val_f32 and rejects any other stored type.
 */
const FLOAT_KEY_RE = /(\.rope\.freq_base|\.rope\.scaling\.factor|\.attention\.layer_norm_rms_epsilon|\.attention\.layer_norm_epsilon|\.expert_weights_scale|\.logit_scale)$/;

interface PendingTensor {
  name: string;
  type: GgmlType;
  dims: number[];
  nBytes: number;
}

interface MetaEntry {
  value: GgufValue;
  type: GGUFValueType;
  itemType?: GGUFValueType;
}

function inferScalarType(key: string, v: GgufValue): GGUFValueType {
  if (typeof v === 'string') return GGUFValueType.STRING;
  if (typeof v === 'boolean') return GGUFValueType.BOOL;
  if (typeof v === 'bigint') return v < 0n ? GGUFValueType.INT64 : GGUFValueType.UINT64;
  if (typeof v === 'number') {
    if (FLOAT_KEY_RE.test(key) || !Number.isInteger(v)) return GGUFValueType.FLOAT32;
    // llama.cpp stores counts and ids as u32 (gguf-py add_uint32); negatives need i32.
    return v >= 0 && v <= 0xffffffff ? GGUFValueType.UINT32 : GGUFValueType.INT32;
  }
  throw new Error(`metadata key "${key}": cannot infer a GGUF type for an array here`);
}

function inferItemType(key: string, arr: GgufValue[]): GGUFValueType {
  if (arr.length === 0) throw new Error(`metadata key "${key}": give the element type of an empty array`);
  const first = arr[0];
  if (typeof first === 'string') return GGUFValueType.STRING;
  if (typeof first === 'boolean') return GGUFValueType.BOOL;
  if (typeof first === 'bigint') return GGUFValueType.INT64;
  // gguf-py writes Python int lists as INT32 (token_type) and float lists as FLOAT32 (scores).
  return arr.every((x) => typeof x === 'number' && Number.isInteger(x)) ? GGUFValueType.INT32 : GGUFValueType.FLOAT32;
}

/** fs writes may be partial; loop until every byte is down. */
async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += (await fh.write(data, off, data.length - off)).bytesWritten;
}

/** Grows a byte buffer for the header. (room() may replace this.buf: call it before reading this.buf.) */
class ByteSink {
  private buf = Buffer.alloc(1 << 16);
  len = 0;
  private room(n: number): number {
    if (this.len + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    const at = this.len;
    this.len += n;
    return at;
  }
  u8(v: number) { const o = this.room(1); this.buf.writeUInt8(v, o); }
  i8(v: number) { const o = this.room(1); this.buf.writeInt8(v, o); }
  u16(v: number) { const o = this.room(2); this.buf.writeUInt16LE(v, o); }
  i16(v: number) { const o = this.room(2); this.buf.writeInt16LE(v, o); }
  u32(v: number) { const o = this.room(4); this.buf.writeUInt32LE(v, o); }
  i32(v: number) { const o = this.room(4); this.buf.writeInt32LE(v, o); }
  f32(v: number) { const o = this.room(4); this.buf.writeFloatLE(v, o); }
  f64(v: number) { const o = this.room(8); this.buf.writeDoubleLE(v, o); }
  u64(v: bigint | number) { const o = this.room(8); this.buf.writeBigUInt64LE(BigInt(v), o); }
  i64(v: bigint | number) { const o = this.room(8); this.buf.writeBigInt64LE(BigInt(v), o); }
  str(s: string) {
    // Reserve the UTF-8 worst case (3 bytes per UTF-16 unit), write, then trim: one pass per string.
    const at = this.room(8 + 3 * s.length);
    const n = this.buf.write(s, at + 8, 'utf8');
    this.buf.writeUInt32LE(n, at);
    this.buf.writeUInt32LE(0, at + 4);
    this.len = at + 8 + n;
  }
  pad(alignment: number) {
    const n = (alignment - (this.len % alignment)) % alignment;
    const o = this.room(n);
    this.buf.fill(0, o, this.len);
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

const INT_RANGE: Partial<Record<GGUFValueType, [number, number]>> = {
  [GGUFValueType.UINT8]: [0, 0xff],
  [GGUFValueType.INT8]: [-0x80, 0x7f],
  [GGUFValueType.UINT16]: [0, 0xffff],
  [GGUFValueType.INT16]: [-0x8000, 0x7fff],
  [GGUFValueType.UINT32]: [0, 0xffffffff],
  [GGUFValueType.INT32]: [-0x80000000, 0x7fffffff],
  [GGUFValueType.UINT64]: [0, Number.MAX_SAFE_INTEGER],
  [GGUFValueType.INT64]: [-Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
};

function badValue(key: string, type: GGUFValueType, v: GgufValue): never {
  const range = INT_RANGE[type];
  const what = typeof v === 'number' && range ? `${v} does not fit` : `a ${typeof v} cannot be stored as`;
  throw new Error(`metadata key "${key}": ${what} ${GGUFValueType[type] ?? `type ${type}`}`);
}

/** Writes one value of a scalar type (also each item of an array); checks it fits the type. */
function writeScalar(s: ByteSink, key: string, type: GGUFValueType, v: GgufValue): void {
  if (type === GGUFValueType.STRING) {
    if (typeof v !== 'string') badValue(key, type, v);
    return s.str(v);
  }
  if (type === GGUFValueType.BOOL) {
    if (typeof v !== 'boolean') badValue(key, type, v);
    return s.u8(v ? 1 : 0);
  }
  if (typeof v === 'bigint' && (type === GGUFValueType.UINT64 || type === GGUFValueType.INT64)) {
    return type === GGUFValueType.UINT64 ? s.u64(v) : s.i64(v);
  }
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number') return badValue(key, type, v);
  if (type === GGUFValueType.FLOAT32) return s.f32(n);
  if (type === GGUFValueType.FLOAT64) return s.f64(n);
  const range = INT_RANGE[type];
  if (!range || !Number.isInteger(n) || n < range[0] || n > range[1]) return badValue(key, type, v);
  switch (type) {
    case GGUFValueType.UINT8: return s.u8(n);
    case GGUFValueType.INT8: return s.i8(n);
    case GGUFValueType.UINT16: return s.u16(n);
    case GGUFValueType.INT16: return s.i16(n);
    case GGUFValueType.UINT32: return s.u32(n);
    case GGUFValueType.INT32: return s.i32(n);
    case GGUFValueType.UINT64: return s.u64(n);
    default: return s.i64(n);
  }
}

/**
 * Streams a GGUF file. Order of calls: setMeta / addTensor (any number), `await begin()`,
 * `await writeTensor()` for each tensor in the order added, `await close()`.
 * @example
 *   const w = new GgufWriter('out.gguf');
 *   w.setMeta('general.architecture', 'qwen3moe');
 *   w.addTensor('output_norm.weight', GgmlType.F32, [2048]);
 *   await w.begin(); await w.writeTensor('output_norm.weight', bytes); await w.close();
 */
export class GgufWriter {
  readonly alignment: number;
  private readonly meta = new Map<string, MetaEntry>();
  private readonly pending: PendingTensor[] = [];
  private readonly names = new Set<string>();
  private fh: FileHandle | undefined;
  private next = 0;
  private closed = false;

  constructor(
    readonly path: string,
    opts: { alignment?: number } = {},
  ) {
    this.alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
    if (!Number.isInteger(this.alignment) || this.alignment <= 0 || (this.alignment & (this.alignment - 1)) !== 0) {
      throw new Error(`GgufWriter(${path}): alignment must be a power of two, got ${this.alignment}`);
    }
    if (this.alignment !== GGUF_DEFAULT_ALIGNMENT) this.setMeta('general.alignment', this.alignment, GGUFValueType.UINT32);
  }

  /**
   * Sets a metadata value. `type` is the stored type, or for arrays the element type; when absent
   * it is inferred: integers u32 (i32 if negative), float keys and fractions f32, bigint u64,
   * integer arrays i32, number arrays f32.
   */
  setMeta(key: string, value: GgufValue, type?: GGUFValueType): void {
    if (this.fh) throw new Error(`GgufWriter(${this.path}): setMeta("${key}") after begin()`);
    if (Array.isArray(value)) {
      const itemType = type ?? inferItemType(key, value);
      if (itemType === GGUFValueType.ARRAY) throw new Error(`metadata key "${key}": arrays of arrays are not supported by llama.cpp`);
      this.meta.set(key, { value, type: GGUFValueType.ARRAY, itemType });
    } else {
      this.meta.set(key, { value, type: type ?? inferScalarType(key, value) });
    }
  }

  /** The metadata set so far with stored types, in order (for in-memory headers: hf-model.ts). */
  metadataEntries(): Array<[string, { value: GgufValue; type: GGUFValueType; itemType?: GGUFValueType }]> {
    return [...this.meta];
  }

  /** Declares a tensor; dims in ggml order (dims[0] = elements per row). */
  addTensor(name: string, type: GgmlType, dims: number[]): void {
    if (this.fh) throw new Error(`GgufWriter(${this.path}): addTensor("${name}") after begin()`);
    const info = GGML_TYPES.get(type);
    if (!info) throw new Error(`tensor "${name}": unknown ggml type ${type}`);
    if (this.names.has(name)) throw new Error(`tensor "${name}" added twice`);
    if (name.length === 0 || Buffer.byteLength(name) > 63) throw new Error(`tensor "${name}": names must be 1 to 63 bytes (GGML_MAX_NAME)`);
    if (dims.length < 1 || dims.length > 4 || dims.some((d) => !Number.isSafeInteger(d) || d < 1)) {
      throw new Error(`tensor "${name}": dims must be 1 to 4 positive integers, got [${dims.join(', ')}]`);
    }
    if (dims[0] % info.blockSize !== 0) throw new Error(`tensor "${name}": ${info.name} rows must be a multiple of ${info.blockSize}, got dims[0] = ${dims[0]}`);
    const n = dims.reduce((a, b) => a * b, 1);
    this.names.add(name);
    this.pending.push({ name, type, dims: [...dims], nBytes: (n / info.blockSize) * info.blockBytes });
  }

  /** Bytes the data of `name` must have. */
  tensorBytes(name: string): number {
    const t = this.pending.find((p) => p.name === name);
    if (!t) throw new Error(`GgufWriter(${this.path}): no tensor "${name}" was added`);
    return t.nBytes;
  }

  /** Writes the header (metadata, tensor directory, padding) to `path.tmp`. */
  async begin(): Promise<void> {
    if (this.fh) throw new Error(`GgufWriter(${this.path}): begin() called twice`);
    const s = new ByteSink();
    s.u32(0x46554747); // "GGUF"
    s.u32(3);
    s.u64(this.pending.length);
    s.u64(this.meta.size);
    for (const [key, e] of this.meta) {
      s.str(key);
      s.u32(e.type);
      if (e.type !== GGUFValueType.ARRAY) {
        writeScalar(s, key, e.type, e.value);
        continue;
      }
      const arr = e.value as GgufValue[];
      s.u32(e.itemType!);
      s.u64(arr.length);
      for (const item of arr) writeScalar(s, key, e.itemType!, item);
    }
    let offset = 0;
    for (const t of this.pending) {
      s.str(t.name);
      s.u32(t.dims.length);
      for (const d of t.dims) s.u64(d);
      s.u32(t.type);
      s.u64(offset);
      offset += Math.ceil(t.nBytes / this.alignment) * this.alignment;
    }
    s.pad(this.alignment);
    this.fh = await open(this.path + '.tmp', 'w');
    await writeAll(this.fh, s.bytes());
  }

  /**
   * Writes the data of the next tensor (tensors go in the order they were added). `data` is the
   * whole tensor or, for tensors too big to hold, an iterable of consecutive chunks.
   */
  async writeTensor(name: string, data: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
    if (!this.fh) throw new Error(`GgufWriter(${this.path}): writeTensor("${name}") before begin()`);
    const t = this.pending[this.next];
    if (!t || t.name !== name) {
      throw new Error(`GgufWriter(${this.path}): expected tensor ${t ? `"${t.name}"` : '(none, all written)'} next, got "${name}"`);
    }
    let written = 0;
    const put = async (chunk: Uint8Array) => {
      if (written + chunk.length > t.nBytes) throw new Error(`tensor "${name}": got more than its ${t.nBytes} bytes`);
      await writeAll(this.fh!, chunk);
      written += chunk.length;
    };
    if (data instanceof Uint8Array) await put(data);
    else for await (const chunk of data) await put(chunk);
    if (written !== t.nBytes) throw new Error(`tensor "${name}": got ${written} bytes, its type and dims need ${t.nBytes}`);
    const pad = (this.alignment - (t.nBytes % this.alignment)) % this.alignment;
    if (pad) await writeAll(this.fh, new Uint8Array(pad));
    this.next++;
  }

  /** Finishes the file and gives it its name; throws if a declared tensor was not written. */
  async close(): Promise<void> {
    if (!this.fh || this.closed) throw new Error(`GgufWriter(${this.path}): close() without begin() or twice`);
    if (this.next !== this.pending.length) {
      throw new Error(`GgufWriter(${this.path}): ${this.pending.length - this.next} tensors not written (next: "${this.pending[this.next].name}")`);
    }
    this.closed = true;
    await this.fh.close();
    await rename(this.path + '.tmp', this.path);
  }

  /** Drops a half-written file; safe to call in any state. */
  async abort(): Promise<void> {
    if (this.fh && !this.closed) {
      this.closed = true;
      await this.fh.close().catch(() => {});
    }
    await rm(this.path + '.tmp', { force: true });
  }
}
