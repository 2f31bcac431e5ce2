// Safetensors writer for small files: test fixtures (HF-format model folders) and tools.
// Tensors are held in memory; the file is written to `path.tmp` and renamed when complete.
import { open, rename, rm } from 'node:fs/promises';
import { SAFETENSORS_DTYPES } from './safetensors.ts';

export interface SafetensorsInput {
  name: string;
  dtype: string;
  /** PyTorch order. */
  shape: number[];
  data: Uint8Array;
}

/** Writes `tensors` (in the given order) and optional `__metadata__` strings to `path`. */
export async function writeSafetensors(path: string, tensors: SafetensorsInput[], metadata?: Record<string, string>): Promise<void> {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const t of tensors) {
    const size = SAFETENSORS_DTYPES.get(t.dtype);
    if (size === undefined) throw new Error(`tensor "${t.name}": unknown dtype ${t.dtype}`);
    const n = t.shape.reduce((a, b) => a * b, 1) * size;
    if (n !== t.data.length) throw new Error(`tensor "${t.name}": shape [${t.shape.join(', ')}] of ${t.dtype} needs ${n} bytes, got ${t.data.length}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  // Pad the JSON with spaces to a multiple of 8 so the data is 8-byte aligned, as the reference writer does.
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const tmp = path + '.tmp';
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(Buffer.concat([head, Buffer.from(json)]));
    for (const t of tensors) await fh.writeFile(t.data); // writeFile: whole buffer, from the current position
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
}
