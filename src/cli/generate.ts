// `mixtile generate`: one completion streamed to stdout, load progress and timings on stderr.
import type { Command } from 'commander';
import { EngineError } from '../engine/errors.ts';
import { addLoadFlags, addSamplingFlags, formatStats, intArg, loadTerminalEngine, samplingFrom, type LoadFlags, type SamplingFlags } from './engine-flags.ts';

interface GenerateFlags extends SamplingFlags, LoadFlags {
  prompt: string;
  nPredict: number;
  chat: boolean;
  chatTemplate: boolean;
  think: boolean;
  stop: string[];
  ignoreEos: boolean;
  truncate: boolean;
  verbose: boolean;
}

export function register(program: Command): void {
  const cmd = program
    .command('generate')
    .description('generate a completion of a prompt, streamed to stdout')
    .requiredOption('-p, --prompt <text>', 'prompt text')
    .option('-n, --n-predict <n>', 'most tokens to generate', intArg(1), 128)
    .option('--chat', 'wrap the prompt as a user message in the model\'s chat template', false)
    .option('--no-chat-template', 'use the prompt as raw text (the default)')
    .option('--no-think', 'with --chat: ask the model to answer without a thinking block')
    .option('--stop <text...>', 'stop when the output contains this text (not printed)', [])
    .option('--ignore-eos', 'keep generating past end-of-generation tokens', false)
    .option('--truncate', 'keep the end of a prompt that does not fit the context instead of failing', false)
    .option('-v, --verbose', 'print prompt size and cache use', false)
    .addHelpText('after', '\nExample:\n  mixtile synth --preset tiny /tmp/tiny.gguf && mixtile generate -m /tmp/tiny.gguf -p "Hello" -n 16 --temp 0');
  addLoadFlags(cmd);
  addSamplingFlags(cmd);
  cmd.action(async (o: GenerateFlags) => {
    process.exitCode = await run(o);
  });
}

async function run(o: GenerateFlags): Promise<number> {
  const engine = await loadTerminalEngine(o);
  const abort = new AbortController();
  // First Ctrl-C stops generation cleanly (timings still print); a second one exits at once.
  const onSigint = () => {
    if (abort.signal.aborted) process.exit(130);
    abort.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    const text = o.chat && o.chatTemplate
      ? engine.applyChatTemplate([{ role: 'user', content: o.prompt }], { addGenerationPrompt: true, enableThinking: o.think })
      : o.prompt;
    // Control-token text such as <|im_start|> becomes its token, as llama.cpp does for -p.
    const prompt = engine.tokenize(text, { addSpecial: true, parseSpecial: true });
    if (o.verbose) process.stderr.write(`prompt: ${prompt.length} tokens\n`);
    const events = engine.generate(
      { prompt, maxTokens: o.nPredict, sampling: samplingFrom(o), stop: o.stop, stopAtEog: !o.ignoreEos, truncatePrompt: o.truncate },
      abort.signal,
    );
    for await (const ev of events) {
      if (ev.type === 'token') process.stdout.write(ev.text);
      else {
        process.stdout.write('\n');
        process.stderr.write(`\n[${ev.reason}${ev.error ? `: ${ev.error}` : ''}] ${formatStats(ev.stats)}\n`);
        return ev.reason === 'error' ? 1 : ev.reason === 'cancelled' ? 130 : 0;
      }
    }
    return 1;
  } catch (err) {
    if (err instanceof EngineError) {
      const hint = err.code === 'prompt_too_long' ? ' (here: --truncate or -c N)' : '';
      process.stderr.write(`mixtile generate: ${err.message}${hint}\n`);
      return 2;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
    await engine.close();
  }
}
