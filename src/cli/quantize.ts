// `mixtile quantize`: GGUF -> GGUF in another file type, as llama-quantize (see src/formats/gguf-quantize.ts).
import { Option } from 'commander';
import type { Command } from 'commander';
import { byteProgress, mb } from './byte-progress.ts';
import { quantizeGguf } from '../formats/gguf-quantize.ts';
import { FILE_TYPE_NAMES } from '../formats/file-types.ts';
import { intArg } from './engine-flags.ts';

export function register(program: Command): void {
  program
    .command('quantize')
    .description('re-encode a GGUF model in another file type with llama-quantize\'s per-tensor choices (reference quantizers, no imatrix)')
    .argument('<in>', 'input GGUF (any part of a split model)')
    .argument('<out>', 'output .gguf path (written as OUT.tmp, renamed when complete)')
    .addOption(new Option('--file-type <type>', 'tensor type mix (K-quants run ~1 M values/s per thread)').choices([...FILE_TYPE_NAMES.keys()]).makeOptionMandatory())
    .option('-t, --threads <n>', 'worker threads (default: all cores)', intArg(1))
    .addHelpText('after', '\nExample:\n  mixtile synth --preset tiny /tmp/tiny.gguf && mixtile quantize /tmp/tiny.gguf /tmp/tiny-q8.gguf --file-type Q8_0\n')
    .action(async (input: string, out: string, o: { fileType: string; threads?: number }) => {
      const progress = byteProgress('quantize');
      try {
        await quantizeGguf({
          input,
          out,
          fileType: o.fileType,
          threads: o.threads,
          onProgress: progress.onProgress,
        });
      } catch (e) {
        progress.stop();
        console.error(`mixtile quantize: ${(e as Error).message.replace(/^quantize: /, '')}`);
        process.exitCode = 1;
        return;
      }
      const total = progress.stop();
      console.log(`wrote ${out}: ${o.fileType}, ${mb(total)} MB of tensor data in ${progress.seconds().toFixed(1)} s`);
    });
}
