// The rules' Linear / LMHead `backend` reaches the native linear layers of the attention projections
// and lm_head: a bad name fails naming the module (and the rule file line at parse time), AVX512 runs
// and matches auto where there is no AMX, and a named AMX backend on a CPU without AMX falls back to
// AVX512 with a warning (or fails under strict), as the experts' backend does.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { loadModel } from '../../src/model/load.ts';
import { Attention } from '../../src/operators/attention.ts';
import { LMHead } from '../../src/operators/lm-head.ts';
import { placeModules } from '../../src/optimize/place.ts';
import { loadRules, RuleError } from '../../src/optimize/rules.ts';
import { randomWeight } from '../kernels/helpers.ts';
import { writeSmallModel } from '../engine/small-model.ts';
import { fakeHardware, qwen3MoeModules } from '../optimize/fixtures.ts';

const ADDON = process.env.MIXTILE_ADDON ?? fileURLToPath(new URL('../../native/build/Release/mixtile.node', import.meta.url));
const skip = existsSync(ADDON) ? false : `native addon not built (${ADDON})`;

/** A rule file: q_proj (and so all four attention projections) and lm_head with `backend`. */
function rulesWith(dir: string, backend: string): string {
  const path = join(dir, `linear-${backend}.yaml`);
  writeFileSync(
    path,
    [
      '- match:',
      '    name: "^model\\\\.layers\\\\.\\\\d+\\\\.self_attn\\\\.q_proj$"',
      '  replace:',
      '    class: Linear',
      `    kwargs: { backend: ${backend}, prefill_device: cpu, generate_device: cpu }`,
      '- match:',
      '    name: "^lm_head$"',
      '  replace:',
      '    class: LMHead',
      `    kwargs: { backend: ${backend}, prefill_device: cpu, generate_device: cpu }`,
      '- match:',
      '    name: "^"',
      '  replace:',
      '    class: Default',
      '    kwargs: { prefill_device: cpu, generate_device: cpu }',
      '',
    ].join('\n'),
  );
  return path;
}

describe('Linear backend from the rules', { skip }, () => {
  let dir: string;
  let model: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mixtile-linear-backend-'));
    model = join(dir, 'small.gguf');
    await writeSmallModel(model, { type: GgmlType.BF16, nLayers: 1 });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the native layers take the backend: an unknown name fails naming the module', () => {
    const hidden = 64;
    const norm = randomWeight(GgmlType.F32, [hidden], 1).w;
    const out = randomWeight(GgmlType.BF16, [hidden, 96], 2).w;
    const head = new LMHead('lm_head', 1e-6, { backend: 'AMXInt3' });
    assert.throws(() => head.load({ norm, out }), /^Error: lm_head: linear: unknown backend "AMXInt3" \(known: auto, AMXBF16, AMXInt8, AVX512\)$/);
    const ok = new LMHead('lm_head', 1e-6, { backend: 'AVX512' });
    ok.load({ norm, out });
    ok.dispose();

    const proj = (m: number, k: number, seed: number) => randomWeight(GgmlType.BF16, [k, m], seed).w;
    const shape = { layer: 0, nHeads: 2, nKvHeads: 1, headDim: 32, eps: 1e-6, ropeTheta: 1e6 };
    const w = { norm, qProj: proj(64, hidden, 3), kProj: proj(32, hidden, 4), vProj: proj(32, hidden, 5), oProj: proj(hidden, 64, 6) };
    const attn = new Attention('model.layers.0.self_attn', shape, {}, undefined, { backend: 'fast' });
    assert.throws(() => attn.load(w), /model\.layers\.0\.self_attn: linear: unknown backend "fast"/);
    const avx = new Attention('model.layers.0.self_attn', shape, {}, undefined, { backend: 'AVX512' });
    avx.load(w);
    avx.dispose();
    for (const x of [norm, out, w.qProj, w.kProj, w.vProj, w.oProj]) x.dispose();
  });

  test('a rule with an unknown backend fails at parse time naming the file and line', () => {
    const path = rulesWith(dir, 'AMXInt3');
    assert.throws(() => loadRules(path), (e: unknown) => e instanceof RuleError && e.message.includes(path) && /backend/.test(e.message));
  });

  test('backend AVX512 loads and gives the logits of auto (no AMX repack either way here)', async () => {
    const batch = { tokens: Int32Array.from([5, 17, 99]), positions: Int32Array.from([0, 1, 2]), seqIds: Int32Array.from([0, 0, 0]), logitsFor: Int32Array.from([2]) };
    const auto = await loadModel(model, { ctxSize: 16, rules: rulesWith(dir, 'auto') });
    const avx = await loadModel(model, { ctxSize: 16, rules: rulesWith(dir, 'AVX512') });
    try {
      assert.deepEqual(avx.forward(batch), auto.forward(batch));
    } finally {
      auto.dispose();
      avx.dispose();
    }
  });

  test('a named AMX backend on a CPU without AMX falls back to AVX512 with a warning', async (t) => {
    const warnings: string[] = [];
    const m = await loadModel(model, { ctxSize: 16, rules: rulesWith(dir, 'AMXBF16'), onWarning: (w) => warnings.push(w) });
    m.dispose();
    const fallback = warnings.filter((w) => /backend AMXBF16 needs AMX-BF16, this CPU has .*; using AVX512/.test(w));
    // On an AMX machine the backend is honoured and nothing is said.
    if (!/\bamx_bf16\b/.test(readFileSync('/proc/cpuinfo', 'utf8'))) assert.equal(fallback.length, 2, warnings.join('\n'));
    else t.diagnostic('AMX present: no fallback expected');
  });
});

test('Linear / LMHead AMX backends fall back on a CPU without AMX, or fail under strict; on cuda they are not checked', () => {
  const modules = qwen3MoeModules(1);
  const rules = loadRules(fileURLToPath(new URL('./fixtures/linear-amx.yaml', import.meta.url)));
  const noAmx = fakeHardware({ avx512: true, gpus: 1 });
  const r = placeModules(modules, rules, noAmx);
  const kw = (name: string) => r.placements.get(name)!.kwargs as { backend?: string };
  assert.equal(kw('model.layers.0.self_attn.q_proj').backend, 'AVX512');
  assert.equal(kw('lm_head').backend, 'AVX512');
  assert.equal(kw('model.layers.0.self_attn.o_proj').backend, 'AMXInt8', 'a Linear on cuda keeps its backend (it does not run on the CPU)');
  assert.ok(r.warnings.some((w) => /linear-amx\.yaml:\d+: backend AMXInt8 needs AMX-INT8, this CPU has AVX-512 BF16 VNNI; using AVX512/.test(w)), r.warnings.join('\n'));
  assert.ok(r.warnings.some((w) => /linear-amx\.yaml:\d+: backend AMXBF16 needs AMX-BF16/.test(w)), r.warnings.join('\n'));
  assert.throws(() => placeModules(modules, rules, noAmx, { strict: true }), (e: unknown) => e instanceof RuleError && /backend AMX\w+ needs AMX-\w+, .* \(module [\w.]+; --strict forbids fallbacks\)/.test(e.message));
  const amx = placeModules(modules, rules, fakeHardware({ amx: true, gpus: 1 }), { strict: true });
  assert.equal((amx.placements.get('lm_head')!.kwargs as { backend?: string }).backend, 'AMXBF16');
});
