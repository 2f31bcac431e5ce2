// Compares mixtile's logits with transformers' (written by hf_reference.py) for every position of a
// prompt: GGUF produced by `mixtile convert` from the same checkpoint, one prefill batch.
// usage: node --import tsx test/hf/compare-logits.ts MODEL.gguf HF_DIR [tolerance] [kvType f16|bf16|f32] [rules]
// (rules: a rule file or preset, e.g. qwen3moe-hybrid for the GPU + CPU forward; default: every operator on the CPU)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../src/model/load.ts';

const [ggufPath, hfDir, tolArg, kvArg, rules] = process.argv.slice(2);
const kvType = (kvArg ?? 'f16') as 'f16' | 'bf16' | 'f32';
if (!ggufPath || !hfDir) throw new Error('usage: compare-logits.ts MODEL.gguf HF_DIR [tolerance]');
const { tokens, vocab } = JSON.parse(readFileSync(join(hfDir, 'hf-tokens.json'), 'utf8')) as { tokens: number[]; vocab: number };
const buf = readFileSync(join(hfDir, 'hf-logits.f32'));
const ref = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
const n = tokens.length;
if (ref.length !== n * vocab) throw new Error(`hf-logits.f32 has ${ref.length} values, expected ${n}×${vocab}`);

const model = await loadModel(ggufPath, { ctxSize: 256, kvType, rules });
const got = model.forward({
  tokens: Int32Array.from(tokens),
  positions: Int32Array.from(tokens, (_, i) => i),
  seqIds: new Int32Array(n),
  logitsFor: Int32Array.from(tokens, (_, i) => i),
});
model.dispose();

let maxAbs = 0;
let sumSq = 0;
let sumRefSq = 0;
let top1Equal = 0;
let refStd = 0;
for (let p = 0; p < n; p++) {
  let bestR = 0;
  let bestG = 0;
  let mean = 0;
  for (let v = 0; v < vocab; v++) mean += ref[p * vocab + v]!;
  mean /= vocab;
  for (let v = 0; v < vocab; v++) {
    const r = ref[p * vocab + v]!;
    const g = got[p * vocab + v]!;
    const d = Math.abs(r - g);
    if (d > maxAbs) maxAbs = d;
    sumSq += d * d;
    sumRefSq += (r - mean) * (r - mean);
    if (r > ref[p * vocab + bestR]!) bestR = v;
    if (g > got[p * vocab + bestG]!) bestG = v;
  }
  if (bestR === bestG) top1Equal++;
}
refStd = Math.sqrt(sumRefSq / (n * vocab));
const rms = Math.sqrt(sumSq / (n * vocab));
const tol = Number(tolArg ?? '0.01');
const result = {
  model: ggufPath,
  positions: n,
  logitStd: +refStd.toFixed(4),
  maxAbsDiff: +maxAbs.toExponential(3),
  rmsDiff: +rms.toExponential(3),
  maxAbsOverStd: +(maxAbs / refStd).toExponential(3),
  rmsOverStd: +(rms / refStd).toExponential(3),
  top1Agreement: `${top1Equal}/${n}`,
  kvType,
  rules: rules ?? 'cpu',
  tolerance: tol,
  pass: rms / refStd <= tol && top1Equal === n,
};
console.log(JSON.stringify(result));
if (!result.pass) process.exitCode = 1;
