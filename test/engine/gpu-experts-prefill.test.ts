// Prefill with the routed experts split between the GPU (weights streamed from RAM) and the CPU
// (rules: qwen3moe-hybrid with the experts' prefill_device: cuda; native/src/gpu/gpu-experts-bridge.cc)
// against the same hybrid with the experts on the CPU: logits of every position agree to the experts'
// rounding, both sides really used (the context's counters), decode still on the CPU.
//
// The cost model's constants come from MIXTILE_EXPERT_COST here (equal per-expert cost on both sides,
// so the split gives each about half the experts), not from timing the CPU stand-in of the GPU. Runs
// on a GPU (libmixtile-cuda.so) or on libmixtile-cuda-host.so (MIXTILE_CUDA_LIB picks either).
process.env.MIXTILE_EXPERT_COST = 'pcie_gbps=100000,gpu_base_us=100,gpu_row_us=0.001,gpu_call_us=0,cpu_base_us=100,cpu_row_us=0.001';
process.env.MIXTILE_EXPERT_COST_ADAPT = '0';
process.env.MIXTILE_EXPERTS_PREFILL = 'split';

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cudaInfo } from '../../src/native/cuda.ts';
import { loadModel } from '../../src/model/load.ts';
import { synthModel } from '../../src/model/synth.ts';
import type { ForwardBatch } from '../../src/model/types.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ADDON = process.env.MIXTILE_ADDON ?? join(ROOT, 'native/build/Release/mixtile.node');
const STAND_IN = join(dirname(ADDON), 'libmixtile-cuda-host.so');

function skipReason(): string | false {
  if (!existsSync(ADDON)) return `native addon not built (${ADDON})`;
  const lib = process.env.MIXTILE_CUDA_LIB ?? (existsSync('/dev/nvidiactl') ? undefined : STAND_IN);
  const info = cudaInfo(lib);
  return info.available ? false : `no GPU and no CUDA stand-in: ${info.reason}`;
}
const skip = skipReason();

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);
const batch = (tokens: number[], positions: number[], logitsFor: number[]): ForwardBatch => ({
  tokens: Int32Array.from(tokens),
  positions: Int32Array.from(positions),
  seqIds: new Int32Array(tokens.length),
  logitsFor: Int32Array.from(logitsFor),
});

/** Worst max|diff| / std of the CPU logits over the rows. */
function worstDiff(want: Float32Array, got: Float32Array, vocab: number): number {
  let worst = 0;
  for (let r = 0; r < want.length / vocab; r++) {
    let sq = 0;
    let d = 0;
    for (let v = 0; v < vocab; v++) {
      sq += want[r * vocab + v]! ** 2;
      d = Math.max(d, Math.abs(want[r * vocab + v]! - got[r * vocab + v]!));
    }
    worst = Math.max(worst, Number.isFinite(d) ? d / Math.sqrt(sq / vocab) : Infinity);
  }
  return worst;
}

describe('prefill experts split between the GPU and the CPU', { skip }, () => {
  let dir: string;
  let rules: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mixtile-gpu-experts-'));
    rules = join(dir, 'hybrid-experts-prefill-gpu.yaml');
    const preset = readFileSync(join(ROOT, 'src/optimize/rules/qwen3moe-hybrid.yaml'), 'utf8');
    const edited = preset.replace(/(class: Experts\n\s+kwargs:\n(?:\s+.*\n)*?\s+)prefill_device: cpu/, '$1prefill_device: cuda');
    assert.notEqual(edited, preset, 'the preset names the experts prefill device');
    writeFileSync(rules, edited);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // Against the hybrid with CPU experts (the same GPU attention), so only the experts differ; and
  // against the CPU forward for BF16, where the hybrid test's limit holds.
  for (const [fileType, limit, cpuLimit] of [
    ['BF16', 0.02, 0.06],
    // The CPU kernel quantizes activations to 8 bits for K-quants; the GPU experts use BF16 ones.
    ['Q4_K_M', 0.1, undefined],
  ] as const) {
    test(`${fileType}: logits match the CPU-experts hybrid; both sides run; decode stays on the CPU`, async () => {
      const path = join(dir, `tiny-${fileType}.gguf`);
      await synthModel({ preset: 'tiny', out: path, fileType, seed: 5 });
      const cpu = await loadModel(path, { ctxSize: 64, nSeq: 1 });
      const base = await loadModel(path, { ctxSize: 64, nSeq: 1, rules: 'qwen3moe-hybrid' });
      const hyb = await loadModel(path, { ctxSize: 64, nSeq: 1, rules });
      try {
        const prompt = [9707, 11, 1879, 0, 151643, 33, 77091, 3838, 374, 42, 17, 4000, 99, 5];
        const p = batch(prompt, range(0, prompt.length), range(0, prompt.length));
        const V = cpu.config.vocab;
        const got = hyb.forward(p);
        const d = worstDiff(base.forward(p), got, V);
        assert.ok(d <= limit, `prefill vs CPU-experts hybrid: max |diff| / std ${d.toFixed(4)} > ${limit}`);
        if (cpuLimit !== undefined) {
          const dc = worstDiff(cpu.forward(p), got, V);
          assert.ok(dc <= cpuLimit, `prefill vs CPU forward: max |diff| / std ${dc.toFixed(4)} > ${cpuLimit}`);
        }
        const s1 = hyb.gpu!.stats();
        assert.equal(s1.expertsGpuTokens, 2 * prompt.length, 'every layer sent the prompt to GPU experts');
        assert.equal(s1.expertsCpuTokens, 2 * prompt.length, 'and to CPU experts (the split)');
        const dd = worstDiff(base.forward(batch([42], [prompt.length], [0])), hyb.forward(batch([42], [prompt.length], [0])), V);
        assert.ok(dd <= limit, `decode: ${dd.toFixed(4)}`);
        const s2 = hyb.gpu!.stats();
        assert.equal(s2.expertsGpuTokens, s1.expertsGpuTokens, 'decode does not use the GPU experts');
        assert.equal(s2.expertsCpuTokens, s1.expertsCpuTokens + 2);
        console.log(`  ${fileType}: prefill max|diff|/std vs CPU-experts hybrid ${d.toExponential(2)}, decode ${dd.toExponential(2)}`);
      } finally {
        cpu.dispose();
        base.dispose();
        hyb.dispose();
      }
    });
  }
});
