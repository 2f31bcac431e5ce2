// Placement: first match wins, recursive:false hands children to the parent's operator, unmatched
// rules warn, and backends or GPUs this machine lacks fall back (or throw under strict).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { parseRules, loadRules, placeModules, describePlacement, attributeBytes, resolvePlacements, RuleError } from '../../src/optimize/rules.ts';
import { fakeHardware, qwen3MoeModules } from './fixtures.ts';

const modules = qwen3MoeModules(2);
const amxGpu = fakeHardware({ amx: true, gpus: 1 });

test('first matching rule wins; later matches are listed as shadowed', () => {
  const rules = parseRules(
    [
      '- match: {name: "\\\\.self_attn\\\\.q_proj$"}',
      '  replace: {class: Linear, kwargs: {generate_device: cpu}}',
      '- match: {class: torch.nn.Linear}',
      '  replace: {class: Linear, kwargs: {generate_device: cuda}}',
    ].join('\n'),
    'f.yaml',
  );
  const { placements } = placeModules(modules, rules, amxGpu);
  const q = placements.get('model.layers.1.self_attn.q_proj')!;
  assert.equal(q.source, 'f.yaml:1');
  assert.equal(q.ruleIndex, 0);
  assert.deepEqual(q.shadowed, ['f.yaml:3']);
  assert.equal((q.kwargs as { generateDevice: string }).generateDevice, 'cpu');
  const o = placements.get('model.layers.1.self_attn.o_proj')!;
  assert.equal(o.source, 'f.yaml:3');
  assert.deepEqual(o.kwargs, { generateDevice: 'cuda', prefillDevice: 'cuda' });
  // Names are searched like Python's re.search: "\.self_attn\.q_proj$" needs no leading ".*".
  assert.equal(placements.get('model.layers.0.self_attn.q_proj')!.source, 'f.yaml:1');
});

test('recursive: false gives children to the parent operator; unmatched modules get Default', () => {
  const rules = parseRules('- match: {name: "^model\\\\.layers\\\\.\\\\d+\\\\.mlp\\\\.experts$"}\n  replace: {class: Experts}\n  recursive: false\n- match: {class: Linear}\n  replace: {class: Linear}\n', 'r.yaml');
  const { placements, coveredBy, warnings } = placeModules(modules, rules, fakeHardware({ avx512: true }));
  assert.equal(placements.get('model.layers.0.mlp.experts')!.operator, 'Experts');
  // The experts' own Linear child would match rule 2, but it belongs to the Experts operator.
  assert.equal(placements.has('model.layers.0.mlp.experts.0.gate_proj'), false);
  assert.equal(coveredBy.get('model.layers.0.mlp.experts.0.gate_proj'), 'model.layers.0.mlp.experts');
  assert.equal(coveredBy.get('model.layers.1.mlp.experts.0'), 'model.layers.1.mlp.experts');
  // The sibling router is a Linear of its own.
  assert.equal(placements.get('model.layers.0.mlp.gate')!.operator, 'Linear');
  const norm = placements.get('model.norm')!;
  assert.deepEqual([norm.operator, norm.ruleIndex, norm.source], ['Default', -1, 'default']);
  assert.deepEqual(norm.kwargs, { generateDevice: 'cpu', prefillDevice: 'cpu' }, 'no GPU: defaults to the CPU');
  // Experts defaults: backend auto (the native op picks per weight type), ops follow the devices.
  assert.deepEqual(placements.get('model.layers.0.mlp.experts')!.kwargs, { generateDevice: 'cpu', prefillDevice: 'cpu', backend: 'auto', prefillOp: 'cpu', generateOp: 'cpu' });
  assert.deepEqual(warnings, []);
});

test('a rule that matches nothing is a warning naming it', () => {
  const rules = parseRules('- match: {name: "^model\\\\.layers\\\\.\\\\d+\\\\.mlp\\\\.shared_expert$"}\n  replace: {class: Default}\n- match: {class: DeepseekV3MoE}\n  replace: {class: MoeBlock}\n', 'u.yaml');
  const { warnings } = placeModules(modules, rules, amxGpu);
  assert.deepEqual(warnings, [
    'u.yaml:1: rule 1 (name "^model\\.layers\\.\\d+\\.mlp\\.shared_expert$") matched no module',
    'u.yaml:3: rule 2 (class DeepseekV3MoE) matched no module',
  ]);
});

