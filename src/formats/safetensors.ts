// Safetensors reader for Hugging Face model directories: config.json, model.safetensors or
// model.safetensors.index.json with shards. Like the GGUF reader it reads and validates headers
// only; tensor data stays on disk for the native layer to map (or for convert to stream).
//
// File layout (huggingface/safetensors README): u64 LE header length N, N bytes of JSON
// { name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": {...} }, then the data;
// offsets are relative to the end of the header and must cover the data without holes.
import { open, readFile, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { FormatError } from './errors.ts';

/** Bytes per element of each safetensors dtype. */
export const SAFETENSORS_DTYPES: ReadonlyMap<string, number> = new Map([
  ['F64', 8], ['F32', 4], ['F16', 2], ['BF16', 2], ['F8_E4M3', 1], ['F8_E5M2', 1],
  ['I64', 8], ['I32', 4], ['I16', 2], ['I8', 1], ['U64', 8], ['U32', 4], ['U16', 2], ['U8', 1], ['BOOL', 1],
]);

export interface SafetensorsTensorInfo {
  name: string;
  dtype: string;
  /** PyTorch order: shape[last] is the fastest-varying (reverse of ggml dims). */
  shape: number[];
  nElements: number;
  file: string;
  /** Absolute byte offset of the data in `file`. */
  offset: number;
  nBytes: number;
}

export interface SafetensorsFile {
  file: string;
  size: number;
  metadata: Record<string, string>;
  tensors: SafetensorsTensorInfo[];
}

export interface SafetensorsModel {
  dir: string;
  /** config.json as parsed; model code checks the fields it uses. */
  config: Record<string, unknown>;
  files: string[];
  tensors: Map<string, SafetensorsTensorInfo>;
}

/** The reference implementation refuses larger headers too. */
const MAX_HEADER_BYTES = 100 << 20;

const fail = (file: string, msg: string, where: { tensor?: string; key?: string; offset?: number } = {}): never => {
  throw new FormatError(`${file}: ${msg}`, { file, ...where });
};

async function readFully(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  for (let got = 0; got < buf.length; ) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + got}`);
    got += bytesRead;
  }
}

/** Reads and validates one .safetensors file's header. */
export async function readSafetensorsFile(file: string): Promise<SafetensorsFile> {
  const size = (await stat(file)).size;
  const fh = await open(file, 'r');
  let json: unknown;
  let dataStart: number;
  try {
    if (size < 8) fail(file, `the file has ${size} bytes, fewer than the 8-byte header length; the file looks truncated`, { offset: 0 });
    const lenBuf = Buffer.alloc(8);
    await readFully(fh, lenBuf, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
      fail(file, `header length is ${n} bytes but ${size - 8 > MAX_HEADER_BYTES ? `the limit is ${MAX_HEADER_BYTES}` : `only ${size - 8} bytes follow`}; not a safetensors file or truncated`, { offset: 0 });
    }
    const header = Buffer.alloc(Number(n));
    await readFully(fh, header, 8);
    dataStart = 8 + header.length;
    try {
      json = JSON.parse(header.toString('utf8'));
    } catch (e) {
      fail(file, `header is not valid JSON (${(e as Error).message})`, { offset: 8 });
    }
  } finally {
    await fh.close();
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail(file, 'header must be a JSON object', { offset: 8 });

  const dataBytes = size - dataStart!;
  const tensors: SafetensorsTensorInfo[] = [];
  let metadata: Record<string, string> = {};
  const ranges: Array<[number, number, string]> = [];
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const at = (msg: string): never => fail(file, `tensor "${name}": ${msg}`, { tensor: name });
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== 'object' || e === null) at('header entry is not an object');
    const elemBytes = typeof e.dtype === 'string' ? SAFETENSORS_DTYPES.get(e.dtype) : undefined;
    if (elemBytes === undefined) at(`unknown dtype ${JSON.stringify(e.dtype)} (known: ${[...SAFETENSORS_DTYPES.keys()].join(', ')})`);
    const dtype = e.dtype as string;
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) at(`shape ${JSON.stringify(e.shape)} is not a list of non-negative integers`);
    const shape = e.shape as number[];
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[1] < off[0]) {
      at(`data_offsets ${JSON.stringify(off)} is not [begin, end] with begin <= end`);
    }
    const [begin, end] = off as [number, number];
    const nElements = shape.reduce((a, b) => a * b, 1);
    if (end - begin !== nElements * elemBytes!) {
      at(`shape [${shape.join(', ')}] of ${dtype} needs ${nElements * elemBytes!} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`);
    }
    if (end > dataBytes) {
      fail(file, `tensor "${name}" ends at byte ${dataStart! + end} but the file has ${size} bytes; the file looks truncated`, { tensor: name, offset: dataStart! + begin });
    }
    tensors.push({ name, dtype, shape, nElements, file, offset: dataStart! + begin, nBytes: end - begin });
    ranges.push([begin, end, name]);
  }
  // The format requires the tensors to tile the data exactly: no holes, no overlaps.
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let expected = 0;
  for (const [begin, end, name] of ranges) {
    if (begin !== expected) {
      fail(file, `tensor "${name}" data starts at ${begin} but the previous tensor ends at ${expected} (${begin < expected ? 'overlap' : 'hole'} in the data)`, { tensor: name, offset: dataStart! + begin });
    }
    expected = end;
  }
  if (expected !== dataBytes) fail(file, `tensors cover ${expected} data bytes but the file has ${dataBytes} after the header`, { offset: dataStart! + expected });
  return { file, size, metadata, tensors };
}

async function readJson(file: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new FormatError(`${file}: cannot read ${what} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { file });
  }
  try {
    const v = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new FormatError(`${file}: ${what} is not valid JSON (${(e as Error).message})`, { file });
  }
}

