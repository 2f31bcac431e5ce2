// Debug script: writes a small model, runs the engine and the float64 reference on one prompt and
// prints the max logit difference per position. Usage: npx tsx test/engine/debug-forward.ts [F32|BF16|Q8_0|Q4_K] [qwen3moe|qwen3] [round]
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { loadModel } from '../../src/model/load.ts';
import { ReferenceModel } from '../reference/qwen3moe-f64.ts';
import { writeSmallModel } from './small-model.ts';

const type = GgmlType[(process.argv[2] ?? 'F32') as keyof typeof GgmlType] as GgmlType;
const arch = (process.argv[3] ?? 'qwen3moe') as 'qwen3moe' | 'qwen3';
const path = join(tmpdir(), `mixtile-debug-${arch}-${type}.gguf`);
await writeSmallModel(path, { type, arch });
const model = await loadModel(path, { ctxSize: 64, kvType: 'f32' });
const ref = await ReferenceModel.load(path);
const prompt = [1, 17, 42, 99, 5, 250, 3];
const n = prompt.length;
const logits = model.forward({
  tokens: Int32Array.from(prompt),
  positions: Int32Array.from(prompt.keys()),
  seqIds: new Int32Array(n),
  logitsFor: Int32Array.from(prompt.keys()),
});
const want = ref.forward(prompt, { roundActivations: process.argv[4] === 'round' });
const V = model.config.vocab;
for (let p = 0; p < n; p++) {
  let maxd = 0, mean = 0, sq = 0;
  for (let v = 0; v < V; v++) {
    const r = want[p]![v]!;
    maxd = Math.max(maxd, Math.abs(logits[p * V + v]! - r));
    mean += r;
    sq += r * r;
  }
  mean /= V;
  console.log(`pos ${p}: max |diff| ${maxd.toExponential(3)}  logit std ${Math.sqrt(sq / V - mean * mean).toFixed(3)}`);
}
model.dispose();
