// Expert deferral A/B on one GGUF file (the GPU machine, 48-layer 30B-A3B Q4_K_M): one hybrid model per
// variant (held-back experts per token : join point), all fed the same tokens (a short prompt, then greedy
// decode steps of the first variant, teacher-forced into the others), the variants' order rotated every step
// so that drift of the machine hits them alike. Prints per variant: decode ms/token (median, mean) and the
// context's per-token host counters; and against the first variant, over every decode step's whole logit
// vector: rms and max of the difference / logit std, top-1 agreement, mean KL.
// Usage: node --import tsx bench/device/deferral-ab.ts FILE [steps=160] [variants=0:moe,1:moe,2:moe,3:moe,2:attention]
// (MIXTILE_AMX_BACKEND=off keeps the loads quick: decode's one-token expert calls read the source blocks anyway.)
import { performance } from 'node:perf_hooks';
import { loadModel } from '../../src/model/load.ts';
import type { LoadedModel } from '../../src/model/types.ts';

const [file, stepsArg, variantsArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: deferral-ab.ts FILE [steps] [N:join,...]');
  process.exit(2);
}
const steps = Number(stepsArg ?? 160);
const variants = (variantsArg ?? '0:moe,1:moe,2:moe,3:moe,2:attention').split(',').map((v) => {
  const [n, join] = v.split(':');
  return { name: v, n: n!, join: join ?? 'moe' };
});
const PROMPT = 16;

const models: LoadedModel[] = [];
for (const v of variants) {
  process.env.MIXTILE_DEFER_EXPERTS = v.n;
  process.env.MIXTILE_DEFER_JOIN = v.join;
  const t = performance.now();
  const m = await loadModel(file, { ctxSize: PROMPT + steps + 8, rules: 'qwen3moe-hybrid' });
  if (!m.gpu) throw new Error('no GPU context: qwen3moe-hybrid placed nothing on a GPU');
  models.push(m);
  console.log(`loaded ${v.name} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
}
delete process.env.MIXTILE_DEFER_EXPERTS;
delete process.env.MIXTILE_DEFER_JOIN;
const V = models[0]!.config.vocab;

let seed = 4242;
const prompt = Int32Array.from({ length: PROMPT }, () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 151000);
const pos = Int32Array.from(prompt.keys());
let logits: Float32Array[] = models.map((m) => m.forward({ tokens: prompt, positions: pos, seqIds: new Int32Array(PROMPT), logitsFor: Int32Array.of(PROMPT - 1) }).slice());

interface Acc {
  ms: number[];
  rms: number[];
  max: number[];
  kl: number[];
  top1: number;
  std: number[];
}
const acc: Acc[] = variants.map(() => ({ ms: [], rms: [], max: [], kl: [], top1: 0, std: [] }));
const before = models.map((m) => m.gpu!.stats());

function argmax(a: Float32Array): number {
  let b = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[b]!) b = i;
  return b;
}
function compare(base: Float32Array, got: Float32Array, a: Acc): void {
  let sq = 0;
  let mean = 0;
  for (let i = 0; i < V; i++) mean += base[i]!;
  mean /= V;
  let dsq = 0;
  let dmax = 0;
  for (let i = 0; i < V; i++) {
    const c = base[i]! - mean;
    sq += c * c;
    const d = Math.abs(base[i]! - got[i]!);
    dsq += d * d;
    dmax = Math.max(dmax, d);
  }
  const std = Math.sqrt(sq / V);
  a.std.push(std);
  a.rms.push(Math.sqrt(dsq / V) / std);
  a.max.push(dmax / std);
  const mb = base[argmax(base)]!;
  const mg = got[argmax(got)]!;
  let zb = 0;
  let zg = 0;
  for (let i = 0; i < V; i++) {
    zb += Math.exp(base[i]! - mb);
    zg += Math.exp(got[i]! - mg);
  }
  let kl = 0;
  for (let i = 0; i < V; i++) {
    const lb = base[i]! - mb - Math.log(zb);
    kl += Math.exp(lb) * (lb - (got[i]! - mg - Math.log(zg)));
  }
  a.kl.push(kl);
  if (argmax(base) === argmax(got)) a.top1++;
}

for (let s = 0; s < steps; s++) {
  const token = argmax(logits[0]!);
  const b = { tokens: Int32Array.of(token), positions: Int32Array.of(PROMPT + s), seqIds: Int32Array.of(0), logitsFor: Int32Array.of(0) };
  const next: Float32Array[] = new Array(models.length);
  for (let k = 0; k < models.length; k++) {
    const i = (s + k) % models.length;
    const t = performance.now();
    next[i] = models[i]!.forward(b).slice();
    acc[i]!.ms.push(performance.now() - t);
  }
  logits = next;
  for (let i = 1; i < models.length; i++) compare(logits[0]!, logits[i]!, acc[i]!);
}

const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;
const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
console.log(`${file}: ${models[0]!.config.nLayers} layers, ${steps} decode steps after a ${PROMPT}-token prompt; logit std (first variant) median ${med(acc[1]?.std ?? [NaN]).toFixed(3)}`);
variants.forEach((v, i) => {
  const a = acc[i]!;
  const st = models[i]!.gpu!.stats();
  const per = (k: 'expertsWaitMs' | 'expertsCpuMs' | 'expertsDeferredMs' | 'lmHeadMs' | 'attentionIssueMs') => ((st[k] - before[i]![k]) / steps).toFixed(3);
  const speed = `decode ${med(a.ms).toFixed(2)} ms/token median (${(1000 / med(a.ms)).toFixed(1)} tok/s), mean ${mean(a.ms).toFixed(2)}; per token: wait ${per('expertsWaitMs')}, CPU experts ${per('expertsCpuMs')}, deferred ${per('expertsDeferredMs')}, attention issue ${per('attentionIssueMs')}, lm_head ${per('lmHeadMs')} ms`;
  const accText =
    i === 0
      ? 'reference'
      : `vs ${variants[0]!.name}: rms diff/std median ${med(a.rms).toExponential(2)} mean ${mean(a.rms).toExponential(2)}, max diff/std median ${med(a.max).toExponential(2)} worst ${Math.max(...a.max).toExponential(2)}, top-1 ${a.top1}/${steps}, KL mean ${mean(a.kl).toExponential(2)}`;
  const layers = st.profileLayers - before[i]!.profileLayers;
  const us = (k: 'profileAttentionMs' | 'profileRouteMs' | 'profileD2hMs' | 'profileH2dAddMs' | 'profileIssueGapMs') => (((st[k] - before[i]![k]) / layers) * 1000).toFixed(1);
  const prof = layers > 0 ? `\n    GPU per MoE layer (MIXTILE_GPU_PROFILE): issue gap ${us('profileIssueGapMs')}, attention ${us('profileAttentionMs')}, route ${us('profileRouteMs')}, d2h ${us('profileD2hMs')}, h2d+add ${us('profileH2dAddMs')} us` : '';
  console.log(`  defer ${v.name}: ${speed}${prof}\n    ${accText}`);
});
for (const m of models) m.dispose();
