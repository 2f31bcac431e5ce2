// The `mixtile` command line: one file per command in this folder, each exporting register().
import { Command } from 'commander';

const COMMANDS: Array<() => Promise<{ register(program: Command): void }>> = [
  () => import('./generate.ts'),
  () => import('./serve.ts'),
  () => import('./chat.ts'),
  () => import('./bench.ts'),
  () => import('./doctor.ts'),
  () => import('./synth.ts'),
  () => import('./inspect.ts'),
  () => import('./convert.ts'),
  () => import('./quantize.ts'),
];

const program = new Command('mixtile')
  .description('Run Mixture-of-Experts models with experts on CPU matrix units and the rest on one GPU')
  .version('0.1.0')
  .showHelpAfterError();

// Errors of bad input (a missing or corrupt model file, a bad rule file, a prompt that does not fit)
// are the user's to fix: print the message, which says where and what, without a stack trace.
const USER_ERRORS = new Set(['FormatError', 'RuleError', 'EngineError', 'ChatTemplateError', 'PythonRegexError']);

for (const load of COMMANDS) (await load()).register(program);
try {
  await program.parseAsync(process.argv);
} catch (e) {
  const err = e as Error;
  if (!USER_ERRORS.has(err.name) && (err as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  console.error(`mixtile ${program.args[0] ?? ''}: ${err.message}`.replace('mixtile : ', 'mixtile: '));
  process.exitCode = 1;
}