/**
 * Reads a Hugging Face model directory: config.json plus model.safetensors, or the shards listed
 * in model.safetensors.index.json. Every shard header is validated; reads no tensor data.
 */
export async function readSafetensorsDir(dir: string): Promise<SafetensorsModel> {
  const config = await readJson(join(dir, 'config.json'), 'config.json');
  const indexPath = join(dir, 'model.safetensors.index.json');
  const single = join(dir, 'model.safetensors');
  const exists = (p: string) => stat(p).then(() => true, () => false);
  const tensors = new Map<string, SafetensorsTensorInfo>();
  if (await exists(indexPath)) {
    const index = await readJson(indexPath, 'the shard index');
    const map = index.weight_map;
    if (typeof map !== 'object' || map === null) throw new FormatError(`${indexPath}: no "weight_map" object`, { file: indexPath, key: 'weight_map' });
    const byShard = new Map<string, string[]>();
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string' || shard !== basename(shard)) {
        throw new FormatError(`${indexPath}: weight_map["${name}"] must be a file name in the same folder, got ${JSON.stringify(shard)}`, { file: indexPath, key: `weight_map.${name}` });
      }
      byShard.set(shard, [...(byShard.get(shard) ?? []), name]);
    }
    const files: string[] = [];
    for (const [shard, names] of [...byShard].sort((a, b) => a[0].localeCompare(b[0]))) {
      const path = join(dir, shard);
      if (!(await exists(path))) {
        throw new FormatError(`${indexPath}: shard ${shard} is missing (it holds ${names.length} tensors, e.g. "${names[0]}")`, { file: path, tensor: names[0] });
      }
      const f = await readSafetensorsFile(path);
      const inShard = new Map(f.tensors.map((t) => [t.name, t]));
      for (const name of names) {
        const t = inShard.get(name);
        if (!t) throw new FormatError(`${indexPath}: weight_map puts tensor "${name}" in ${shard}, but that shard has no such tensor`, { file: path, tensor: name });
        tensors.set(name, t);
      }
      files.push(path);
    }
    return { dir, config, files, tensors };
  }
  if (!(await exists(single))) {
    throw new FormatError(`${dir}: no model.safetensors or model.safetensors.index.json; not a Hugging Face safetensors model folder`, { file: dir });
  }
  const f = await readSafetensorsFile(single);
  for (const t of f.tensors) tensors.set(t.name, t);
  return { dir, config, files: [single], tensors };
}

/**
 * Reads `n` bytes at `offset` of a tensor's data (streaming for convert; small tensors for tests).
 * The engine maps safetensors natively and does not call this.
 */
export async function readSafetensorsRange(t: SafetensorsTensorInfo, offset = 0, n = t.nBytes - offset): Promise<Uint8Array> {
  if (offset < 0 || offset + n > t.nBytes) throw new Error(`tensor "${t.name}": range ${offset}+${n} outside its ${t.nBytes} bytes`);
  const fh = await open(t.file, 'r');
  try {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await fh.read(out, got, n - got, t.offset + offset + got);
      if (bytesRead === 0) throw new FormatError(`${t.file}: tensor "${t.name}" data ends early at byte ${t.offset + offset + got} (file changed since it was read?)`, { file: t.file, tensor: t.name });
      got += bytesRead;
    }
    return out;
  } finally {
    await fh.close();
  }
}
