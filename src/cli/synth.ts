// `mixtile synth`: write a random-weight Qwen3-MoE GGUF (see src/model/synth.ts for the init).
import { Option } from 'commander';
import type { Command } from 'commander';
import { byteProgress, mb } from './byte-progress.ts';
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
      const progress = byteProgress('synth');
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
          onProgress: progress.onProgress,
        });
      } catch (e) {
        progress.stop();
        console.error(`mixtile synth: ${(e as Error).message.replace(/^synth: /, "")}`);
        process.exitCode = 1;
        return;
      }
      const bytes = progress.stop();
      const s = progress.seconds();
      console.log(`wrote ${out}: ${o.preset}, ${o.fileType}, ${mb(bytes)} MB of tensor data in ${s.toFixed(1)} s (${(bytes / 1e6 / s).toFixed(0)} MB/s)`);
    });
}
