// Writes a copy of a BF16 or F32 GGUF whose routed-expert weights (blk.*.ffn_{gate,up,down}_exps)
// are replaced by their AMX-INT8 quantization read back: per row, per group of G elements along K,
// scale = max|w| / 127, q = round-to-nearest-even(w * 127 / max) (as repack.cc), value q * scale,
// stored in the tensor's own type (exact in F32; BF16 rounds it once more, 2^-9 relative). Run any
// float experts path on the copy to see what INT8 weights alone cost, with activations unquantized
// (the floor of every INT8-weight scheme, whatever it does with x and h).
//   node --import tsx bench/amx/int8-weights-file.ts IN.gguf OUT.gguf [group=64]
import { copyFile, open } from 'node:fs/promises';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { readGguf } from '../../src/formats/gguf-read.ts';
import { bf16ToFp32, fp32ToBf16 } from '../../src/formats/half.ts';

const [inPath, outPath, groupArg] = process.argv.slice(2);
if (!inPath || !outPath) throw new Error('usage: int8-weights-file.ts IN.gguf OUT.gguf [group=64]');
const group = Number(groupArg ?? 64);
if (!(group === 32 || (group >= 64 && group % 64 === 0))) throw new Error(`group must be 32 or a multiple of 64, got ${group}`);

const roundEven = (v: number) => {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

const model = await readGguf(inPath);
await copyFile(inPath, outPath);
const fh = await open(outPath, 'r+');
let rewritten = 0;
const t0 = performance.now();
for (const t of model.tensors.values()) {
  if (!/^blk\.\d+\.ffn_(gate|up|down)_exps\.weight$/.test(t.name)) continue;
  if (t.type !== GgmlType.BF16 && t.type !== GgmlType.F32) throw new Error(`${t.name}: type ${t.type}, expected BF16 or F32`);
  const k = t.dims[0]!;
  if (k % group !== 0) throw new Error(`${t.name}: row of ${k} is not a whole number of groups of ${group}`);
  const esize = t.type === GgmlType.BF16 ? 2 : 4;
  const rowBytes = k * esize;
  const rowsPerChunk = Math.max(1, Math.floor((8 << 20) / rowBytes));
  const nRows = t.nElements / k;
  const buf = Buffer.alloc(rowsPerChunk * rowBytes);
  const row = new Float32Array(k);
  for (let r0 = 0; r0 < nRows; r0 += rowsPerChunk) {
    const rows = Math.min(rowsPerChunk, nRows - r0);
    const bytes = rows * rowBytes;
    await fh.read(buf, 0, bytes, t.offset + r0 * rowBytes);
    for (let r = 0; r < rows; r++) {
      const o = r * rowBytes;
      for (let i = 0; i < k; i++) row[i] = esize === 2 ? bf16ToFp32(buf.readUInt16LE(o + 2 * i)) : buf.readFloatLE(o + 4 * i);
      for (let g = 0; g < k; g += group) {
        let amax = 0;
        for (let i = g; i < g + group; i++) amax = Math.max(amax, Math.abs(row[i]!));
        const scale = Math.fround(amax / 127);
        const inv = amax > 0 ? Math.fround(127 / amax) : 0;
        for (let i = g; i < g + group; i++) {
          const q = Math.max(-127, Math.min(127, roundEven(Math.fround(row[i]! * inv))));
          row[i] = Math.fround(q * scale);
        }
      }
      for (let i = 0; i < k; i++) {
        if (esize === 2) buf.writeUInt16LE(fp32ToBf16(row[i]!), o + 2 * i);
        else buf.writeFloatLE(row[i]!, o + 4 * i);
      }
    }
    await fh.write(buf, 0, bytes, t.offset + r0 * rowBytes);
  }
  rewritten++;
}
await fh.close();
console.log(`${outPath}: ${rewritten} expert tensors requantized to INT8 group ${group} and back in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