test('backends and GPUs this machine lacks fall back with one warning per rule, or throw under strict', () => {
  const rules = loadRules('qwen3moe-hybrid-amx');
  const cpuOnly = fakeHardware({ avx512: true });
  const { placements, warnings } = placeModules(modules, rules, cpuOnly);
  const experts = placements.get('model.layers.1.mlp.experts')!;
  assert.deepEqual(experts.kwargs, { backend: 'AVX512', prefillDevice: 'cpu', generateDevice: 'cpu', outDevice: 'cpu', prefillOp: 'cpu', generateOp: 'cpu' });
  assert.equal((placements.get('model.layers.0.self_attn')!.kwargs as { generateDevice: string }).generateDevice, 'cpu');
  const backendWarning = warnings.find((w) => w.includes('backend AMXInt8'));
  assert.match(backendWarning!, /^src\/optimize\/rules\/qwen3moe-hybrid-amx\.yaml:5: backend AMXInt8 needs AMX-INT8, this CPU has AVX-512 BF16 VNNI; using AVX512 \(set backend: AVX512 or see "mixtile doctor"\) \(2 modules\)$/);
  assert.ok(warnings.some((w) => /generate_device cuda needs a CUDA GPU and none was found \(nvidia-smi not found, so no NVIDIA driver is installed\); using cpu \(\d+ modules\)$/.test(w)), warnings.join('\n'));
  assert.throws(
    () => placeModules(modules, rules, fakeHardware({ avx512: true, gpus: 1 }), { strict: true }),
    (e: unknown) => e instanceof RuleError && /qwen3moe-hybrid-amx\.yaml:5:3: backend AMXInt8 needs AMX-INT8, this CPU has AVX-512 BF16 VNNI \(module model\.layers\.0\.mlp\.experts; --strict forbids fallbacks\)/.test(e.message),
  );
  // AMX present but the kernel refused the tile permission: same fallback, AVX512.
  const denied = placeModules(modules, rules, fakeHardware({ amx: true, gpus: 1, amxDenied: true }));
  assert.equal((denied.placements.get('model.layers.0.mlp.experts')!.kwargs as { backend: string }).backend, 'AVX512');
  // A GPU index past the machine's GPUs falls back to cuda:0.
  const far = parseRules('- match: {class: Linear}\n  replace: {class: Linear, kwargs: {generate_device: "cuda:3"}}\n', 'g.yaml');
  const r = placeModules(modules, far, fakeHardware({ gpus: 2 }));
  assert.equal((r.placements.get('lm_head')!.kwargs as { generateDevice: string }).generateDevice, 'cuda:0');
  assert.ok(r.warnings.some((w) => w.startsWith('g.yaml:1: generate_device cuda:3, but this machine has 2 GPU(s) (cuda:0..cuda:1); using cuda:0')));
});

test('the presets place a Qwen3-MoE as documented on an AMX + GPU machine', () => {
  const { placements, warnings } = placeModules(modules, loadRules('qwen3moe-hybrid-amx'), amxGpu);
  assert.deepEqual(warnings, []);
  const op = (n: string) => placements.get(n)!.operator;
  assert.equal(op('model.layers.0.mlp.experts'), 'Experts');
  assert.equal(op('model.layers.0.mlp'), 'MoeBlock');
  assert.equal(op('model.layers.0.self_attn'), 'Attention');
  assert.equal(op('model.layers.0.self_attn.q_proj'), 'Linear');
  assert.equal(op('model.layers.0.mlp.gate'), 'Linear');
  assert.equal(op('model.layers.0.input_layernorm'), 'RMSNorm');
  assert.equal(op('model.layers.0.self_attn.rotary_emb'), 'RotaryEmbedding');
  assert.equal(op('model.embed_tokens'), 'Embedding');
  assert.equal(op('lm_head'), 'LMHead');
  assert.equal(op('model.layers.0'), 'Default');
  assert.equal((placements.get('model.layers.0.mlp.experts')!.kwargs as { backend: string }).backend, 'AMXInt8');
  const cpu = placeModules(modules, loadRules('cpu'), amxGpu);
  for (const [name, p] of cpu.placements) assert.equal((p.kwargs as { generateDevice: string }).generateDevice, 'cpu', name);
});

