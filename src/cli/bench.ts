// `mixtile bench`: llama-bench's table (model, size, params, backend, threads, test, t/s ± sd, tests
// at context depths with -d) plus time to first token, peak RSS and, on a GPU, peak VRAM, for a model
// run by our engine in-process; `--op` benchmarks one native operator.
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { basename } from 'node:path';
import { backendLabel } from '../engine/backend-label.ts';
import { gpuStepLines } from './bench-gpu-steps.ts';
import { BenchError, benchContextSize, benchTests, formatOpProfile, runBench, type BenchResult } from '../engine/bench.ts';
import { benchOp, parseDevices } from '../engine/bench-op.ts';
import { fileTypeName, paramCounts } from '../engine/model-info.ts';
import { nvidiaSmiMemory, type SmiMemory } from '../engine/nvidia-smi.ts';
import { metaNumber, metaString } from '../formats/gguf-read.ts';
import { openModel } from '../formats/open-model.ts';
import { loadModel } from '../model/load.ts';
import type { IsaLevel } from '../native/isa.ts';
import { Tokenizer } from '../tokenizer/tokenizer.ts';
import { addRulesFlags, intArg, loadProgress, rulesOrDefault, type RulesFlags } from './engine-flags.ts';

interface BenchFlags extends RulesFlags {
  model?: string;
  nPrompt: number[];
  nGen: number[];
  nDepth: number[];
  repetitions: number;
  threads?: number;
  ubatch: number;
  output: 'md' | 'json';
  verbose: boolean;
  op?: string;
  type: string;
  downType?: string;
  tokens: number[];
  isa?: string;
  probeMib: number;
  device?: string;
}

function intList(v: string): number[] {
  const out = v.split(',').map((x) => Number(x.trim()));
  if (out.some((n) => !Number.isInteger(n) || n < 0)) throw new InvalidArgumentError(`expected comma-separated integers >= 0, got "${v}"`);
  return out;
}

export function register(program: Command): void {
  const cmd = program
    .command('bench')
    .description('measure prefill (pp) and decode (tg) speed like llama-bench, or one operator with --op')
    .option('-m, --model <path>', 'GGUF model file or Hugging Face model folder')
    .option('-p, --n-prompt <n,...>', 'prompt sizes for pp tests; 0 = none', intList, [512])
    .option('-n, --n-gen <n,...>', 'tokens for tg tests; 0 = none', intList, [128])
    .option('-d, --n-depth <n,...>', 'context depths: each test runs with the KV cache already holding d tokens (prefilled once per depth, not timed), as llama-bench -d', intList, [0])
    .option('-r, --repetitions <n>', 'runs of each test', intArg(1), 5)
    .option('-t, --threads <n>', 'CPU threads (default: all cores)', intArg(1))
    .option('--ubatch <n>', 'most tokens per forward step', intArg(1), 512);
  addRulesFlags(cmd)
    .option('-o, --output <fmt>', 'md or json', (v) => {
      if (v !== 'md' && v !== 'json') throw new InvalidArgumentError('expected md or json');
      return v;
    }, 'md')
    .option('-v, --verbose', 'add columns (ms per step inside the model, TS overhead per step) and a table per test of where a step goes (native op kinds: ms, GB/s, GFLOP/s)', false)
    .option('--op <name>', 'benchmark one native operator instead of a model: experts | linear (synthetic Qwen3-30B-A3B shapes)')
    .option('--type <t>', 'with --op: weight type f32 f16 bf16 q8_0 q4_k q5_k q6_k', 'q4_k')
    .option('--down-type <t>', 'with --op experts: ffn_down type when different (Q4_K_M files use q6_k in half the layers)')
    .option('--tokens <n,...>', 'with --op: tokens per call', intList, [1, 512])
    .option('--isa <level>', 'with --op: force a lower ISA level (see mixtile doctor)')
    .option('--device <list>', 'with --op experts: cpu,gpu,split = the CPU kernel, every expert streamed to the GPU, the cost model\'s split (the crossover; needs CUDA)')
    .option('--probe-mib <n>', 'with --op: MiB for the DRAM bandwidth probe; 0 = skip', intArg(0), 1024)
    .addHelpText('after', '\nExamples:\n  mixtile synth --preset tiny /tmp/tiny.gguf && mixtile bench -m /tmp/tiny.gguf -p 64 -n 16 -r 3 -v\n  mixtile bench -m /tmp/tiny.gguf -p 64 -n 16 -d 0,1024 -r 2    # also "pp64 @ d1024", "tg16 @ d1024"\n  mixtile bench --op experts --type q4_k --tokens 1,512 -t 2')
    .action(async (o: BenchFlags) => {
      process.exitCode = o.op ? await benchOperator(o) : await benchModel(o);
    });
}

