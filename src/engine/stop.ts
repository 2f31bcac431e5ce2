// Stop conditions of one request: end-of-generation tokens, stop strings and the token budget.
// Text that might be the start of a stop string is held back until it is known not to be one,
// so a stop string is never emitted, not even in part. Detokenizing stays in the tokenizer.
import type { FinishReason } from './types.ts';

/** Holds back text while it could still become a stop string; cuts the output where one appears. */
export class StopStrings {
  private readonly stops: string[];
  /** Text received but not yet emitted (a possible stop-string start). */
  private pending = '';

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /**
   * Adds newly decoded text. Returns the text that is safe to emit now, and whether a stop string
   * was completed (then `text` is everything before it and later pushes must not happen).
   */
  push(text: string): { text: string; stopped: boolean } {
    const buf = this.pending + text;
    let cut = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.pending = '';
      return { text: buf.slice(0, cut), stopped: true };
    }
    const hold = this.heldSuffix(buf);
    this.pending = buf.slice(buf.length - hold);
    return { text: buf.slice(0, buf.length - hold), stopped: false };
  }

  /** The held-back text, for when generation ends for another reason (EOG, length, cancel). */
  flush(): string {
    const t = this.pending;
    this.pending = '';
    return t;
  }

  /** Length of the longest suffix of `buf` that is a proper prefix of some stop string. */
  private heldSuffix(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, buf.length); n > best; n--) {
        if (buf.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}

/** The text-level outcome of one sampled token. */
export interface StopStep {
  /** Text to emit with this token ('' when held back or when the token is an end-of-generation token). */
  text: string;
  /** Set when generation ends with this token. */
  finish?: FinishReason;
}

/** All stop conditions of one request, fed one sampled token (and its decoded text) at a time. */
export class StopCondition {
  private readonly strings: StopStrings;
  private nGenerated = 0;

  constructor(
    private readonly opts: { maxTokens: number; stop: readonly string[]; eogIds: ReadonlySet<number>; stopAtEog: boolean },
  ) {
    this.strings = new StopStrings(opts.stop);
  }

  /**
   * Checks token `id` whose decoded text is `text`. An EOG token ends generation with 'stop' and its
   * text is not emitted (llama.cpp does the same); reaching maxTokens ends with 'length' and flushes.
   */
  step(id: number, text: string): StopStep {
    this.nGenerated++;
    if (this.opts.stopAtEog && this.opts.eogIds.has(id)) return { text: this.strings.flush(), finish: 'stop' };
    const r = this.strings.push(text);
    if (r.stopped) return { text: r.text, finish: 'stop' };
    if (this.nGenerated >= this.opts.maxTokens) return { text: r.text + this.strings.flush(), finish: 'length' };
    return { text: r.text };
  }

  /** Held-back text to emit when the request ends from outside (cancel, error, context full). */
  flush(): string {
    return this.strings.flush();
  }
}
