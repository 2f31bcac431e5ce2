// `mixtile serve`: the OpenAI- and Ollama-compatible HTTP server (src/server/) with the chat page.
// With no --model it serves the built-in random-weight demo model, made once and cached.
import { Option, type Command } from 'commander';
import { loadEngine } from '../engine/index.ts';
import { startServer } from '../server/app.ts';
import { ensureDemoModel } from '../server/demo-model.ts';
import { parseKeepAlive } from '../server/host.ts';
import { addRulesFlags, intArg, loadProgress, rulesOrDefault, type RulesFlags } from './engine-flags.ts';

interface ServeFlags extends RulesFlags {
  model?: string;
  model_path?: string;
  gguf_path?: string;
  host: string;
  port: number;
  architectures?: string;
  threads?: number;
  ctxSize?: number;
  parallel: number;
  ubatch: number;
  maxQueue: number;
  apiKey?: string;
  keepAlive: string;
}

/** HF class names (KTransformers' --architectures) and the GGUF architecture each means. */
const ARCHITECTURES: Record<string, string> = { Qwen3MoeForCausalLM: 'qwen3moe', Qwen3ForCausalLM: 'qwen3' };

export function register(program: Command): void {
  const cmd = program
    .command('serve')
    .description('serve a model over OpenAI- and Ollama-compatible HTTP APIs, with a chat page at /')
    .option('-m, --model <path>', 'GGUF model file or Hugging Face model folder (default: the built-in random-weight demo model)')
    .addOption(new Option('--model_path <file>', 'alias of --model (KTransformers)').hideHelp())
    .addOption(new Option('--gguf_path <file>', 'alias of --model (KTransformers)').hideHelp())
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0 = any free port)', intArg(0), 8080);
  addRulesFlags(cmd)
    .addOption(new Option('--architectures <name>', 'HF model class, checked against the model (KTransformers)').hideHelp())
    .option('-t, --threads <n>', 'CPU threads for the kernels (default: all cores)', intArg(1))
    .option('-c, --ctx-size <n>', 'context size in tokens per slot (default: min(4096, the model\'s))', intArg(16))
    .option('--parallel <n>', 'requests decoded together (KV slots)', intArg(1), 4)
    .option('--ubatch <n>', 'most tokens per forward step (prompt chunk size)', intArg(1), 512)
    .option('--max-queue <n>', 'requests that may wait for a slot before the server answers 503', intArg(0), 64)
    .option('--api-key <key>', 'require "Authorization: Bearer <key>" on every route but /health and the page')
    .option('--keep-alive <duration>', 'unload the model after this long idle ("5m", "1h"; -1 = never), as Ollama\'s keep_alive', '-1')
    .addHelpText('after', '\nExamples:\n  mixtile serve                                   # built-in demo model on http://127.0.0.1:8080\n  mixtile serve -m Qwen3-30B-A3B-Q4_K_M.gguf --port 11434 --parallel 8')
    .action(async (o: ServeFlags) => {
      process.exitCode = await run(o);
    });
}

async function run(o: ServeFlags): Promise<number> {
  const keepAliveMs = parseKeepAlive(o.keepAlive);
  if (keepAliveMs === undefined) {
    console.error(`mixtile serve: --keep-alive: expected a duration such as "5m" or -1, got "${o.keepAlive}"`);
    return 2;
  }
  const expected = o.architectures !== undefined ? ARCHITECTURES[o.architectures] : undefined;
  if (o.architectures !== undefined && !expected) {
    console.error(`mixtile serve: --architectures: unknown class "${o.architectures}" (known: ${Object.keys(ARCHITECTURES).join(', ')})`);
    return 2;
  }
  const given = o.model ?? o.model_path ?? o.gguf_path;
  const log = (line: string) => console.error(`mixtile serve: ${line}`);
  const server = await startServer({
    host: o.host,
    port: o.port,
    apiKey: o.apiKey,
    keepAliveMs,
    log,
    logRequests: log,
    load: async (progress) => {
      let modelPath = given;
      if (modelPath === undefined) {
        const writing = loadProgress();
        modelPath = await ensureDemoModel({ onProgress: (d, t) => writing.onProgress(d, t, 'writing the demo model'), log }).finally(writing.stop);
      }
      const bar = loadProgress();
      try {
        const engine = await loadEngine({
          modelPath,
          threads: o.threads,
          ctxSize: o.ctxSize,
          parallel: o.parallel,
          ubatch: o.ubatch,
          maxQueue: o.maxQueue,
          rules: rulesOrDefault(o, log),
          isDemo: given === undefined,
          onProgress: (done, total, what) => {
            progress(total > 0 ? done / total : 0);
            bar.onProgress(done, total, what);
          },
          log,
        });
        if (expected && engine.info.architecture !== expected) {
          await engine.close();
          throw new Error(`--architectures ${o.architectures} expects a ${expected} model, but ${modelPath} is ${engine.info.architecture}`);
        }
        return engine;
      } finally {
        bar.stop();
      }
    },
  }).catch((err: Error) => {
    console.error(`mixtile serve: cannot listen on ${o.host}:${o.port}: ${err.message}`);
    return undefined;
  });
  if (!server) return 1;
  log(`listening on ${server.url} (chat page at ${server.url}/), loading the model…`);
  try {
    const engine = await server.ready;
    const i = engine.info;
    log(`ready: ${i.name} (${i.architecture}, ${i.fileType}, ctx ${i.contextLength})${i.isDemo ? ' — the built-in DEMO model has random weights: its replies are noise. Use --model FILE.gguf for a real model.' : ''}`);
  } catch {
    // The host has logged why.
    await server.close();
    return 1;
  }
  // Serve until Ctrl-C / SIGTERM, then cancel requests and free the model.
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  log('shutting down');
  await server.close();
  return 0;
}
