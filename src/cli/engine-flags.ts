// Flags shared by the commands that run a model (generate, chat; serve may reuse them): model
// loading, sampling, the load progress bar and the end-of-run timing line.
import { Command, InvalidArgumentError, Option } from 'commander';
import cliProgress from 'cli-progress';
import { loadEngine } from '../engine/index.ts';
import { cudaInfo, type CudaInfo } from '../native/cuda.ts';
import { DEFAULT_SAMPLING, type Engine, type GenerateStats, type SamplingParams } from '../engine/types.ts';

export function intArg(min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected an integer >= ${min}, got "${v}"`);
    return n;
  };
}

export function floatArg(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`expected a number, got "${v}"`);
  return n;
}

/** The placement-rule flag every loading command takes, with its KTransformers and short aliases. */
export interface RulesFlags {
  optimizeConfig?: string;
  optimize_config_path?: string;
  rules?: string;
}

/** What every loading command's --help says about the default placement and how to stay on the CPU. */
export const RULES_HELP =
  'rule file or preset name for operator placement (cpu, qwen3moe-hybrid, qwen3moe-hybrid-amx); default: qwen3moe-hybrid ' +
  '(experts on the CPU, the rest on the GPU) where CUDA is usable, else all on the CPU; --rules cpu forces CPU only';

/** --optimize-config FILE|PRESET (aliases --optimize_config_path, --rules). */
export function addRulesFlags(cmd: Command): Command {
  return cmd
    .option('--optimize-config <file>', RULES_HELP)
    .addOption(new Option('--optimize_config_path <file>', 'alias of --optimize-config (KTransformers)').hideHelp())
    .addOption(new Option('--rules <file>', 'alias of --optimize-config'));
}

/** The rule file or preset the user named, under whichever alias. */
export function rulesOf(o: RulesFlags): string | undefined {
  return o.optimizeConfig ?? o.optimize_config_path ?? o.rules;
}

/**
 * The placement a loading command uses without --optimize-config (and what `mixtile doctor` reports):
 * qwen3moe-hybrid where CUDA can run (experts on the CPU's best backend, `auto`, which takes AMX where
 * present; the rest on the GPU), else every operator on the CPU (the `cpu` preset's placement, loaded
 * as no rules at all).
 */
export function defaultRules(cuda: CudaInfo): { preset: 'cpu' | 'qwen3moe-hybrid'; rules: string | undefined; reason: string } {
  if (!cuda.available) return { preset: 'cpu', rules: undefined, reason: 'no usable CUDA device (see the CUDA line): everything on the CPU' };
  return { preset: 'qwen3moe-hybrid', rules: 'qwen3moe-hybrid', reason: `CUDA ${cuda.devices[0]?.name ?? 'device'}: experts on the CPU, the rest on the GPU` };
}

/** The rules to load with: the ones named, else defaultRules. `log` hears which and why when it is the hybrid. */
export function rulesOrDefault(o: RulesFlags, log: (line: string) => void): string | undefined {
  const named = rulesOf(o);
  if (named !== undefined) return named;
  const d = defaultRules(cudaInfo());
  if (d.rules !== undefined) log(`no --optimize-config given: using preset ${d.preset} (${d.reason}; --rules cpu for CPU only)`);
  return d.rules;
}

/** What addLoadFlags declares. */
export interface LoadFlags extends RulesFlags {
  model: string;
  threads?: number;
  ctxSize?: number;
  ubatch: number;
}

/** One engine with a single slot for a terminal command, loaded with a progress bar on stderr. */
export async function loadTerminalEngine(o: LoadFlags): Promise<Engine> {
  const progress = loadProgress();
  return loadEngine({
    modelPath: o.model,
    threads: o.threads,
    ctxSize: o.ctxSize,
    ubatch: o.ubatch,
    rules: rulesOrDefault(o, (line) => process.stderr.write(`mixtile: ${line}\n`)),
    parallel: 1,
    onProgress: progress.onProgress,
  }).finally(progress.stop);
}

/** -m, --threads, --ctx-size, --ubatch, --optimize-config. */
export function addLoadFlags(cmd: Command): Command {
  return addRulesFlags(
    cmd
      .requiredOption('-m, --model <path>', 'GGUF model file or Hugging Face model folder')
      .option('-t, --threads <n>', 'CPU threads for the kernels (default: all cores)', intArg(1))
      .option('-c, --ctx-size <n>', 'context size in tokens (default: min(4096, the model\'s))', intArg(16))
      .option('--ubatch <n>', 'most tokens per forward step (prompt chunk size)', intArg(1), 512),
  );
}

/** llama.cpp's sampling flags, with its defaults. */
export function addSamplingFlags(cmd: Command): Command {
  const d = DEFAULT_SAMPLING;
  return cmd
    .option('--temp <t>', 'temperature; 0 = greedy', floatArg, d.temperature)
    .option('--top-k <k>', 'keep the k most likely tokens; 0 = off', intArg(0), d.topK)
    .option('--top-p <p>', 'nucleus sampling; 1 = off', floatArg, d.topP)
    .option('--min-p <p>', 'drop tokens below p × the best probability; 0 = off', floatArg, d.minP)
    .option('--repeat-penalty <x>', 'penalise repeated tokens; 1 = off', floatArg, d.repeatPenalty)
    .option('--repeat-last-n <n>', 'tokens the penalties look back; -1 = all', intArg(-1), d.repeatLastN)
    .option('--presence-penalty <x>', 'subtract once per repeated token', floatArg, d.presencePenalty)
    .option('--frequency-penalty <x>', 'subtract per occurrence', floatArg, d.frequencyPenalty)
    .option('-s, --seed <n>', 'sampling seed (default: random)', intArg(0));
}

export interface SamplingFlags {
  temp: number;
  topK: number;
  topP: number;
  minP: number;
  repeatPenalty: number;
  repeatLastN: number;
  presencePenalty: number;
  frequencyPenalty: number;
  seed?: number;
}

export function samplingFrom(o: SamplingFlags): SamplingParams {
  return {
    temperature: o.temp,
    topK: o.topK,
    topP: o.topP,
    minP: o.minP,
    repeatPenalty: o.repeatPenalty,
    repeatLastN: o.repeatLastN,
    presencePenalty: o.presencePenalty,
    frequencyPenalty: o.frequencyPenalty,
    ...(o.seed !== undefined ? { seed: o.seed } : {}),
  };
}

/** A load progress bar on stderr (drawn only on a terminal); call stop() when loading ends. */
export function loadProgress(): { onProgress: (done: number, total: number, what: string) => void; stop: () => void } {
  const bar = new cliProgress.SingleBar(
    { format: 'loading [{bar}] {percentage}% {what}', stream: process.stderr, clearOnComplete: true, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    onProgress: (done, total, what) => {
      if (!started) bar.start(total, done, { what });
      else bar.update(done, { what });
      started = true;
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

/** "prompt 12 tokens (4 cached) 35.1 ms, 341.9 t/s | decode 16 tokens 120.0 ms, 125.0 t/s". */
export function formatStats(s: GenerateStats): string {
  const computed = s.promptTokens - s.cachedTokens;
  const pps = s.promptMs > 0 ? (computed / s.promptMs) * 1000 : 0;
  // The first token is sampled at the end of the prompt step; decode covers the rest.
  const nDecode = Math.max(0, s.completionTokens - 1);
  const dps = s.decodeMs > 0 ? (nDecode / s.decodeMs) * 1000 : 0;
  return (
    `prompt ${s.promptTokens} tokens${s.cachedTokens ? ` (${s.cachedTokens} cached)` : ''} ${s.promptMs.toFixed(1)} ms, ${pps.toFixed(1)} t/s` +
    ` | decode ${s.completionTokens} tokens ${s.decodeMs.toFixed(1)} ms, ${dps.toFixed(1)} t/s`
  );
}
