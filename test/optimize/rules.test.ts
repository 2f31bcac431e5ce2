// Rule file parsing: every error names file:line:col and the offending text; kwargs come out
// camelCase; Python regexes are translated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRules, loadRules, RuleError, PRESETS } from '../../src/optimize/rules.ts';
import { compilePythonRegex, PythonRegexError } from '../../src/optimize/python-regex.ts';

const ok = `
- match:
    name: "^model\\\\.layers\\\\.\\\\d+\\\\.mlp\\\\.experts$"
  replace:
    class: Experts
    kwargs:
      backend: AVX512
      prefill_device: cpu
      generateDevice: cpu
      generate_op: KExpertsCPU
  recursive: false
- match:
    class: torch.nn.Linear
  replace:
    class: ktransformers.operators.linear.KTransformersLinear
    kwargs: { prefill_op: null, generate_op: dense }
`;

test('a valid file: operators resolved, kwargs camelCase, KTransformers ops translated', () => {
  const set = parseRules(ok, 'ok.yaml');
  assert.equal(set.rules.length, 2);
  const [experts, linear] = set.rules;
  assert.equal(experts.operator, 'Experts');
  assert.deepEqual(experts.kwargs, { backend: 'AVX512', prefillDevice: 'cpu', generateDevice: 'cpu', generateOp: 'cpu' });
  assert.equal(experts.recursive, false);
  assert.equal(experts.source, 'ok.yaml:2');
  assert.ok(experts.name!.test('model.layers.12.mlp.experts'));
  assert.ok(!experts.name!.test('model.layers.12.mlp.experts.3'));
  assert.equal(linear.operator, 'Linear');
  assert.equal(linear.className, 'torch.nn.Linear');
  assert.deepEqual(linear.kwargs, { generateOp: 'dense' });
  assert.equal(linear.recursive, true);
  assert.deepEqual(set.warnings, []);
});

