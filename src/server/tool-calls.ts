// Incremental parser for Qwen3 (hermes-style) tool calls in the answer text:
// `<tool_call>\n{"name": "f", "arguments": {…}}\n</tool_call>`. Text outside the tags is content;
// no part of a tag reaches the content, even when the tag arrives split across pieces.
import { partialTagLength } from './tag-scan.ts';

export const TOOL_OPEN = '<tool_call>';
export const TOOL_CLOSE = '</tool_call>';

export interface ParsedToolCall {
  name: string;
  arguments: Record<string, unknown>;
}

export type ToolCallEvent = { type: 'content'; text: string } | { type: 'tool_call'; call: ParsedToolCall };

/** `{"name": …, "arguments": {…}}` (arguments may also be a JSON string, as some models write) or undefined. */
export function parseToolCallJson(text: string): ParsedToolCall | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const { name, arguments: args } = v as { name?: unknown; arguments?: unknown };
  if (typeof name !== 'string' || !name) return undefined;
  let a = args ?? {};
  if (typeof a === 'string') {
    try {
      a = JSON.parse(a);
    } catch {
      return undefined;
    }
  }
  if (typeof a !== 'object' || a === null || Array.isArray(a)) return undefined;
  return { name, arguments: a as Record<string, unknown> };
}

/**
 * Feed answer text with push(), then call end(). Whitespace between and around calls is dropped
 * once a call has been seen; a block whose JSON does not parse is passed on as content, tags and
 * all, because that is what the model wrote.
 */
export class ToolCallParser {
  private inCall = false;
  private buf = '';
  private nCalls = 0;

  push(text: string): ToolCallEvent[] {
    this.buf += text;
    const out: ToolCallEvent[] = [];
    for (;;) {
      if (this.inCall) {
        const at = this.buf.indexOf(TOOL_CLOSE);
        if (at < 0) return out;
        this.finishCall(out, this.buf.slice(0, at), TOOL_CLOSE);
        this.buf = this.buf.slice(at + TOOL_CLOSE.length);
        continue;
      }
      const at = this.buf.indexOf(TOOL_OPEN);
      if (at >= 0) {
        // Whitespace just before a call separates calls; it is not content.
        const before = this.buf.slice(0, at).trimEnd();
        if (before) out.push({ type: 'content', text: before });
        this.buf = this.buf.slice(at + TOOL_OPEN.length);
        this.inCall = true;
        continue;
      }
      // Hold back a partial opening tag and trailing whitespace (it may precede a call).
      const hold = partialTagLength(this.buf, TOOL_OPEN);
      const n = this.buf.slice(0, this.buf.length - hold).trimEnd().length;
      if (n > 0) out.push({ type: 'content', text: this.buf.slice(0, n) });
      this.buf = this.buf.slice(n);
      return out;
    }
  }

  /** Flushes held text; an unclosed call whose JSON is complete still counts (output cut at the tag). */
  end(): ToolCallEvent[] {
    const out: ToolCallEvent[] = [];
    if (this.inCall) this.finishCall(out, this.buf, '');
    else if (this.buf && !(this.nCalls > 0 && !this.buf.trim())) out.push({ type: 'content', text: this.buf });
    this.buf = '';
    this.inCall = false;
    return out;
  }

  /** Calls parsed so far. */
  get count(): number {
    return this.nCalls;
  }

  private finishCall(out: ToolCallEvent[], body: string, close: string): void {
    this.inCall = false;
    const call = parseToolCallJson(body.trim());
    if (call) {
      this.nCalls++;
      out.push({ type: 'tool_call', call });
    } else {
      out.push({ type: 'content', text: TOOL_OPEN + body + close });
    }
  }
}