test('a KTransformers rule file (Qwen3Moe-serve-amx.yaml shape) loads and places like KTransformers', () => {
  const file = fileURLToPath(new URL('./Qwen3Moe-serve-amx.yaml', import.meta.url));
  const rules = loadRules(file);
  assert.deepEqual(rules.warnings, [`${rules.file}:68: kwarg per_layer_prefill_intput_threshold is ignored: layer-wise prefill is not implemented; the whole model prefills at once`]);
  const { placements, coveredBy, warnings } = placeModules(modules, rules, amxGpu);
  const p = (n: string) => placements.get(n)!;
  assert.deepEqual(p('model.layers.0.mlp.experts').kwargs, { prefillDevice: 'cuda', prefillOp: 'gpu', generateDevice: 'cpu', generateOp: 'cpu', outDevice: 'cuda', backend: 'AMXInt8' });
  assert.equal(p('model.layers.0.mlp').operator, 'MoeBlock');
  assert.equal(p('model.layers.0.self_attn').operator, 'Attention');
  assert.deepEqual(p('lm_head').kwargs, { generateDevice: 'cuda', prefillDevice: 'cuda', generateOp: 'quantized', prefillOp: 'dense' });
  assert.equal(p('model.layers.1.mlp.gate').operator, 'Linear');
  // Matched by the Qwen2-MoE rotary class, as KTransformers' Qwen3 files do.
  assert.equal(p('model.layers.1.self_attn.rotary_emb').operator, 'RotaryEmbedding');
  assert.deepEqual([p('model.embed_tokens').operator, (p('model.embed_tokens').kwargs as { generateDevice: string }).generateDevice], ['Default', 'cpu']);
  assert.equal(p('model').operator, 'Default');
  assert.equal(coveredBy.get('model.layers.0.mlp.experts.0'), 'model.layers.0.mlp.experts');
  // Its dense-MLP rule has nothing to match in a sparse model.
  assert.deepEqual(warnings.slice(1), [`${rules.file}:86: rule 10 (class ktransformers.models.modeling_qwen3_moe.Qwen3MoeMLP) matched no module`]);
});

test('describePlacement: rule per module and RAM / VRAM totals', () => {
  const sized = modules.map((m) => ({ ...m, bytes: m.name.endsWith('.experts.0.gate_proj') ? 1000 : m.name.endsWith('q_proj') ? 10 : 0 }));
  const d = describePlacement(sized, loadRules('qwen3moe-hybrid-amx'), amxGpu);
  const row = d.rows.find((r) => r.name === 'model.layers.0.mlp.experts.0.gate_proj')!;
  assert.deepEqual([row.operator, row.via, row.location, row.bytes], ['Experts', 'model.layers.0.mlp.experts', 'RAM', 1000]);
  assert.equal(d.ramBytes, 2000);
  assert.equal(d.vramBytes, 20);
  assert.equal(d.rows.length, modules.length);
});

test('attributeBytes: each weight goes to the deepest listed module above it', () => {
  const { modules: sized, unclaimed } = attributeBytes(
    [
      { name: 'model.layers.0.mlp', className: 'X' },
      { name: 'model.layers.0.mlp.experts', className: 'Y' },
      { name: 'lm_head', className: 'torch.nn.Linear' },
    ],
    [
      { name: 'model.layers.0.mlp.experts.gate_proj.weight', bytes: 100 },
      { name: 'model.layers.0.mlp.experts.down_proj.weight', bytes: 50 },
      { name: 'model.layers.0.mlp.gate.weight', bytes: 7 },
      { name: 'lm_head.weight', bytes: 9 },
      { name: 'model.norm.weight', bytes: 1 },
    ],
  );
  assert.deepEqual(sized.map((m) => m.bytes), [7, 150, 9]);
  assert.deepEqual(unclaimed, ['model.norm.weight']);
});

test('resolvePlacements: without a rule file, the preset doctor names for the machine', () => {
  const r = resolvePlacements(modules, undefined, { hardware: fakeHardware({ amx: true, gpus: 1 }) });
  assert.match(r.rules.file, /qwen3moe-hybrid-amx\.yaml$/);
  assert.equal((r.placements.get('model.layers.0.mlp.experts')!.kwargs as { backend: string }).backend, 'AMXInt8');
  const cpu = resolvePlacements(modules, undefined, { hardware: fakeHardware() });
  assert.match(cpu.rules.file, /cpu\.yaml$/);
  assert.equal((cpu.placements.get('model.layers.0.mlp.experts')!.kwargs as { backend: string }).backend, 'auto');
  assert.throws(() => resolvePlacements(modules, 'qwen3moe-hybrid-amx', { hardware: fakeHardware(), strict: true }), RuleError);
});