/** [what, file text, expected message (after "bad.yaml:")] */
const BAD: Array<[string, string, RegExp]> = [
  ['not YAML', '- match: {name: "x"\n  replace: [', /^bad\.yaml:\d+:\d+: invalid YAML: /],
  ['duplicate key', '- match:\n    name: a\n    name: b\n  replace: {class: Default}\n', /^bad\.yaml:3:5: invalid YAML: Map keys must be unique/],
  ['not a list', 'match: {name: a}\n', /^bad\.yaml:1:1: expected a list of rules .*found a mapping/],
  ['rule not a mapping', '- just a string\n', /^bad\.yaml:1:3: rule 1: expected a mapping with match and replace, found string "just a string"/],
  ['unknown rule key', '- match: {name: a}\n  replace: {class: Default}\n  recurse: false\n', /^bad\.yaml:3:3: unknown key "recurse" in rule 1 \(expected match, replace, recursive\)/],
  ['match missing', '- replace: {class: Default}\n', /^bad\.yaml:1:3: rule 1: "match" must be a mapping with name and\/or class, found nothing/],
  ['empty match', '- match: {}\n  replace: {class: Default}\n', /^bad\.yaml:1:10: rule 1: match needs at least one of name and class/],
  ['unknown match key', '- match: {nme: a}\n  replace: {class: Default}\n', /^bad\.yaml:1:11: unknown key "nme" in rule 1 match \(expected name, class\)/],
  ['name not a string', '- match: {name: [a]}\n  replace: {class: Default}\n', /^bad\.yaml:1:17: match\.name must be a string, found a list/],
  ['bad regex', '- match:\n    name: "^model\\\\.layers\\\\.(\\\\d+$"\n  replace: {class: Default}\n', /^bad\.yaml:2:11: bad name regex "\^model\\\.layers\\\.\(\\d\+\$": invalid regular expression: .*Unterminated group/],
  ['unknown class', '- match: {name: a}\n  replace:\n    class: ktransformers.operators.experts.KExpertsGPU\n', /^bad\.yaml:3:12: unknown operator "ktransformers\.operators\.experts\.KExpertsGPU" \(known: Experts, MoeBlock, Linear, .*Default/],
  ['unknown replace key', '- match: {name: a}\n  replace: {class: Default, device: cuda}\n', /^bad\.yaml:2:29: unknown key "device" in rule 1 replace \(expected class, kwargs\)/],
  ['kwargs not a mapping', '- match: {name: a}\n  replace: {class: Default, kwargs: [cpu]}\n', /^bad\.yaml:2:37: replace\.kwargs must be a mapping, found a list/],
  ['unknown kwarg', '- match: {name: a}\n  replace:\n    class: Experts\n    kwargs:\n      prefil_device: cpu\n', /^bad\.yaml:5:7: unknown kwarg "prefil_device" for Experts \(known: prefillDevice, generateDevice, backend, prefillOp, generateOp, outDevice, maxDeferredExpertsPerToken, deferredExpertsJoin; snake_case also accepted\)/],
  ['unknown device', '- match: {name: a}\n  replace:\n    class: Attention\n    kwargs: {generate_device: gpu0}\n', /^bad\.yaml:4:31: kwarg generate_device of Attention: expected a device: cpu, cuda or cuda:N, found gpu0/],
  ['wrong kwarg type', '- match: {name: a}\n  replace:\n    class: RMSNorm\n    kwargs:\n      prefill_device: 1\n', /^bad\.yaml:5:23: kwarg prefill_device of RMSNorm: .*found 1/],
  ['unknown backend', '- match: {name: a}\n  replace:\n    class: Experts\n    kwargs: {backend: AMXFP4}\n', /^bad\.yaml:4:23: kwarg backend of Experts: .*"AMXInt8".*found AMXFP4/],
  ['unknown op', '- match: {name: a}\n  replace:\n    class: Linear\n    kwargs: {generate_op: KLinearGPTQ}\n', /^bad\.yaml:4:27: kwarg generate_op of Linear: .*found KLinearGPTQ/],
  ['same kwarg twice', '- match: {name: a}\n  replace:\n    class: Linear\n    kwargs: {prefill_device: cpu, prefillDevice: cpu}\n', /^bad\.yaml:4:35: kwarg "prefillDevice" repeats "prefill_device"/],
  ['recursive not boolean', '- match: {name: a}\n  replace: {class: Default}\n  recursive: nope\n', /^bad\.yaml:3:14: rule 1: recursive must be true or false, found string "nope"/],
  ['second rule bad', `${ok}- match: {class: X}\n  replace: {class: Nope}\n`, /^bad\.yaml:18:20: unknown operator "Nope"/],
];

for (const [what, text, expected] of BAD) {
  test(`error: ${what}`, () => {
    assert.throws(
      () => parseRules(text, 'bad.yaml'),
      (e: unknown) => {
        assert.ok(e instanceof RuleError, `expected a RuleError, got ${e}`);
        assert.match(e.message, expected);
        return true;
      },
    );
  });
}

test('ignored kwargs and approximate aliases warn, and throw under strict', () => {
  const text = '- match: {name: "^model$"}\n  replace:\n    class: ktransformers.operators.models.KQwen2MoeModel\n    kwargs:\n      per_layer_prefill_intput_threshold: 0\n';
  const set = parseRules(text, 'w.yaml');
  assert.deepEqual(set.rules[0].kwargs, {});
  assert.match(set.warnings[0], /^w\.yaml:5: kwarg per_layer_prefill_intput_threshold is ignored: layer-wise prefill is not implemented/);
  assert.throws(() => parseRules(text, 'w.yaml', { strict: true }), /RuleError: w\.yaml:5:7: kwarg per_layer_prefill_intput_threshold is ignored.*not allowed with --strict/);
  const fp8 = parseRules('- match: {class: Linear}\n  replace: {class: ktransformers.operators.linear.KLinearFP8}\n', 'f.yaml');
  assert.match(fp8.warnings[0], /^f\.yaml:2: ktransformers\.operators\.linear\.KLinearFP8: no FP8 weights/);
});

test('a missing replace.class means default, as in KTransformers', () => {
  const set = parseRules('- match: {name: "^model\\\\.embed_tokens"}\n  replace:\n    kwargs: {generate_device: cpu}\n', 'd.yaml');
  assert.equal(set.rules[0].operator, 'Default');
  assert.equal(set.rules[0].replaceClass, 'default');
});

test('presets load without warnings; unknown paths say what is expected', () => {
  for (const p of PRESETS) {
    const set = loadRules(p);
    assert.ok(set.rules.length >= 5, p);
    assert.deepEqual(set.warnings, [], p);
    assert.match(set.file, new RegExp(`${p}\\.yaml$`));
  }
  assert.throws(() => loadRules('no-such-rules.yaml'), /RuleError: no-such-rules\.yaml:1:1: rule file not found \(expected a YAML file or a preset: cpu, qwen3moe-hybrid, qwen3moe-hybrid-amx\)/);
});

test('Python regex translation', () => {
  const named = compilePythonRegex('^model\\.layers\\.(?P<layer>\\d+)\\.mlp\\.experts\\Z');
  assert.equal(named.exec('model.layers.7.mlp.experts')?.groups?.layer, '7');
  assert.ok(!named.test('model.layers.7.mlp.experts.0'));
  const backref = compilePythonRegex('\\A(?P<a>\\w+)\\.(?P=a)$');
  assert.ok(backref.test('x.x'));
  assert.ok(!backref.test('x.y'));
  assert.ok(compilePythonRegex('(?i)^LM_HEAD$').test('lm_head'));
  // \A and \Z inside a character class stay literal; so does an escaped backslash before A.
  assert.ok(compilePythonRegex('[\\A]').test('A'));
  assert.ok(compilePythonRegex('^a\\\\A$').test('a\\A'));
  assert.ok(compilePythonRegex('^model\\.layers\\.(?!.*mlp\\.shared_expert_gate).*$').test('model.layers.0.mlp.gate'));
  assert.ok(!compilePythonRegex('^model\\.layers\\.(?!.*mlp\\.shared_expert_gate).*$').test('model.layers.0.mlp.shared_expert_gate'));
  assert.throws(() => compilePythonRegex('a(?i)b'), (e: unknown) => e instanceof PythonRegexError && e.offset === 1 && /only supported at the start/.test(e.message));
  assert.throws(() => compilePythonRegex('(?u)a'), /inline flag "u"/);
  assert.throws(() => compilePythonRegex('(?P=a'), /unterminated/);
});
