// `mixtile inspect FILE --rules R`: placement computed from a real GGUF header, bytes attributed to
// the module each tensor belongs to, first rule wins and later matches are shown as shadowed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { readGguf } from '../../src/formats/gguf-read.ts';
import { placementOfModel } from '../../src/model/placement.ts';
import { synthModel } from '../../src/model/synth.ts';
import { RuleError } from '../../src/optimize/rules.ts';
import { probeHardware } from '../../src/optimize/hardware.ts';

test('placement of a synth tiny model under the cpu preset and a custom rule file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mixtile-placement-'));
  try {
    const out = join(dir, 'tiny.gguf');
    await synthModel({ preset: 'tiny', out, fileType: 'Q4_K_M' });
    const gguf = await readGguf(out);
    const totalBytes = [...gguf.tensors.values()].reduce((s, t) => s + t.nBytes, 0);

    const cpu = placementOfModel(gguf, 'cpu');
    assert.deepEqual(cpu.unclaimed, [], 'every tensor has an HF module');
    assert.equal(cpu.ramBytes, totalBytes, 'all weights in RAM under the cpu preset');
    assert.equal(cpu.vramBytes, 0);
    const experts = cpu.rows.find((r) => r.name === 'model.layers.1.mlp.experts')!;
    const exps = ['gate', 'up', 'down'].map((p) => gguf.tensors.get(`blk.1.ffn_${p}_exps.weight`)!.nBytes);
    assert.equal(experts.bytes, exps[0]! + exps[1]! + exps[2]!, 'the three stacked expert tensors belong to the experts module');
    assert.equal(experts.operator, 'Experts');

    // Two rules match the experts: the first (line 2) wins, the second is reported as shadowed.
    const rules = join(dir, 'rules.yaml');
    writeFileSync(
      rules,
      [
        '- match:',
        '    name: "^model\\\\.layers\\\\.1\\\\.mlp\\\\.experts$"',
        '  replace:',
        '    class: KTransformersExperts',
        '    kwargs: { backend: AVX512, generate_device: cpu, prefill_device: cpu }',
        '- match:',
        '    name: "experts$"',
        '  replace:',
        '    class: Experts',
        '    kwargs: { generate_device: cpu }',
        '',
      ].join('\n'),
    );
    const custom = placementOfModel(gguf, rules);
    const row = custom.rows.find((r) => r.name === 'model.layers.1.mlp.experts')!;
    assert.equal(row.source, `${rules}:1`);
    assert.deepEqual(row.shadowed, [`${rules}:6`]);
    const row0 = custom.rows.find((r) => r.name === 'model.layers.0.mlp.experts')!;
    assert.equal(row0.source, `${rules}:6`);

    assert.throws(() => placementOfModel(gguf, join(dir, 'missing.yaml')), (e: unknown) => e instanceof RuleError || (e as NodeJS.ErrnoException).code === 'ENOENT');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('inspect --rules qwen3moe-hybrid with MIXTILE_GPU_WEIGHTS=bf16: the GPU part as the loader allocates it (BF16 weights, KV, buffers)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mixtile-placement-gpu-'));
  const prev = process.env.MIXTILE_GPU_WEIGHTS;
  process.env.MIXTILE_GPU_WEIGHTS = 'bf16';
  try {
    const out = join(dir, 'tiny.gguf');
    await synthModel({ preset: 'tiny', out, fileType: 'Q4_K_M' });
    const gguf = await readGguf(out);
    const withGpu = { ...probeHardware(), gpus: [{ index: 0, name: 'Test GPU', memoryTotalBytes: 80 * 2 ** 30, memoryFreeBytes: 80 * 2 ** 30 }], gpuNote: undefined };
    const cpuOnly = { ...probeHardware(), gpus: [], gpuNote: 'no GPU in this test' };
    assert.equal(placementOfModel(gguf, 'qwen3moe-hybrid', { hardware: cpuOnly }).gpu, undefined, 'no GPU part when the rules fall back to the CPU');

    const p = placementOfModel(gguf, 'qwen3moe-hybrid', { hardware: withGpu, ctx: 1024, slots: 2 });
    assert.ok(p.gpu, 'the hybrid preset puts attention, router and lm_head on the GPU');
    const lmHead = gguf.tensors.get('output.weight')!;
    const [hidden, vocab] = lmHead.dims as [number, number];
    // The Q4_K_M file stores lm_head in Q6_K; on the GPU it is BF16, so the loaded weights exceed the file's VRAM rows.
    assert.ok(p.gpu.weightsBytes >= vocab * hidden * 2, `lm_head alone is ${vocab * hidden * 2} bytes as BF16, got ${p.gpu.weightsBytes}`);
    assert.ok(p.gpu.weightsBytes > p.vramBytes, `BF16 on the GPU (${p.gpu.weightsBytes}) exceeds the file's bytes (${p.vramBytes})`);
    const layers = [...gguf.tensors.keys()].filter((k) => /^blk\.\d+\.attn_k\.weight$/.test(k)).length;
    const kvDim = gguf.tensors.get('blk.0.attn_k.weight')!.dims[1]!; // kv heads x head dim
    assert.equal(p.gpu.kvBytes, 2 * layers * 2 * 1024 * kvDim * 2, 'K and V of every layer, 2 slots x 1024 positions, f16');
    assert.equal(p.gpu.ctx, 1024);
    assert.equal(p.gpu.slots, 2);
    assert.ok(p.gpu.workspaceBytes > 0);
  } finally {
    if (prev === undefined) delete process.env.MIXTILE_GPU_WEIGHTS;
    else process.env.MIXTILE_GPU_WEIGHTS = prev;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('inspect --rules qwen3moe-hybrid with MIXTILE_GPU_WEIGHTS=quantized: Q8_0 / K-quant GPU matrices at their file bytes, plus one BF16 scratch', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mixtile-placement-gpuq-'));
  const prev = process.env.MIXTILE_GPU_WEIGHTS;
  try {
    const out = join(dir, 'tiny.gguf');
    await synthModel({ preset: 'tiny', out, fileType: 'Q4_K_M' });
    const gguf = await readGguf(out);
    const withGpu = { ...probeHardware(), gpus: [{ index: 0, name: 'Test GPU', memoryTotalBytes: 80 * 2 ** 30, memoryFreeBytes: 80 * 2 ** 30 }], gpuNote: undefined };
    process.env.MIXTILE_GPU_WEIGHTS = 'bf16';
    const bf = placementOfModel(gguf, 'qwen3moe-hybrid', { hardware: withGpu }).gpu!;
    process.env.MIXTILE_GPU_WEIGHTS = 'quantized';
    const q = placementOfModel(gguf, 'qwen3moe-hybrid', { hardware: withGpu }).gpu!;
    assert.equal(bf.weightsMode, 'bf16');
    assert.equal(q.weightsMode, 'quantized');
    delete process.env.MIXTILE_GPU_WEIGHTS;
    assert.equal(placementOfModel(gguf, 'qwen3moe-hybrid', { hardware: withGpu }).gpu!.weightsMode, 'quantized', 'the default');
    // The GPU matrices: q/k/v/o of every layer and lm_head (the output tensor).
    const gemv = new Set(['Q8_0', 'Q4_K', 'Q5_K', 'Q6_K'].map((n) => GgmlType[n as keyof typeof GgmlType]));
    let saved = 0;
    let scratch = 0;
    let quantized = 0;
    for (const [name, t] of gguf.tensors) {
      const m = /^blk\.\d+\.attn_(q|k|v|output)\.weight$/.exec(name);
      if (!m && name !== 'output.weight') continue;
      if (!gemv.has(t.type)) continue;
      quantized++;
      saved += t.nElements * 2 - t.nBytes;
      if (m) {
        const layer = name.split('.')[1];
        const qkv = ['q', 'k', 'v'].reduce((s, p) => s + gguf.tensors.get(`blk.${layer}.attn_${p}.weight`)!.nElements, 0);
        scratch = Math.max(scratch, 2 * (m[1] === 'output' ? t.nElements : qkv));
      }
    }
    assert.ok(quantized > 0, 'the Q4_K_M file has K-quant attention tensors');
    assert.equal(bf.weightsBytes - q.weightsBytes, saved, 'each quantized matrix at its file bytes instead of 2 per element');
    assert.equal(q.workspaceBytes - bf.workspaceBytes, scratch, 'one BF16 scratch for the largest batched weight (fused q/k/v), none for lm_head');
    assert.throws(() => {
      process.env.MIXTILE_GPU_WEIGHTS = 'int4';
      placementOfModel(gguf, 'qwen3moe-hybrid', { hardware: withGpu });
    }, /MIXTILE_GPU_WEIGHTS must be 'quantized' or 'bf16', got 'int4'/);
  } finally {
    if (prev === undefined) delete process.env.MIXTILE_GPU_WEIGHTS;
    else process.env.MIXTILE_GPU_WEIGHTS = prev;
    rmSync(dir, { recursive: true, force: true });
  }
});
