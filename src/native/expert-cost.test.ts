// The CPU/GPU experts cost model (native/src/gpu/expert-cost.cc) against a scalar TS reference on random
// layers: predicted times, the split (the k experts with the most tokens on the GPU, k minimising
// max(CPU, GPU) over every k), and the cpu / gpu placements. Needs no GPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgmlType } from '../formats/ggml-types.ts';
import { addon } from './addon.ts';
import { expertsLoad } from './experts.ts';
import { expertsSplitPlan, gpuExpertsCost, type ExpertCostConstants } from './gpu-experts.ts';
import { NativeWeight, type NativeHandle } from './tensor.ts';
import { standInUnlessSet } from '../../test/cuda/target.ts';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// Whether both sides have experts: then each side's time carries its split factor.
const both = (rows: number[], onGpu: number[]) => rows.some((r, e) => r > 0 && onGpu[e]) && rows.some((r, e) => r > 0 && !onGpu[e]);

function refCpuMs(c: ExpertCostConstants, rows: number[], onGpu: number[]): number {
  let us = 0;
  rows.forEach((r, e) => {
    if (r > 0 && !onGpu[e]) us += c.cpuBaseUs + (r - 1) * c.cpuRowUs;
  });
  return (us * (both(rows, onGpu) ? (c.splitCpuX ?? 1) : 1)) / 1e3;
}

function refGpuMs(c: ExpertCostConstants, rows: number[], onGpu: number[], bytes: number): number {
  const copyUs = bytes / (c.pcieGbps * 1e3);
  let copy = 0;
  let compute = 0;
  let longest = 0;
  let k = 0;
  rows.forEach((r, e) => {
    if (r <= 0 || !onGpu[e]) return;
    const t = c.gpuBaseUs + (r - 1) * c.gpuRowUs;
    copy += copyUs;
    compute += t;
    longest = Math.max(longest, Math.min(t, copyUs));
    k++;
  });
  return k ? ((Math.max(copy, compute) + longest + c.gpuCallUs) * (both(rows, onGpu) ? (c.splitGpuX ?? 1) : 1)) / 1e3 : 0;
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));

test('expert cost model: predictions and the split against a brute force over k', () => {
  const next = rng(20261125);
  for (let trial = 0; trial < 300; trial++) {
    const E = [1, 3, 8, 128][trial % 4]!;
    const c: ExpertCostConstants = {
      pcieGbps: 5 + next() * 60,
      gpuBaseUs: 5 + next() * 60,
      gpuRowUs: next() * 0.5,
      gpuCallUs: next() * 100,
      cpuBaseUs: 10 + next() * 150,
      cpuRowUs: next() * 5,
      ...(trial % 3 ? { splitCpuX: 1 + next(), splitGpuX: 1 + next() * 0.5 } : {}),
    };
    const bytes = 1e5 + next() * 1e7;
    const rows = Array.from({ length: E }, () => (next() < 0.2 ? 0 : Math.floor(next() ** 3 * 600)));
    const active = rows.map((r, e) => [r, e] as const).filter(([r]) => r > 0);
    const byRows = [...active].sort((a, b) => b[0] - a[0] || a[1] - b[1]).map(([, e]) => e);

    const cpu = expertsSplitPlan(c, rows, bytes, 'cpu');
    assert.deepEqual(cpu.onGpu, rows.map(() => 0));
    assert.ok(close(cpu.cpuMs, refCpuMs(c, rows, cpu.onGpu)) && cpu.gpuMs === 0);
    const gpu = expertsSplitPlan(c, rows, bytes, 'gpu');
    assert.deepEqual(gpu.onGpu, rows.map((r) => (r > 0 ? 1 : 0)));
    assert.ok(close(gpu.gpuMs, refGpuMs(c, rows, gpu.onGpu, bytes)) && gpu.cpuMs === 0);

    const split = expertsSplitPlan(c, rows, bytes, 'split');
    const k = split.onGpu.reduce((a, b) => a + b, 0);
    const prefix = (n: number) => rows.map((_, e) => (byRows.slice(0, n).includes(e) ? 1 : 0));
    assert.deepEqual(split.onGpu, prefix(k), `trial ${trial}: the GPU takes the experts with the most tokens`);
    assert.ok(close(split.cpuMs, refCpuMs(c, rows, split.onGpu)), `trial ${trial}: cpu ms`);
    assert.ok(close(split.gpuMs, refGpuMs(c, rows, split.onGpu, bytes)), `trial ${trial}: gpu ms`);
    const t = Math.max(split.cpuMs, split.gpuMs);
    for (let n = 0; n <= byRows.length; n++) {
      const m = prefix(n);
      const tn = Math.max(refCpuMs(c, rows, m), refGpuMs(c, rows, m, bytes));
      assert.ok(t <= tn + 1e-9, `trial ${trial}: k=${k} (${t} ms) but k=${n} gives ${tn} ms`);
    }
  }
});

