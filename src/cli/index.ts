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

for (const load of COMMANDS) (await load()).register(program);
await program.parseAsync(process.argv);