async function benchModel(o: BenchFlags): Promise<number> {
  if (!o.model) {
    process.stderr.write('mixtile bench: -m FILE is needed (or --op experts|linear)\n');
    return 2;
  }
  const tests = benchTests(o.nPrompt, o.nGen, o.nDepth);
  if (tests.length === 0) {
    process.stderr.write('mixtile bench: nothing to run (-p and -n are both 0)\n');
    return 2;
  }
  let ctxSize: number;
  try {
    // The header only (no weights): a test that cannot fit the model's context fails before the load.
    const header = await openModel(o.model);
    ctxSize = benchContextSize(tests, metaNumber(header, `${metaString(header, 'general.architecture')}.context_length`));
  } catch (err) {
    if (!(err instanceof BenchError)) throw err;
    process.stderr.write(`mixtile bench: ${err.message}\n`);
    return 2;
  }
  // The placement generate and serve would use (qwen3moe-hybrid where CUDA runs), so the figures are theirs.
  const rules = rulesOrDefault(o, (line) => process.stderr.write(`mixtile bench: ${line}\n`));
  const progress = loadProgress();
  const model = await loadModel(o.model, { ctxSize, nSeq: 1, ubatch: o.ubatch, threads: o.threads, rules, onProgress: progress.onProgress }).finally(progress.stop);
  try {
    const tokenizer = Tokenizer.fromGguf(model.gguf.metadata);
    const { total } = paramCounts(model.gguf);
    const sizeBytes = [...model.gguf.tensors.values()].reduce((a, t) => a + t.nBytes, 0);
    const backend = backendLabel(model, rules);
    const row = {
      model: `${model.config.architecture} ${model.config.nLayers}L ${fileTypeName(model.gguf)}`,
      size: `${(sizeBytes / 2 ** 30).toFixed(2)} GiB`,
      params: total >= 1e9 ? `${(total / 1e9).toFixed(2)} B` : `${(total / 1e6).toFixed(2)} M`,
      backend: backend.text,
      threads: String(o.threads ?? 'all'),
    };
    const md = o.output === 'md';
    const gpu = model.gpu;
    const cols = ['model', 'size', 'params', 'backend', 'threads', 'test', 't/s', 'TTFT ms', 'peak RSS', ...(gpu ? ['peak VRAM', 'smi VRAM'] : []), ...(o.verbose ? ['model ms/step', 'TS ms/step'] : [])];
    if (md) {
      // As llama-bench: text columns left-aligned, numbers right-aligned.
      const left = new Set(['model', 'backend']);
      process.stdout.write(`| ${cols.join(' | ')} |\n|${cols.map((c) => (left.has(c) ? ' --- ' : ' ---: ')).join('|')}|\n`);
    }
    const json: object[] = [];
    const mib = (bytes: number | undefined) => (bytes === undefined ? '-' : `${(bytes / 2 ** 20).toFixed(0)} MiB`);
    // nvidia-smi is asked after each test (outside the timed runs); the most it has shown is reported.
    const onRealGpu = gpu !== undefined && !/cuda-host/.test(gpu.stats().library);
    let smiPeak: SmiMemory | undefined;
    let gpuBefore = o.verbose ? gpu?.stats() : undefined;
    const gpuLines: string[] = [];
    const results = runBench(model, tokenizer, tests, {
      reps: o.repetitions,
      ubatch: o.ubatch,
      profile: o.verbose,
      onDepth: (d, ms) => process.stderr.write(`mixtile bench: depth ${d} prefilled in ${ms.toFixed(0)} ms (${((d / ms) * 1000).toFixed(1)} t/s, one cold run, untimed)\n`),
      onResult: (r: BenchResult) => {
        const rssBytes = process.resourceUsage().maxRSS * 1024;
        const g = gpu?.stats();
        if (g && gpuBefore) {
          gpuLines.push(gpuStepLines(r.test, gpuBefore, g));
          gpuBefore = g;
        }
        const smiNow = onRealGpu ? nvidiaSmiMemory(process.pid, gpu.index) : undefined;
        if (smiNow && (!smiPeak || smiNow.bytes > smiPeak.bytes)) smiPeak = smiNow;
        if (md) {
          const cells = [row.model, row.size, row.params, row.backend, row.threads, r.test, `${r.avgTs.toFixed(2)} ± ${r.sdTs.toFixed(2)}`, r.ttftMs === undefined ? '-' : r.ttftMs.toFixed(1), mib(rssBytes)];
          if (gpu) cells.push(mib(g?.vramPeakBytes), smiPeak ? `${mib(smiPeak.bytes)}${smiPeak.scope === 'device' ? ' (GPU)' : ''}` : '-');
          if (o.verbose) cells.push(r.forwardMsPerStep.toFixed(3), r.overheadMsPerStep.toFixed(3));
          process.stdout.write(`| ${cells.join(' | ')} |\n`);
        } else {
          json.push({
            model_filename: basename(o.model!),
            model_type: row.model,
            model_size: sizeBytes,
            model_n_params: total,
            backends: backend.backends,
            gpu_info: backend.gpu ?? null,
            experts_backend: backend.experts ?? null,
            n_threads: o.threads ?? null,
            n_ubatch: o.ubatch,
            n_prompt: r.nPrompt,
            n_gen: r.nGen,
            n_depth: r.nDepth,
            test: r.test,
            avg_ns: Math.round(mean(r.samplesMs) * 1e6),
            stddev_ns: Math.round(stddev(r.samplesMs) * 1e6),
            avg_ts: r.avgTs,
            stddev_ts: r.sdTs,
            samples_ns: r.samplesMs.map((ms) => Math.round(ms * 1e6)),
            samples_ts: r.samplesTs,
            ttft_ms: r.ttftMs ?? null,
            peak_rss_bytes: rssBytes,
            vram_peak_bytes: g?.vramPeakBytes ?? null,
            vram_device_used_bytes: g?.vramUsedBytes ?? null,
            nvidia_smi_bytes: smiPeak?.bytes ?? null,
            nvidia_smi_scope: smiPeak?.scope ?? null,
            forward_ms_per_step: r.forwardMsPerStep,
            ts_overhead_ms_per_step: r.overheadMsPerStep,
            steps: r.steps,
            ...(r.ops ? { ops: r.ops } : {}),
          });
        }
      },
    });
    if (!md) process.stdout.write(JSON.stringify(json, null, 2) + '\n');
    else {
      for (const r of results) if (r.ops) process.stdout.write('\n' + formatOpProfile(r));
      if (gpuLines.length) process.stdout.write('\n' + gpuLines.join(''));
    }
    return 0;
  } finally {
    model.dispose();
  }
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
function stddev(xs: number[]): number {
  const m = mean(xs);
  return xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
}

/** `--op`: the native operator benchmark (src/engine/bench-op.ts) on Qwen3-30B-A3B layer shapes. */
async function benchOperator(o: BenchFlags): Promise<number> {
  if (o.op !== 'experts' && o.op !== 'linear') {
    process.stderr.write(`mixtile bench: --op must be experts or linear, got "${o.op}"\n`);
    return 2;
  }
  const opts = {
    type: o.type,
    downType: o.downType,
    tokens: o.tokens,
    threads: o.threads,
    reps: o.repetitions,
    isa: o.isa as IsaLevel | undefined,
    probeMiB: o.probeMib,
    devices: o.device ? parseDevices(o.device) : undefined,
  };
  if (o.output === 'md') {
    benchOp(o.op, opts);
    return 0;
  }
  // benchOp prints its text rows; with -o json they go to stderr so stdout holds only the JSON.
  const log = console.log;
  console.log = (...args: unknown[]) => console.error(...args);
  try {
    process.stdout.write(JSON.stringify(benchOp(o.op, opts), null, 2) + '\n');
  } finally {
    console.log = log;
  }
  return 0;
}
