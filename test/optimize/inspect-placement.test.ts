// `mixtile inspect FILE --rules R`: placement computed from a real GGUF header, bytes attributed to
// the module each tensor belongs to, first rule wins and later matches are shown as shadowed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGguf } from '../../src/formats/gguf-read.ts';
import { placementOfModel } from '../../src/model/placement.ts';
import { synthModel } from '../../src/model/synth.ts';
import { RuleError } from '../../src/optimize/rules.ts';

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
