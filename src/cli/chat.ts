// `mixtile chat`: interactive multi-turn chat through the model's chat template. Each turn's
// history prefix stays in the KV cache (prefix cache), so only the new turn is prefilled.
import type { Command } from 'commander';
import { createInterface } from 'node:readline/promises';
import { EngineError } from '../engine/errors.ts';
import type { ChatMessage, Engine } from '../engine/types.ts';
import { addLoadFlags, addSamplingFlags, formatStats, intArg, loadTerminalEngine, samplingFrom, type LoadFlags, type SamplingFlags } from './engine-flags.ts';

interface ChatFlags extends SamplingFlags, LoadFlags {
  system?: string;
  nPredict: number;
  think: boolean;
  verbose: boolean;
}

const HELP = 'commands: /think (toggle thinking), /reset (forget the conversation), /exit; Ctrl-C stops an answer, Ctrl-D quits';

export function register(program: Command): void {
  const cmd = program
    .command('chat')
    .description('chat with a model in the terminal (multi-turn, with its chat template)')
    .option('--system <text>', 'system message')
    .option('-n, --n-predict <n>', 'most tokens per answer', intArg(1), 1024)
    .option('--no-think', 'start with thinking off (toggle with /think)')
    .option('-v, --verbose', 'print timings and cache use after each answer', false)
    .addHelpText('after', `\n${HELP}\n\nExample:\n  mixtile synth --preset tiny /tmp/tiny.gguf && mixtile chat -m /tmp/tiny.gguf --temp 0.7`);
  addLoadFlags(cmd);
  addSamplingFlags(cmd);
  cmd.action(async (o: ChatFlags) => {
    process.exitCode = await run(o);
  });
}

async function run(o: ChatFlags): Promise<number> {
  const engine = await loadTerminalEngine(o);
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY, prompt: '> ' });
  let current: AbortController | undefined;
  // Ctrl-C while answering stops the answer; at the prompt it quits. Ctrl-D (end of input) quits
  // after the current answer, so piped input (`printf 'hi\n' | mixtile chat …`) is answered in full.
  rl.on('SIGINT', () => {
    if (current) current.abort();
    else rl.close();
  });
  const history: ChatMessage[] = o.system ? [{ role: 'system', content: o.system }] : [];
  let think = o.think;
  process.stderr.write(`${engine.info.name}${engine.info.isDemo ? ' (random-weight demo: answers are noise)' : ''}; ${HELP}\n`);
  try {
    rl.prompt();
    // Lines typed (or piped) while an answer streams are queued by the iterator, not lost.
    for await (const raw of rl) {
      const line = raw.trim();
      if (line === '/exit' || line === '/quit') break;
      if (line === '/think') {
        think = !think;
        process.stderr.write(`thinking ${think ? 'on' : 'off'}\n`);
      } else if (line === '/reset') {
        history.length = o.system ? 1 : 0;
      } else if (line !== '') {
        history.push({ role: 'user', content: line });
        current = new AbortController();
        const answer = await answerTurn(engine, history, think, o, current.signal);
        current = undefined;
        if (answer === undefined) history.pop();
        else history.push({ role: 'assistant', content: answer });
      }
      rl.prompt();
    }
    return 0;
  } finally {
    rl.close();
    await engine.close();
  }
}

/** Streams one answer; returns its text, or undefined when the turn failed and should be dropped. */
async function answerTurn(engine: Engine, history: ChatMessage[], think: boolean, o: ChatFlags, signal: AbortSignal): Promise<string | undefined> {
  const text = engine.applyChatTemplate(history, { addGenerationPrompt: true, enableThinking: think });
  const prompt = engine.tokenize(text, { addSpecial: true, parseSpecial: true });
  let answer = '';
  try {
    for await (const ev of engine.generate({ prompt, maxTokens: o.nPredict, sampling: samplingFrom(o), stop: [], stopAtEog: true }, signal)) {
      if (ev.type === 'token') {
        answer += ev.text;
        process.stdout.write(ev.text);
      } else {
        process.stdout.write('\n');
        if (ev.reason === 'error') {
          process.stderr.write(`error: ${ev.error}\n`);
          return undefined;
        }
        if (ev.reason === 'cancelled') process.stderr.write('[stopped]\n');
        if (o.verbose) process.stderr.write(`[${ev.reason}] ${formatStats(ev.stats)}\n`);
      }
    }
  } catch (err) {
    if (err instanceof EngineError) {
      // The conversation outgrew the context: say so and let the user /reset.
      process.stderr.write(`${err.message}\n(use /reset to start over)\n`);
      return undefined;
    }
    throw err;
  }
  return answer;
}
