// Prefill with the routed experts split between the GPU (weights streamed from RAM) and the CPU
// (rules: qwen3moe-hybrid with the experts' prefill_device: cuda; native/src/gpu/gpu-experts-bridge.cc)
// against the same hybrid with the experts on the CPU: logits of every position agree to the experts'
// rounding, both sides really used (the context's counters), decode still on the CPU.
//
// The cost model's constants come from MIXTILE_EXPERT_COST here (equal per-expert cost on both sides,
// so the split gives each about half the experts), not from timing the CPU stand-in of the GPU. Runs
// on a GPU (libmixtile-cuda.so) or on libmixtile-cuda-host.so (MIXTILE_CUDA_LIB picks either).
//
// The prefetch of the next layer's experts into VRAM banks (gpu-experts-prefetch.h) against the same
// forward without it: equal logits when every expert runs on the GPU either way, within rounding when
// the split moves; the banks really read (the prefetch counters); budgets too small for a layer or for
// anything still correct. On the stand-in, the prefetch cases run again in a child process with
// MIXTILE_CUDA_HOST_SYNC=1 (each operation at issue instead of at the next synchronisation point).
const EQUAL_COST = 'pcie_gbps=100000,gpu_base_us=100,gpu_row_us=0.001,gpu_call_us=0,cpu_base_us=100,cpu_row_us=0.001';
// The CPU side so slow that every expert goes to the GPU, prefetched or not.
const GPU_COST = 'pcie_gbps=100000,gpu_base_us=100,gpu_row_us=0.001,gpu_call_us=0,cpu_base_us=1000000,cpu_row_us=1';
process.env.MIXTILE_EXPERT_COST = EQUAL_COST;
process.env.MIXTILE_EXPERT_COST_ADAPT = '0';
process.env.MIXTILE_EXPERTS_PREFILL = 'split';
process.env.MIXTILE_GPU_EXPERTS_PREFETCH_MIN_TOKENS = '1';

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addon } from '../../src/native/addon.ts';
import { readGguf } from '../../src/formats/gguf-read.ts';
import { gpuExpertsBytes, type GpuPlan } from '../../src/model/gpu-plan.ts';
import { loadModel } from '../../src/model/load.ts';
import type { ModelConfig } from '../../src/model/types.ts';
import { synthModel } from '../../src/model/synth.ts';
import type { ForwardBatch } from '../../src/model/types.ts';
import { gpuSkip, onGpuMachine } from '../cuda/target.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const onStandIn = !process.env.MIXTILE_CUDA_LIB && !onGpuMachine();
const skip = gpuSkip();
const inSyncChild = process.env.MIXTILE_PREFETCH_TEST_CHILD === '1';

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

/** The qwen3moe-hybrid preset (experts' prefill on the GPU) with the experts' prefill on the CPU instead. */
function cpuExpertsRules(dir: string): string {
  const file = join(dir, 'hybrid-experts-prefill-cpu.yaml');
  const preset = readFileSync(join(ROOT, 'src/optimize/rules/qwen3moe-hybrid.yaml'), 'utf8');
  const edited = preset.replace(/(class: Experts\n\s+kwargs:\n(?:\s+.*\n)*?\s+)prefill_device: cuda/, '$1prefill_device: cpu');
  assert.notEqual(edited, preset, 'the preset puts the experts prefill on the GPU');
  writeFileSync(file, edited);
  return file;
}

