// Decode glue A/B on one GGUF file (the GPU machine): one hybrid model, each decode step run once per
// MIXTILE_DECODE_GLUE value (read at every layer call: native/src/gpu/experts-bridge.h) at the same position
// (the slot cut back before each rerun), the glues' order rotated every step so that drift of the machine hits
// them alike. Prints per glue: decode ms/token (median, mean), the context's per-token host counters and, with
// MIXTILE_GPU_PROFILE=1, the GPU µs per MoE layer of each part; and whether every step's logits were the same
// bits under every glue (the glues change where data travels, not the math).
// Usage: node --import tsx bench/device/glue-ab.ts FILE [steps=64] [glues=wait,mapped,fused,copy]
import { performance } from 'node:perf_hooks';
import { loadModel } from '../../src/model/load.ts';
import type { GpuStats } from '../../src/native/gpu.ts';

const [file, stepsArg, gluesArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: glue-ab.ts FILE [steps] [glue,...]');
  process.exit(2);
}
const steps = Number(stepsArg ?? 64);
const glues = (gluesArg ?? 'wait,mapped,fused,copy').split(',');
const PROMPT = 16;

const t0 = performance.now();
const m = await loadModel(file, { ctxSize: PROMPT + steps + 8, rules: 'qwen3moe-hybrid' });
if (!m.gpu) throw new Error('no GPU context: qwen3moe-hybrid placed nothing on a GPU');
const gpu = m.gpu;
console.log(`loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${m.config.nLayers} layers; pool hot ${process.env.MIXTILE_POOL_HOT_US ?? 'default'} us`);

let seed = 4242;
const prompt = Int32Array.from({ length: PROMPT }, () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % 151000);
const pos = Int32Array.from(prompt.keys());
let logits: Float32Array = m.forward({ tokens: prompt, positions: pos, seqIds: new Int32Array(PROMPT), logitsFor: Int32Array.of(PROMPT - 1) }).slice();

const KEYS = ['expertsWaitMs', 'expertsCpuMs', 'attentionIssueMs', 'lmHeadMs', 'profileLayers', 'profileIssueGapMs', 'profileAttentionMs', 'profileRouteMs', 'profileD2hMs', 'profileH2dAddMs'] as const;
type Key = (typeof KEYS)[number];
const acc = glues.map(() => ({ ms: [] as number[], sums: Object.fromEntries(KEYS.map((k) => [k, 0])) as Record<Key, number>, differ: 0 }));

function argmax(a: Float32Array): number {
  let b = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[b]!) b = i;
  return b;
}
const sameBits = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

for (let s = 0; s < steps; s++) {
  const b = { tokens: Int32Array.of(argmax(logits)), positions: Int32Array.of(PROMPT + s), seqIds: Int32Array.of(0), logitsFor: Int32Array.of(0) };
  const out: Float32Array[] = new Array(glues.length);
  for (let k = 0; k < glues.length; k++) {
    const i = (s + k) % glues.length;
    m.kv.truncate(0, PROMPT + s);
    process.env.MIXTILE_DECODE_GLUE = glues[i]!;
    const before: GpuStats = gpu.stats();
    const t = performance.now();
    out[i] = m.forward(b).slice();
    acc[i]!.ms.push(performance.now() - t);
    const after = gpu.stats();
    for (const key of KEYS) acc[i]!.sums[key] += after[key] - before[key];
  }
  for (let i = 1; i < glues.length; i++) if (!sameBits(out[0]!, out[i]!)) acc[i]!.differ++;
  logits = out[0]!;
}
delete process.env.MIXTILE_DECODE_GLUE;

const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;
const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
glues.forEach((g, i) => {
  const a = acc[i]!;
  const per = (k: Key) => (a.sums[k] / steps).toFixed(3);
  const layers = a.sums.profileLayers;
  const us = (k: Key) => ((a.sums[k] / layers) * 1000).toFixed(1);
  const prof = layers > 0 ? `\n    GPU per MoE layer: issue gap ${us('profileIssueGapMs')}, attention ${us('profileAttentionMs')}, route ${us('profileRouteMs')}, d2h ${us('profileD2hMs')}, h2d+add ${us('profileH2dAddMs')} us` : '';
  const bits = i === 0 ? 'reference' : `logits differ from ${glues[0]} at ${a.differ}/${steps} steps`;
  console.log(`  glue ${g}: decode ${med(a.ms).toFixed(3)} ms/token median (${(1000 / med(a.ms)).toFixed(1)} tok/s), mean ${mean(a.ms).toFixed(3)}; per token: wait ${per('expertsWaitMs')}, CPU experts ${per('expertsCpuMs')}, attention issue ${per('attentionIssueMs')}, lm_head ${per('lmHeadMs')} ms; ${bits}${prof}`);
});
m.dispose();
