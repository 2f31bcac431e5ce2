// One generation as both protocols need it: the engine's token stream turned into content,
// reasoning and tool-call events (reasoning.ts, tool-calls.ts), with metrics and timings.
import type { Engine, FinishReason, GenerateRequest, GenerateStats } from '../engine/types.ts';
import type { ServerMetrics } from './metrics.ts';
import { ReasoningParser, THINK_OPEN } from './reasoning.ts';
import { ToolCallParser, type ParsedToolCall } from './tool-calls.ts';

export type ReplyFinish = FinishReason | 'tool_calls';

export type ReplyEvent =
  | { type: 'content'; text: string }
  | { type: 'reasoning'; text: string }
  | { type: 'tool_call'; call: ParsedToolCall; index: number }
  | { type: 'done'; reason: ReplyFinish; stats: GenerateStats; error?: string };

export interface ReplyOptions {
  engine: Engine;
  metrics: ServerMetrics;
  request: GenerateRequest;
  /** Aborted when the client goes away; the engine then frees the slot. */
  signal: AbortSignal;
  /** Split `<think>` blocks into reasoning; the prompt text decides whether output starts inside one. */
  reasoning?: { promptText: string };
  /** Parse `<tool_call>` blocks (only when the request offered tools). */
  tools: boolean;
}

/**
 * Submits the request now (so a full queue or a too-long prompt throws before any response is
 * sent) and returns its events; stopping the iteration early cancels the engine request.
 */
export function startReply(o: ReplyOptions): AsyncIterable<ReplyEvent> {
  const t0 = performance.now();
  const events = o.engine.generate(o.request, o.signal);
  return run();

  async function* run(): AsyncGenerator<ReplyEvent> {
    // A prompt ending in `<think>` (some templates open the block) means output starts inside it.
    const reasoning = o.reasoning ? new ReasoningParser({ startInReasoning: o.reasoning.promptText.trimEnd().endsWith(THINK_OPEN) }) : undefined;
    const tools = o.tools ? new ToolCallParser() : undefined;
    let nCalls = 0;
    let last = 0;
    function* route(evs: Array<{ type: 'content' | 'reasoning'; text: string }>, final: boolean): Generator<ReplyEvent> {
      for (const e of evs) {
        if (e.type === 'reasoning' || !tools) yield e;
        else yield* toolEvents(tools.push(e.text));
      }
      if (final && tools) yield* toolEvents(tools.end());
    }
    function* toolEvents(evs: ReturnType<ToolCallParser['push']>): Generator<ReplyEvent> {
      for (const e of evs) yield e.type === 'tool_call' ? { type: 'tool_call', call: e.call, index: nCalls++ } : e;
    }
    // A consumer that stops early (client gone) never pulls the engine's final event: count the
    // request as cancelled here so /metrics sees every request finish exactly once.
    let counted = false;
    try {
      yield* relay();
    } finally {
      if (!counted) o.metrics.requests.inc({ reason: 'cancelled' });
    }

    async function* relay(): AsyncGenerator<ReplyEvent> {
      for await (const ev of events) {
        if (ev.type === 'token') {
          const now = performance.now();
          if (last === 0) o.metrics.ttft.observe((now - t0) / 1000);
          else o.metrics.interToken.observe((now - last) / 1000);
          last = now;
          if (!ev.text) continue;
          yield* route(reasoning ? reasoning.push(ev.text) : [{ type: 'content', text: ev.text }], false);
          continue;
        }
        yield* route(reasoning ? reasoning.end() : [], true);
        const s = ev.stats;
        o.metrics.promptTokens.inc(s.promptTokens);
        o.metrics.cachedTokens.inc(s.cachedTokens);
        o.metrics.generatedTokens.inc(s.completionTokens);
        const reason: ReplyFinish = ev.reason === 'stop' && nCalls > 0 ? 'tool_calls' : ev.reason;
        o.metrics.requests.inc({ reason });
        counted = true;
        yield { type: 'done', reason, stats: s, ...(ev.error ? { error: ev.error } : {}) };
        return;
      }
    }
  }
}

/** A whole reply, for non-streaming answers. */
export interface CollectedReply {
  content: string;
  reasoning: string;
  toolCalls: ParsedToolCall[];
  reason: ReplyFinish;
  stats: GenerateStats;
  error?: string;
}

export async function collectReply(events: AsyncIterable<ReplyEvent>): Promise<CollectedReply> {
  const r: CollectedReply = { content: '', reasoning: '', toolCalls: [], reason: 'error', stats: emptyStats() };
  for await (const e of events) {
    if (e.type === 'content') r.content += e.text;
    else if (e.type === 'reasoning') r.reasoning += e.text;
    else if (e.type === 'tool_call') r.toolCalls.push(e.call);
    else Object.assign(r, { reason: e.reason, stats: e.stats, error: e.error });
  }
  return r;
}

function emptyStats(): GenerateStats {
  return { promptTokens: 0, cachedTokens: 0, completionTokens: 0, queueMs: 0, promptMs: 0, decodeMs: 0 };
}

/** llama-server's `timings` object (times in ms; prompt_n counts only the prompt tokens computed, not cached). */
export function llamaTimings(s: GenerateStats) {
  const promptN = s.promptTokens - s.cachedTokens;
  // The first token is sampled at the end of the prompt step; decode covers the rest.
  const predictedN = s.completionTokens;
  return {
    cache_n: s.cachedTokens,
    prompt_n: promptN,
    prompt_ms: s.promptMs,
    prompt_per_token_ms: promptN > 0 ? s.promptMs / promptN : 0,
    prompt_per_second: s.promptMs > 0 ? (promptN / s.promptMs) * 1000 : 0,
    predicted_n: predictedN,
    predicted_ms: s.decodeMs,
    predicted_per_token_ms: predictedN > 1 ? s.decodeMs / (predictedN - 1) : 0,
    predicted_per_second: s.decodeMs > 0 && predictedN > 1 ? ((predictedN - 1) / s.decodeMs) * 1000 : 0,
  };
}
