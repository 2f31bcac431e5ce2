// `mixtile doctor --json`: the shape scripts rely on.
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { register } from '../../src/cli/doctor.ts';
import { PRESETS } from '../../src/optimize/rules.ts';

async function run(args: string[]): Promise<string> {
  const program = new Command('mixtile').exitOverride();
  register(program);
  const log = mock.method(console, 'log', () => {});
  try {
    await program.parseAsync(['node', 'mixtile', 'doctor', ...args]);
    return log.mock.calls.map((c) => c.arguments.join(' ')).join('\n');
  } finally {
    log.mock.restore();
  }
}

test('doctor --json', async () => {
  const d = JSON.parse(await run(['--json']));
  assert.deepEqual(Object.keys(d).sort(), ['backends', 'checks', 'cuda', 'hardware', 'preset']);
  assert.deepEqual(Object.keys(d.hardware.cpu.flags).sort(), ['amxBf16', 'amxInt8', 'amxTile', 'avx2', 'avx512Bf16', 'avx512Vnni', 'avx512bw', 'avx512f', 'avx512vl']);
  assert.ok(['granted', 'denied', 'not-needed', 'unknown'].includes(d.hardware.cpu.amxPermission));
  assert.equal(typeof d.hardware.memory.totalBytes, 'number');
  assert.ok(Array.isArray(d.hardware.gpus));
  for (const c of d.checks) {
    assert.equal(typeof c.id, 'string');
    assert.equal(typeof c.ok, 'boolean');
    assert.equal(typeof c.found, 'string');
    assert.equal(c.ok ? c.fix === undefined : typeof c.fix === 'string', true, `check ${c.id}: a fix exactly when not ok`);
  }
  assert.deepEqual(Object.keys(d.backends).sort(), ['AMXBF16', 'AMXInt4', 'AMXInt8', 'AVX512', 'generic', 'llamafile']);
  assert.equal(d.backends.generic.ok, true);
  assert.ok((PRESETS as readonly string[]).includes(d.preset.name));
  assert.match(d.preset.path, /src\/optimize\/rules\/.*\.yaml$/);
});

test('doctor prints found, missing with fixes, and the preset', async () => {
  const text = await run([]);
  assert.match(text, /^CPU {5}.+\(\d+ cores, \d+ threads\)/);
  assert.match(text, /Experts backends: AMXInt8 (yes|no)/);
  assert.match(text, /\nPreset {2}(cpu|qwen3moe-hybrid|qwen3moe-hybrid-amx): /);
  for (const line of text.split('\n').filter((l) => l.startsWith('  missing'))) assert.ok(text.includes(`${line}\n          fix: `), line);
});
