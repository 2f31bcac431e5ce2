// TEST DOUBLE, not an engine: an Engine whose "model" replies with scripted text, one character per
// token. It lets route tests drive outputs a random-weight model never writes (tool calls, thinking)
// and control timing (slow tokens, a load that waits). Real-engine tests are in clients.test.ts.
import { EngineError } from '../../src/engine/errors.ts';
import type { ChatMessage, ChatTemplateOptions, Engine, GenerateEvent, GenerateRequest, ModelInfo } from '../../src/engine/types.ts';

export interface ScriptOptions {
  /** The reply for a prompt (the rendered prompt text). */
  reply: (prompt: string) => string;
  /** Delay per token, ms. */
  tokenDelayMs?: number;
  contextLength?: number;
  slots?: number;
  maxQueue?: number;
  /** End every request with reason 'error' after this many tokens (an engine fault). */
  errorAfter?: number;
}

export class ScriptedEngine implements Engine {
  readonly info: ModelInfo;
  running = 0;
  queued = 0;
  closed = false;
  /** Requests seen (their prompt text), for assertions. */
  readonly prompts: string[] = [];
  /** How each request ended, in order. */
  readonly finished: string[] = [];

  constructor(private readonly o: ScriptOptions) {
    this.info = {
      name: 'scripted',
      path: '/models/scripted.gguf',
      architecture: 'qwen3moe',
      fileType: 'BF16',
      nParams: 1000,
      nActiveParams: 500,
      contextLength: o.contextLength ?? 4096,
      sizeBytes: 2000,
      isDemo: false,
    };
  }

  tokenize(text: string): number[] {
    return [...text].map((ch) => ch.codePointAt(0)!);
  }

  detokenize(ids: number[]): string {
    return String.fromCodePoint(...ids);
  }

  /** ChatML as Qwen3 renders it, tools listed as JSON, enough to assert on. */
  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions): string {
    let s = opts.tools?.length ? `<|im_start|>system\n# Tools\n${opts.tools.map((t) => JSON.stringify(t)).join('\n')}<|im_end|>\n` : '';
    for (const m of messages) {
      const calls = (m.toolCalls ?? []).map((c) => `<tool_call>\n${JSON.stringify({ name: c.name, arguments: c.arguments })}\n</tool_call>`).join('\n');
      s += `<|im_start|>${m.role}\n${m.content}${calls}<|im_end|>\n`;
    }
    if (opts.addGenerationPrompt) s += `<|im_start|>assistant\n${opts.enableThinking ? '' : '<think>\n\n</think>\n\n'}`;
    return s;
  }

  generate(req: GenerateRequest, signal?: AbortSignal): AsyncIterable<GenerateEvent> {
    if (this.closed) throw new EngineError('closed', 'the engine is closed');
    if (req.prompt.length >= this.info.contextLength) throw new EngineError('prompt_too_long', `the prompt has ${req.prompt.length} tokens but the context holds ${this.info.contextLength}`);
    const slots = this.o.slots ?? 4;
    if (this.running >= slots + (this.o.maxQueue ?? 64)) throw new EngineError('queue_full', 'all slots are busy');
    const prompt = this.detokenize(req.prompt);
    this.prompts.push(prompt);
    const reply = [...this.o.reply(prompt)];
    this.running++;
    const self = this;
    return (async function* (): AsyncGenerator<GenerateEvent> {
      let reason: 'stop' | 'length' | 'cancelled' = 'stop';
      let n = 0;
      try {
        for (const ch of reply) {
          if (signal?.aborted) {
            reason = 'cancelled';
            break;
          }
          if (self.o.errorAfter !== undefined && n >= self.o.errorAfter) {
            yield { type: 'done', reason: 'error', error: 'scripted engine fault', stats: { promptTokens: req.prompt.length, cachedTokens: 0, completionTokens: n, queueMs: 0, promptMs: 1, decodeMs: n } };
            return;
          }
          if (n >= req.maxTokens) {
            reason = 'length';
            break;
          }
          if (self.o.tokenDelayMs) await new Promise((r) => setTimeout(r, self.o.tokenDelayMs));
          n++;
          yield { type: 'token', id: ch.codePointAt(0)!, text: ch };
        }
        yield { type: 'done', reason, stats: { promptTokens: req.prompt.length, cachedTokens: 0, completionTokens: n, queueMs: 0, promptMs: 1, decodeMs: n } };
      } finally {
        // Reached on normal end and when the consumer stops early (the real engine cancels then).
        self.running--;
        self.finished.push(signal?.aborted ? 'cancelled' : reason);
      }
    })();
  }

  stats() {
    return { running: this.running, queued: this.queued, slots: this.o.slots ?? 4 };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