describe('prefill experts split between the GPU and the CPU', { skip: skip || (inSyncChild && 'prefetch cases only') }, () => {
  let dir: string;
  let baseRules: string;
  const rules = 'qwen3moe-hybrid';

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mixtile-gpu-experts-'));
    baseRules = cpuExpertsRules(dir);
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
      const base = await loadModel(path, { ctxSize: 64, nSeq: 1, rules: baseRules });
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

type PrefetchCounters = { queued: number; used: number; bankBytes: number };
const prefetchCounters = (): PrefetchCounters => addon().gpuExpertsPrefetchCounters!() as PrefetchCounters;

/** Runs fn with the environment changed (read when a model loads its GPU experts), then restores it (after fn's promise settles). */
function withEnv<T>(vars: Record<string, string>, fn: () => T): T {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  const restore = () => {
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  let result: T;
  try {
    result = fn();
  } catch (e) {
    restore();
    throw e;
  }
  if (result instanceof Promise) return result.finally(restore) as T;
  restore();
  return result;
}

describe('prefetch of the next layer\'s experts into VRAM banks', { skip }, () => {
  let dir: string;
  let model: string;
  const rules = 'qwen3moe-hybrid';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mixtile-gpu-prefetch-'));
    // Q4_K gate/up and Q6_K down: slices of unequal sizes in a bank. 8 experts of ~125 KiB per layer.
    model = join(dir, 'tiny-Q4_K_M.gguf');
    await synthModel({ preset: 'tiny', out: model, fileType: 'Q4_K_M', seed: 7 });
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // Three prefills (the first learns the layer order, so only the later ones can prefetch) and a decode step.
  const prompts = [
    [9707, 11, 1879, 0, 151643, 33, 77091, 3838, 374, 42, 17, 4000, 99, 5],
    [5, 99, 4000, 17, 42, 374, 3838, 77091, 33, 151643, 0, 1879, 11, 9707, 8, 1000, 20000],
    [123, 456, 789, 1011, 1213, 1415, 1617, 1819, 2021, 2223, 2425],
  ];
  async function run(env: Record<string, string>): Promise<{ logits: Float32Array[]; used: number; queued: number; bankBytes: number }> {
    return withEnv(env, async () => {
      const m = await loadModel(model, { ctxSize: 64, nSeq: 1, rules });
      try {
        const c0 = prefetchCounters();
        // One sequence, each prefill continuing where the last ended.
        let pos = 0;
        const logits = prompts.map((p) => {
          pos += p.length;
          return m.forward(batch(p, range(pos - p.length, pos), range(0, p.length)));
        });
        logits.push(m.forward(batch([42], [pos], [0])));
        const c1 = prefetchCounters();
        return { logits, used: c1.used - c0.used, queued: c1.queued - c0.queued, bankBytes: c1.bankBytes };
      } finally {
        m.dispose();
      }
    });
  }

  const off = { MIXTILE_GPU_EXPERTS_PREFETCH: '0' };
  for (const [name, env, used] of [
    ['whole layers', { MIXTILE_GPU_EXPERTS_PREFETCH: '1' }, 'all'],
    ['a budget of half a layer per bank (4 of 8 experts)', { MIXTILE_GPU_EXPERTS_PREFETCH: '1', MIXTILE_GPU_EXPERTS_PREFETCH_MIB: '1' }, 'some'],
    ['no budget: the ring alone', { MIXTILE_GPU_EXPERTS_PREFETCH: '1', MIXTILE_GPU_EXPERTS_PREFETCH_MIB: '0' }, 'none'],
  ] as const) {
    test(`${name}: logits equal to the forward without prefetch (every expert on the GPU)`, async () => {
      const want = await run({ ...off, MIXTILE_EXPERT_COST: GPU_COST });
      assert.equal(want.used, 0, 'prefetch off reads no bank');
      const got = await run({ ...env, MIXTILE_EXPERT_COST: GPU_COST });
      for (let i = 0; i < want.logits.length; i++) {
        assert.deepEqual(got.logits[i], want.logits[i], `forward ${i}: logits differ from the no-prefetch path`);
      }
      if (used === 'none') {
        assert.equal(got.queued, 0);
        assert.equal(got.used, 0);
      } else {
        // Only layer 1 can be prefetched (layer 0 has no layer before it in the same forward), in each of the
        // three prefills (the layers' order is known from load); a prefill may find layer 1 in its bank
        // already, when it wants no more of its experts than an earlier prefill queued.
        const most = used === 'all' ? 8 : 4;
        assert.ok(got.queued > 0 && got.queued <= 3 * most, `queued ${got.queued} experts (a bank holds ${most})`);
        assert.ok(got.used > 0 && got.used <= 3 * most, `the banks were read (queued ${got.queued}, used ${got.used})`);
      }
    });
  }

  test('split with equal costs: prefetched experts go to the GPU first; logits within rounding of no prefetch', async () => {
    const want = await run({ ...off, MIXTILE_EXPERT_COST: EQUAL_COST });
    const got = await run({ MIXTILE_GPU_EXPERTS_PREFETCH: '1', MIXTILE_EXPERT_COST: EQUAL_COST });
    assert.ok(got.used > 0, 'the banks were read');
    for (let i = 0; i < want.logits.length; i++) {
      const d = worstDiff(want.logits[i]!, got.logits[i]!, want.logits[i]!.length / (i < prompts.length ? prompts[i]!.length : 1));
      assert.ok(d <= 0.1, `forward ${i}: max |diff| / std ${d.toFixed(4)} > 0.1`);
    }
  });

  test('the fit check counts the banks only when the prefetch is on, capped by its budget', async () => {
    const gguf = await readGguf(model);
    const c = { nLayers: 2, hidden: 256, expertFfn: 256, nExperts: 8, nExpertsUsed: 2 } as ModelConfig;
    const plan = { expertsPrefill: [true, true] } as GpuPlan;
    const layerBytes = Math.max(
      ...[0, 1].map((l) =>
        ['gate', 'up', 'down'].reduce((sum, t) => sum + Math.ceil(gguf.tensors.get(`blk.${l}.ffn_${t}_exps.weight`)!.nBytes / 256) * 256, 0),
      ),
    );
    const off = gpuExpertsBytes(c, gguf, plan, 512, {});
    assert.ok(off > 32 * 2 ** 20, 'ring, scratch and the cuBLAS workspace are counted');
    assert.equal(gpuExpertsBytes(c, gguf, plan, 512, { MIXTILE_GPU_EXPERTS_PREFETCH: '1' }), off + 2 * layerBytes);
    assert.equal(gpuExpertsBytes(c, gguf, plan, 512, { MIXTILE_GPU_EXPERTS_PREFETCH: '1', MIXTILE_GPU_EXPERTS_PREFETCH_MIB: '1' }), off + 2 ** 20);
    assert.ok(gpuExpertsBytes(c, gguf, plan, 2048, {}) > off, 'the scratch grows with the ubatch');
    assert.equal(gpuExpertsBytes(c, gguf, { expertsPrefill: [false, false] } as GpuPlan, 512, { MIXTILE_GPU_EXPERTS_PREFETCH: '1' }), 0);
  });

  test('the cost model gives the GPU the resident experts first', () => {
    const cost = { pcieGbps: 1, gpuBaseUs: 10, gpuRowUs: 0.1, gpuCallUs: 0, cpuBaseUs: 100, cpuRowUs: 1 };
    const rows = [1, 1, 1, 1, 50, 50, 50, 50];
    const plan = (resident: number) => addon().expertsSplitPlan!(cost, rows, 1e6, 'split', resident) as { onGpu: number[]; gpuMs: number };
    // 1 MB at 1 GB/s = 1 ms per streamed expert: nothing streams; prefetched experts cost 10 us each.
    assert.deepEqual(plan(0).onGpu, [0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(plan(2).onGpu, [1, 1, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(plan(8).onGpu, [1, 1, 1, 1, 1, 1, 1, 1]);
    assert.ok(plan(8).gpuMs < 1, `resident experts pay no copy (${plan(8).gpuMs} ms)`);
  });

  test('the prefetch cases again with MIXTILE_CUDA_HOST_SYNC=1 (stand-in only)', { skip: !onStandIn || inSyncChild }, () => {
    const file = fileURLToPath(import.meta.url);
    // Without the parent runner's NODE_TEST_CONTEXT the child reports in TAP on its stdout.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter', 'tap', '--test-name-pattern', 'prefetch|resident|layers', file], {
      env: { ...env, MIXTILE_CUDA_HOST_SYNC: '1', MIXTILE_PREFETCH_TEST_CHILD: '1' },
      encoding: 'utf8',
      timeout: 600_000,
    });
    assert.equal(r.status, 0, `child run failed:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /# pass [1-9]/);
    assert.match(r.stdout, /# fail 0/);
  });
});
