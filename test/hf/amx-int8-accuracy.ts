// Whole-model accuracy of one experts backend against another on the same model (issue 8 item 4):
// top-1 agreement and KL of the next-token distributions over many positions, and how far the
// reference's logits are from uniform (the top-1 - top-2 logit margin: flips happen where it is
// small). Each backend is chosen by a one-rule file, as a user would; everything but the routed
// experts is identical. Prints one JSON line.
// usage: node --import tsx test/hf/amx-int8-accuracy.ts MODEL.gguf [positions=2048] [chunk=512]
//          [--ref SPEC] [--test SPEC] [--test-model OTHER.gguf]
//   SPEC = BACKEND[@GROUP][+bf16down]: an experts backend (AMXBF16, AMXInt8, AVX512, generic, ...)
//   and, for AMXInt8, its scale group along K (MIXTILE_AMX_INT8_GROUP at that model's load: 32, 64,
//   128) and BF16 down panels (MIXTILE_AMX_INT8_DOWN=bf16).
//   Defaults: --ref AMXBF16 --test AMXInt8. On a CPU without AMX the AMX backends fall back to
//   AVX-512 (KL 0), unless the addon is the emulated-AMX build (-DMIXTILE_AMX_EMULATE) run with
//   MIXTILE_AMX_MIN_TOKENS=1000000 MIXTILE_AMX_LINEAR=off: then every expert runs on the AVX-512
//   path over the AMX panels, which computes the AMX kernels' numbers (same integer sums, same
//   scaling order), at AVX-512 speed. bench/amx/accuracy-here.sh does that.
//   --test-model: the test side loads another file of the same shape (e.g. the reference's weights
//   quantized, bench/amx/int8-weights-file.ts).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../src/model/load.ts';
import { isaInfo } from '../../src/native/isa.ts';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(name);
  if (i < 0) return def;
  const v = args[i + 1];
  if (!v) throw new Error(`${name} needs a value`);
  args.splice(i, 2);
  return v;
};
const refSpec = opt('--ref', 'AMXBF16');
const testSpec = opt('--test', 'AMXInt8');
const testModel = opt('--test-model', '');
const [path, nArg, chunkArg] = args;
if (!path) throw new Error('usage: amx-int8-accuracy.ts MODEL.gguf [positions] [chunk] [--ref SPEC] [--test SPEC]');
const nPos = Number(nArg ?? 2048);
const chunk = Number(chunkArg ?? 512);

function rulesFile(backend: string): string {
  const f = join(mkdtempSync(join(tmpdir(), 'mixtile-amx-acc-')), `${backend}.yaml`);
  writeFileSync(f, `- match:\n    name: "^model\\\\.layers\\\\.\\\\d+\\\\.mlp\\\\.experts$"\n  replace:\n    class: Experts\n    kwargs: { backend: ${backend} }\n`);
  return f;
}

const warnings: string[] = [];
const onWarning = (w: string) => warnings.push(w);
// The emulated-AMX addon reports ISA amx on a CPU whose flags lack AMX, so the placement would
// replace a named AMX backend by AVX512: there the rule says auto and MIXTILE_AMX_BACKEND names it.
const emulated = isaInfo().active === 'amx' && !isaInfo().amxTile;
async function load(spec: string, file: string) {
  const [base, suffix] = spec.split('+');
  const [backend, group] = (base ?? '').split('@');
  if (!backend || (suffix && suffix !== 'bf16down')) throw new Error(`bad backend spec "${spec}"`);
  if (group) process.env.MIXTILE_AMX_INT8_GROUP = group;
  else delete process.env.MIXTILE_AMX_INT8_GROUP;
  process.env.MIXTILE_AMX_INT8_DOWN = suffix ? 'bf16' : 'int8';
  const viaEnv = emulated && backend.startsWith('AMX');
  if (viaEnv) process.env.MIXTILE_AMX_BACKEND = backend;
  else delete process.env.MIXTILE_AMX_BACKEND;
  return loadModel(file, { ctxSize: nPos, ubatch: chunk, rules: rulesFile(viaEnv ? 'auto' : backend), onWarning });
}
const ref = await load(refSpec, path);
const q = await load(testSpec, testModel || path);
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
let pTop1 = 0;
const margins: number[] = []; // reference top-1 - top-2 logit, per position
const flipMargins: number[] = [];
let wide = 0; // positions whose reference margin is >= 0.1 logit
let wideAgree = 0;
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
    let secondA = -Infinity;
    let bestB = 0;
    let m = 0;
    let m2 = 0;
    for (let v = 0; v < vocab; v++) {
      const av = a[o + v]!;
      kl += Math.exp(lpA[v]!) * (lpA[v]! - lpB[v]!);
      if (v > 0 && av > a[o + bestA]!) {
        secondA = a[o + bestA]!;
        bestA = v;
      } else if (v > 0 && av > secondA) secondA = av;
      if (b[o + v]! > b[o + bestB]!) bestB = v;
      m += av;
      m2 += av * av;
    }
    const margin = a[o + bestA]! - secondA;
    margins.push(margin);
    pTop1 += Math.exp(lpA[bestA]!) / nPos;
    logitStd += Math.sqrt(m2 / vocab - (m / vocab) ** 2) / nPos;
    if (bestA === bestB) top1++;
    else flipMargins.push(margin);
    if (margin >= 0.1) {
      wide++;
      if (bestA === bestB) wideAgree++;
    }
    klSum += kl;
    klMax = Math.max(klMax, kl);
  }
}
ref.dispose();
q.dispose();
const quantile = (xs: number[], p: number) => {
  if (xs.length === 0) return null;
  const sorted = [...xs].sort((x, y) => x - y);
  return +sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!.toPrecision(3);
};
console.log(
  JSON.stringify({
    model: path,
    ref: refSpec,
    test: testSpec,
    testModel: testModel || undefined,
    cpu: isaInfo().cpu,
    amx: isaInfo().amxTile,
    threads: isaInfo().threads,
    positions: nPos,
    logitStd: +logitStd.toFixed(3),
    top1Agreement: +(top1 / nPos).toFixed(4),
    // Among positions where the reference's top-1 leads by >= 0.1 logit (no near-tie).
    top1AgreementMargin01: +(wideAgree / Math.max(1, wide)).toFixed(4),
    meanKL: +(klSum / nPos).toExponential(3),
    maxKL: +klMax.toExponential(3),
    // Reference margins: quantiles of top-1 - top-2 logit, the share under 0.05 / 0.1, the mean
    // top-1 probability; and the median margin where the test's top-1 differs.
    margin: {
      p10: quantile(margins, 0.1),
      p50: quantile(margins, 0.5),
      p90: quantile(margins, 0.9),
      under005: +(margins.filter((x) => x < 0.05).length / nPos).toFixed(4),
      under01: +(margins.filter((x) => x < 0.1).length / nPos).toFixed(4),
      meanTop1Prob: +pTop1.toFixed(4),
      flipsMedian: quantile(flipMargins, 0.5),
    },
    prefillTokPerSecRef: +((nPos / msRef) * 1000).toFixed(1),
    prefillTokPerSecTest: +((nPos / msQ) * 1000).toFixed(1),
    warnings: [...new Set(warnings)],
  }),
);
