// Incremental parser for Qwen3 thinking output: `<think>\n…\n</think>\n\nanswer` is split into
// reasoning and content as the text streams. Trimming matches the whole-text result at every
// chunk boundary (whitespace next to the tags is held back until its side is known).
import { partialTagLength } from './tag-scan.ts';

export const THINK_OPEN = '<think>';
export const THINK_CLOSE = '</think>';

export type ReasoningEvent = { type: 'reasoning'; text: string } | { type: 'content'; text: string };

type State = 'start' | 'reasoning' | 'after-reasoning' | 'content';

/**
 * Feed text pieces with push(), then call end(). Example:
 * `const p = new ReasoningParser(); [...p.push('<think>hm'), ...p.push('</think>Hi'), ...p.end()]`
 * gives reasoning "hm" then content "Hi".
 */
export class ReasoningParser {
  private state: State;
  private buf = '';

  /**
   * @param startInReasoning the prompt already opened the think block (templates that end the
   *   generation prompt with `<think>\n`), so output begins inside it.
   */
  constructor(opts: { startInReasoning?: boolean } = {}) {
    this.state = opts.startInReasoning ? 'reasoning' : 'start';
  }

  push(text: string): ReasoningEvent[] {
    this.buf += text;
    return this.scan(false);
  }

  /** Flushes what was held back: an unclosed think block stays reasoning (e.g. max_tokens hit). */
  end(): ReasoningEvent[] {
    const out = this.scan(true);
    if (this.buf) {
      const text = this.state === 'reasoning' ? this.buf.trimEnd() : this.state === 'after-reasoning' ? '' : this.buf;
      if (text) out.push({ type: this.state === 'reasoning' ? 'reasoning' : 'content', text });
    }
    this.buf = '';
    return out;
  }

  private scan(final: boolean): ReasoningEvent[] {
    const out: ReasoningEvent[] = [];
    for (;;) {
      const before = this.state;
      this.step(out, final);
      if (this.state === before) return out;
    }
  }

  /** One state's worth of scanning; moves to the next state when its boundary is in the buffer. */
  private step(out: ReasoningEvent[], final: boolean): void {
    switch (this.state) {
      case 'start': {
        // Only a think block at the very start (after whitespace) counts, as in llama.cpp.
        const lead = this.buf.length - this.buf.trimStart().length;
        const rest = this.buf.slice(lead);
        if (rest.startsWith(THINK_OPEN)) {
          this.buf = rest.slice(THINK_OPEN.length);
          this.state = 'reasoning';
        } else if (!final && THINK_OPEN.startsWith(rest)) {
          return; // still possibly the tag (or only whitespace so far)
        } else {
          this.state = 'content';
        }
        return;
      }
      case 'reasoning': {
        // Whitespace right after <think> and right before </think> is not part of the reasoning.
        if (!this.reasoningStarted) this.buf = this.buf.trimStart();
        const at = this.buf.indexOf(THINK_CLOSE);
        if (at >= 0) {
          this.emitReasoning(out, this.buf.slice(0, at).trimEnd());
          this.buf = this.buf.slice(at + THINK_CLOSE.length);
          this.state = 'after-reasoning';
          return;
        }
        // A partial closing tag and the whitespace before it wait for the next piece.
        const hold = partialTagLength(this.buf, THINK_CLOSE);
        const n = this.buf.slice(0, this.buf.length - hold).trimEnd().length;
        this.emitReasoning(out, this.buf.slice(0, n));
        this.buf = this.buf.slice(n);
        return;
      }
      case 'after-reasoning': {
        // The answer starts after the blank line that follows </think>.
        this.buf = this.buf.trimStart();
        if (this.buf) this.state = 'content';
        return;
      }
      case 'content':
        if (this.buf) out.push({ type: 'content', text: this.buf });
        this.buf = '';
        return;
    }
  }

  private reasoningStarted = false;

  private emitReasoning(out: ReasoningEvent[], text: string): void {
    if (!text) return;
    out.push({ type: 'reasoning', text });
    this.reasoningStarted = true;
  }
}
