// AMX-INT8 experts against AMX-BF16 on the same model (issue 8 item 4): top-1 agreement and KL of
// the next-token distributions over many positions. Each backend is chosen by a one-rule file, as a
// user would; prints one JSON line. On a CPU without AMX both fall back to AVX-512 (KL 0).
// usage: node --import tsx test/hf/amx-int8-accuracy.ts MODEL.gguf [positions=2048] [chunk=512]
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../src/model/load.ts';
import { isaInfo } from '../../src/native/isa.ts';

const [path, nArg, chunkArg] = process.argv.slice(2);
if (!path) throw new Error('usage: amx-int8-accuracy.ts MODEL.gguf [positions] [chunk]');
const nPos = Number(nArg ?? 2048);
const chunk = Number(chunkArg ?? 512);

function rulesFile(backend: string): string {
  const f = join(mkdtempSync(join(tmpdir(), 'mixtile-amx-acc-')), `${backend}.yaml`);
  writeFileSync(f, `- match:\n    name: "^model\\\\.layers\\\\.\\\\d+\\\\.mlp\\\\.experts$"\n  replace:\n    class: Experts\n    kwargs: { backend: ${backend} }\n`);
  return f;
}

const warnings: string[] = [];
const onWarning = (w: string) => warnings.push(w);
const ref = await loadModel(path, { ctxSize: nPos, ubatch: chunk, rules: rulesFile('AMXBF16'), onWarning });
const q = await loadModel(path, { ctxSize: nPos, ubatch: chunk, rules: rulesFile('AMXInt8'), onWarning });
const vocab = ref.config.vocab;

// Seeded random prompt (xorshift), ids below the special tokens.
let s = 12345;
const tokens = Int32Array.from({ length: nPos }, () => {
  s ^= s << 13;
  s ^= s >>> 17;
  s ^= s << 5;
  return (s >>> 0) % 151643;
});

let top1 = 0;
let klSum = 0;
let klMax = 0;
let msRef = 0;
let msQ = 0;
let logitStd = 0;
const logSoftmax = (x: Float32Array, o: number, out: Float64Array) => {
  let mx = -Infinity;
  for (let v = 0; v < vocab; v++) mx = Math.max(mx, x[o + v]!);
  let z = 0;
  for (let v = 0; v < vocab; v++) z += Math.exp(x[o + v]! - mx);
  const lz = Math.log(z) + mx;
  for (let v = 0; v < vocab; v++) out[v] = x[o + v]! - lz;
};
const lpA = new Float64Array(vocab);
const lpB = new Float64Array(vocab);
for (let p0 = 0; p0 < nPos; p0 += chunk) {
  const n = Math.min(chunk, nPos - p0);
  const batch = {
    tokens: tokens.subarray(p0, p0 + n),
    positions: Int32Array.from({ length: n }, (_, i) => p0 + i),
    seqIds: new Int32Array(n),
    logitsFor: Int32Array.from({ length: n }, (_, i) => i),
  };
  let t = performance.now();
  const a = ref.forward(batch);
  msRef += performance.now() - t;
  t = performance.now();
  const b = q.forward(batch);
  msQ += performance.now() - t;
  for (let i = 0; i < n; i++) {
    const o = i * vocab;
    logSoftmax(a, o, lpA);
    logSoftmax(b, o, lpB);
    let kl = 0;
    let bestA = 0;
    let bestB = 0;
    let m = 0;
    let m2 = 0;
    for (let v = 0; v < vocab; v++) {
      kl += Math.exp(lpA[v]!) * (lpA[v]! - lpB[v]!);
      if (a[o + v]! > a[o + bestA]!) bestA = v;
      if (b[o + v]! > b[o + bestB]!) bestB = v;
      m += a[o + v]!;
      m2 += a[o + v]! * a[o + v]!;
    }
    logitStd += Math.sqrt(m2 / vocab - (m / vocab) ** 2) / nPos;
    if (bestA === bestB) top1++;
    klSum += kl;
    klMax = Math.max(klMax, kl);
  }
}
ref.dispose();
q.dispose();
console.log(
  JSON.stringify({
    model: path,
    cpu: isaInfo().cpu,
    amx: isaInfo().amxTile,
    threads: isaInfo().threads,
    positions: nPos,
    logitStd: +logitStd.toFixed(3),
    top1Agreement: +(top1 / nPos).toFixed(4),
    meanKL: +(klSum / nPos).toExponential(3),
    maxKL: +klMax.toExponential(3),
    prefillTokPerSecBF16: +((nPos / msRef) * 1000).toFixed(1),
    prefillTokPerSecInt8: +((nPos / msQ) * 1000).toFixed(1),
    warnings: [...new Set(warnings)],
  }),
);
