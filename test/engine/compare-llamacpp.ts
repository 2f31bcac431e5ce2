// Compares the engine with llama.cpp (node-llama-cpp) on any GGUF, position by position: top-1,
// KL, max |diff| / std. For real or Qwen3-30B-shaped files that are too big for the test suite.
// Usage: npx tsx test/engine/compare-llamacpp.ts FILE.gguf [token ids, comma-separated]
import { loadModel } from '../../src/model/load.ts';
import { logitStats, openLlama } from '../reference/llamacpp.ts';

const path = process.argv[2];
if (!path) {
  console.error('usage: npx tsx test/engine/compare-llamacpp.ts FILE.gguf [ids,comma,separated]');
  process.exit(2);
}
const prompt = (process.argv[3] ?? '151644,872,198,3838,374,279,6722,315,9625,30,151645,198').split(',').map(Number);
const llama = await openLlama(path, 256);
if (typeof llama === 'string') {
  console.error(llama);
  process.exit(1);
}
const want = await llama.logits(prompt);
await llama.dispose();
const model = await loadModel(path, { ctxSize: 256 });
const n = prompt.length;
const got = model.forward({ tokens: Int32Array.from(prompt), positions: Int32Array.from(prompt.keys()), seqIds: new Int32Array(n), logitsFor: Int32Array.from(prompt.keys()) });
const V = model.config.vocab;
console.log(`${path}: ${model.config.architecture}, ${model.config.nLayers} layers, hidden ${model.config.hidden}, heads ${model.config.nHeads}/${model.config.nKvHeads} x ${model.config.headDim}`);
for (let p = 0; p < n; p++) {
  const s = logitStats(want[p]!, got, p * V, V);
  console.log(`pos ${p}: top-1 ${s.topG === s.topR ? 'same' : `DIFFERS (ours ${s.topG}, llama.cpp ${s.topR})`}  KL ${s.kl.toExponential(2)}  max|diff|/std ${(s.maxDiff / s.std).toExponential(2)}  std ${s.std.toFixed(3)}`);
}
model.dispose();
