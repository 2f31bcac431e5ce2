// Every command that loads a model says in --help what it runs on by default (qwen3moe-hybrid where
// CUDA is usable) and how to stay on the CPU (--rules cpu); doctor says the same in its epilogue.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';

const LOADERS = ['generate', 'serve', 'chat', 'bench'] as const;

async function help(name: string): Promise<string> {
  const program = new Command('mixtile').exitOverride();
  (await import(`../../src/cli/${name}.ts`)).register(program);
  const cmd = program.commands.find((c) => c.name() === name)!;
  let text = '';
  cmd.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) });
  cmd.exitOverride();
  try {
    cmd.outputHelp();
  } catch {
    // outputHelp does not exit; exitOverride only guards against it.
  }
  return text.replace(/\s+/g, ' ');
}

for (const name of LOADERS) {
  test(`mixtile ${name} --help: the hybrid default and --rules cpu`, async () => {
    const text = await help(name);
    assert.match(text, /default: qwen3moe-hybrid \(experts on the CPU, the rest on the GPU\) where CUDA is usable, else all on the CPU/);
    assert.match(text, /--rules cpu forces CPU only/);
    assert.match(text, /--rules <file>/, 'the --rules alias the help names is listed');
  });
}

test('mixtile doctor --help: the default the engine loads', async () => {
  const text = await help('doctor');
  assert.match(text, /use qwen3moe-hybrid where CUDA is usable/);
  assert.match(text, /--rules cpu forces the CPU/);
});
