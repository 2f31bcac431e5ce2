// Native tensors seen from TS: a read-only mmapped file and weight handles pointing into it (or
// into native buffers). Weights never enter the JS heap; these objects only hold handles.
import { GGML_TYPES, GgmlType, ggmlRowBytes } from '../formats/ggml-types.ts';
import type { TensorSegment } from '../formats/gguf-read.ts';
import { addon } from './addon.ts';

/** Opaque native handle (a tagged N-API external). */
export type NativeHandle = { readonly __native: unique symbol };

/** A whole file mmapped read-only (MAP_SHARED): tensors are views into the page cache. */
export class MappedFile {
  readonly path: string;
  readonly size: number;
  #handle: NativeHandle | undefined;

  private constructor(path: string, handle: NativeHandle) {
    this.path = path;
    this.#handle = handle;
    this.size = addon().mappedFileSize(handle) as number;
  }

  /** Maps `path`; throws with the path and the OS error if it cannot. */
  static open(path: string): MappedFile {
    return new MappedFile(path, addon().mappedFileOpen(path) as NativeHandle);
  }

  /** The native handle; throws if closed. */
  get handle(): NativeHandle {
    if (!this.#handle) throw new Error(`${this.path}: mapped file was closed`);
    return this.#handle;
  }

  /** madvise over [offset, offset + length): 'random' for sparsely read experts, 'willneed' to prefetch. */
  advise(offset: number, length: number, advice: 'willneed' | 'random' | 'sequential' | 'dontneed'): void {
    addon().mappedFileAdvise(this.handle, offset, length, advice);
  }

  /** Drops this reference; weights made from the file keep the mapping alive until disposed. Idempotent. */
  close(): void {
    if (this.#handle) addon().mappedFileClose(this.#handle);
    this.#handle = undefined;
  }
}

/** A weight tensor in native memory: type and dims in ggml order (dims[0] = row length). */
export class NativeWeight {
  readonly type: GgmlType;
  readonly dims: readonly number[];
  #handle: NativeHandle | undefined;

  constructor(handle: NativeHandle, type: GgmlType, dims: readonly number[]) {
    this.#handle = handle;
    this.type = type;
    this.dims = [...dims];
  }

  /** The native handle; throws if disposed. */
  get handle(): NativeHandle {
    if (!this.#handle) throw new Error(`weight ${typeName(this.type)} [${this.dims.join(', ')}] was disposed`);
    return this.#handle;
  }

  get nBytes(): number {
    return ggmlRowBytes(this.type, this.dims[0]) * this.dims.slice(1).reduce((a, b) => a * b, 1);
  }

  /** Rows [row0, row0 + nRows) (over all dims) decoded to F32, e.g. embedding rows. */
  dequantizeRows(row0: number, nRows: number): Float32Array {
    return addon().dequantizeRows(this.handle, row0, nRows) as Float32Array;
  }

  /** Releases this handle. Ops loaded from it keep their own reference. Idempotent. */
  dispose(): void {
    if (this.#handle) addon().weightDispose(this.#handle);
    this.#handle = undefined;
  }
}

function typeName(type: GgmlType): string {
  return GGML_TYPES.get(type)?.name ?? `type ${type}`;
}

function checkDims(type: GgmlType, dims: readonly number[], where: string): void {
  if (dims.length < 1 || dims.length > 4 || dims.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new RangeError(`${where}: dims must be 1 to 4 positive integers, got [${dims.join(', ')}]`);
  }
  ggmlRowBytes(type, dims[0]); // throws if the row is not a whole number of blocks
}

/** A weight viewing `file` bytes [offset, offset + size); throws if it does not fit inside the file. */
export function weightFromFile(file: MappedFile, offset: number, type: GgmlType, dims: readonly number[]): NativeWeight {
  checkDims(type, dims, file.path);
  const h = addon().weightFromFile(file.handle, offset, type, [...dims]) as NativeHandle;
  return new NativeWeight(h, type, dims);
}

/** A weight copied from bytes in ggml's layout into a native 64-byte-aligned buffer (tests, synthetic models). */
export function weightFromBytes(bytes: Uint8Array, type: GgmlType, dims: readonly number[]): NativeWeight {
  checkDims(type, dims, 'weightFromBytes');
  const h = addon().weightFromBytes(bytes, type, [...dims]) as NativeHandle;
  return new NativeWeight(h, type, dims);
}

/**
 * A weight whose bytes are `segments` concatenated (ranges of `files`, matched by path), copied in
 * parallel into one native 64-byte-aligned buffer: per-expert HF tensors stacked into one 3-D weight.
 * FP8 segments (with `fp8Scale`, all or none; `type` BF16) are dequantized to BF16 on the way.
 * `name` (the tensor) labels errors.
 */
export function weightGather(files: readonly MappedFile[], segments: readonly TensorSegment[], type: GgmlType, dims: readonly number[], name: string): NativeWeight {
  checkDims(type, dims, name);
  const index = new Map(files.map((f, i) => [f.path, i]));
  const ranges = segments.flatMap((s) => {
    const i = index.get(s.file);
    if (i === undefined) throw new Error(`weightGather: tensor ${name}: ${s.file} is not among the mapped files`);
    return [i, s.offset, s.nBytes];
  });
  const handles = files.map((f) => f.handle);
  const scales = segments.map((s) => s.fp8Scale);
  if (scales.every((s) => s === undefined)) return new NativeWeight(addon().weightGather(handles, ranges, type, [...dims], name) as NativeHandle, type, dims);
  const first = scales[0];
  if (type !== GgmlType.BF16 || !first || scales.some((s) => !s || s.blockRows !== first.blockRows || s.blockCols !== first.blockCols || s.cols !== dims[0])) {
    throw new RangeError(`weightGather: tensor ${name}: FP8 segments need type BF16, and every segment FP8 with the same blocks and rows of ${dims[0]}`);
  }
  const h = addon().weightGatherFp8(handles, ranges, scales.map((s) => s!.values), first.blockRows, first.blockCols, [...dims], name) as NativeHandle;
  return new NativeWeight(h, type, dims);
}
