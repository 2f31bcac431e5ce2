// `mixtile synth`: write a random-weight Qwen3-MoE GGUF (see src/model/synth.ts for the init).
import { Option } from 'commander';
import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { synthModel, SYNTH_PRESETS } from '../model/synth.ts';
import type { SynthPreset } from '../model/synth.ts';
import { FILE_TYPE_NAMES } from '../formats/file-types.ts';
import { intArg } from './engine-flags.ts';

interface SynthFlags {
  preset: SynthPreset;
  fileType: string;
  layers?: number;
  experts?: number;
  expertsUsed?: number;
  hidden?: number;
  expertFfn?: number;
  heads?: number;
  kvHeads?: number;
  headDim?: number;
  vocab?: number;
  ctx?: number;
  seed: number;
  exactQuant: boolean;
}

export function register(program: Command): void {
  program
    .command('synth')
    .description('write a Qwen3-MoE GGUF with random weights (real architecture, tokenizer and metadata) for tests and benchmarks')
    .argument('<out>', 'output .gguf path')
    .addOption(new Option('--preset <name>', 'model shape').choices(Object.keys(SYNTH_PRESETS)).default('tiny'))
    .addOption(new Option('--file-type <type>', 'tensor type mix, as llama-quantize makes it').choices([...FILE_TYPE_NAMES.keys()]).default('BF16'))
    .option('--layers <n>', 'override: transformer blocks', intArg(1))
    .option('--experts <n>', 'override: experts per layer', intArg(1))
    .option('--experts-used <n>', 'override: experts per token', intArg(1))
    .option('--hidden <n>', 'override: embedding width', intArg(1))
    .option('--expert-ffn <n>', 'override: expert FFN width', intArg(1))
    .option('--heads <n>', 'override: query heads', intArg(1))
    .option('--kv-heads <n>', 'override: key/value heads', intArg(1))
    .option('--head-dim <n>', 'override: head dimension', intArg(2))
    .option('--vocab <n>', 'override: embedding rows (>= 151669)', intArg(1))
    .option('--ctx <n>', 'override: context length in metadata', intArg(1))
    .option('--seed <n>', 'random seed (same seed, same file)', intArg(0), 0)
    .option('--exact-quant', 'quantize K-quant tensors from floats with the reference quantizer (slow) instead of writing random blocks', false)
    .addHelpText(
      'after',
      '\nExamples:\n  mixtile synth --preset tiny /tmp/tiny.gguf\n  mixtile synth --preset qwen3-30b-a3b --file-type Q4_K_M --layers 2 /tmp/a3b-2l.gguf\n',
    )
    .action(async (out: string, o: SynthFlags) => {
      const bar = new cliProgress.SingleBar(
        { format: 'synth [{bar}] {percentage}% {doneMB}/{totalMB} MB {rate} MB/s eta {eta_formatted}', stream: process.stderr, hideCursor: true },
        cliProgress.Presets.shades_classic,
      );
      const t0 = performance.now();
      let started = false;
      let lastUpdate = 0;
      let bytes = 0;
      const mb = (b: number) => (b / 1e6).toFixed(0);
      try {
        await synthModel({
          preset: o.preset,
          out,
          fileType: o.fileType,
          layers: o.layers,
          experts: o.experts,
          expertsUsed: o.expertsUsed,
          hidden: o.hidden,
          expertFfn: o.expertFfn,
          heads: o.heads,
          kvHeads: o.kvHeads,
          headDim: o.headDim,
          vocab: o.vocab,
          contextLength: o.ctx,
          seed: o.seed,
          exactQuant: o.exactQuant,
          onProgress: (done, total) => {
            bytes = total;
            const now = performance.now();
            const payload = { doneMB: mb(done), totalMB: mb(total), rate: (done / 1e3 / Math.max(1, now - t0)).toFixed(0) };
            if (!started) bar.start(total, done, payload);
            // Redraw at most 10 times a second: chunks can come thousands of times per second.
            else if (now - lastUpdate > 100 || done === total) bar.update(done, payload);
            started = true;
            lastUpdate = now;
          },
        });
      } catch (e) {
        if (started) bar.stop();
        started = false;
        console.error(`mixtile synth: ${(e as Error).message.replace(/^synth: /, "")}`);
        process.exitCode = 1;
        return;
      } finally {
        if (started) bar.stop();
      }
      const s = (performance.now() - t0) / 1000;
      console.log(`wrote ${out}: ${o.preset}, ${o.fileType}, ${mb(bytes)} MB of tensor data in ${s.toFixed(1)} s (${(bytes / 1e6 / s).toFixed(0)} MB/s)`);
    });
}
