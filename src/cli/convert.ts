// `mixtile convert`: Hugging Face Qwen3-MoE folder -> GGUF (see src/formats/hf-convert.ts).
import { Option } from 'commander';
import type { Command } from 'commander';
import { byteProgress, mb } from './byte-progress.ts';
import { convertHfToGguf } from '../formats/hf-convert.ts';
import { FILE_TYPE_NAMES } from '../formats/file-types.ts';
import { intArg } from './engine-flags.ts';

export function register(program: Command): void {
  program
    .command('convert')
    .description('convert a Hugging Face Qwen3-MoE checkpoint folder (safetensors, BF16/F16/F32/FP8) to a GGUF that llama.cpp and mixtile load')
    .argument('<hf-dir>', 'folder with config.json, *.safetensors, tokenizer.json, tokenizer_config.json')
    .argument('<out>', 'output .gguf path (written as OUT.tmp, renamed when complete)')
    .addOption(new Option('--dtype <type>', 'tensor type mix, as llama-quantize makes it (K-quants run ~1 M values/s per thread)').choices([...FILE_TYPE_NAMES.keys()]).default('BF16'))
    .option('-t, --threads <n>', 'worker threads for quantized types (default: all cores)', intArg(1))
    .addHelpText('after', '\nExample:\n  mixtile convert ./Qwen3-30B-A3B ./qwen3-30b-a3b-bf16.gguf --dtype BF16\n')
    .action(async (dir: string, out: string, o: { dtype: string; threads?: number }) => {
      const progress = byteProgress('convert');
      try {
        await convertHfToGguf({
          dir,
          out,
          fileType: o.dtype,
          threads: o.threads,
          onProgress: progress.onProgress,
        });
      } catch (e) {
        progress.stop();
        console.error(`mixtile convert: ${(e as Error).message}`);
        process.exitCode = 1;
        return;
      }
      const total = progress.stop();
      console.log(`wrote ${out}: ${o.dtype}, ${mb(total)} MB of tensor data in ${progress.seconds().toFixed(1)} s`);
    });
}