test('expert cost model: split factors keep a one-sided placement when a split would lose to it', () => {
  // The H100 machine's Q4_K_M constants at 2048 tokens (bench/RESULTS.md, GPU experts): in a split the CPU side
  // ran 1.86x and the GPU side 1.31x slower than alone, and the GPU alone (8.3 ms) beat the split (11.5 ms).
  const c: ExpertCostConstants = { pcieGbps: 52.3, gpuBaseUs: 30.9, gpuRowUs: 0.027, gpuCallUs: 21.5, cpuBaseUs: 128.5, cpuRowUs: 3.57 };
  const rows = Array.from({ length: 128 }, () => 128);
  const alone = expertsSplitPlan(c, rows, 3.06e6, 'split');
  assert.ok(alone.onGpu.includes(0), 'without factors the model splits');
  const learned = expertsSplitPlan({ ...c, splitCpuX: 1.86, splitGpuX: 1.31 }, rows, 3.06e6, 'split');
  assert.deepEqual(learned.onGpu, rows.map(() => 1), 'with them: all on the GPU');
});

test('expert cost model: the GPU wins big batches, the CPU one token (Qwen3-30B-A3B Q4_K_M constants of the H100 machine)', () => {
  const c: ExpertCostConstants = { pcieGbps: 52.3, gpuBaseUs: 30.9, gpuRowUs: 0.027, gpuCallUs: 21.5, cpuBaseUs: 36.2, cpuRowUs: 1.48 };
  const bytes = 3.06e6;
  const one = expertsSplitPlan(c, Array.from({ length: 128 }, (_, e) => (e < 8 ? 1 : 0)), bytes, 'split');
  assert.ok(one.onGpu.reduce((a, b) => a + b, 0) <= 4, 'one token: mostly the CPU');
  const big = expertsSplitPlan(c, Array.from({ length: 128 }, () => 128), bytes, 'split');
  const k = big.onGpu.reduce((a, b) => a + b, 0);
  assert.ok(k > 64 && k < 128, `2048 tokens: most experts on the GPU, some on the CPU (k=${k})`);
});

test('expert cost model: a malformed MIXTILE_EXPERT_COST is a clear error', { skip: standInUnlessSet() }, () => {
  const synth = (t: GgmlType, d: number[], s: number) => new NativeWeight(addon().weightSynth(t, d, s) as NativeHandle, t, d);
  const w = { gate: synth(GgmlType.Q8_0, [256, 256, 4], 1), up: synth(GgmlType.Q8_0, [256, 256, 4], 2), down: synth(GgmlType.Q8_0, [256, 256, 4], 3), router: synth(GgmlType.F32, [256, 4], 4) };
  const h = expertsLoad(w);
  const saved = process.env.MIXTILE_EXPERT_COST;
  try {
    process.env.MIXTILE_EXPERT_COST = 'pcie_gbps=fast';
    assert.throws(() => gpuExpertsCost(h), /MIXTILE_EXPERT_COST: "pcie_gbps=fast" is not key=non-negative number/);
    process.env.MIXTILE_EXPERT_COST = 'bandwidth=3';
    assert.throws(() => gpuExpertsCost(h), /unknown key "bandwidth"/);
  } finally {
    if (saved === undefined) delete process.env.MIXTILE_EXPERT_COST;
    else process.env.MIXTILE_EXPERT_COST = saved;
    h.dispose();
  }
});
