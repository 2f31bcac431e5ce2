// The engine's own request and event types: what the server and CLI speak to the engine.
// No JSON or protocol names here; src/server/ converts wire formats to and from these.
import type { JsonTopLevel } from './json-validator.ts';

/** Sampling settings of one request; defaults are llama.cpp's. temperature 0 = greedy. */
export interface SamplingParams {
  temperature: number; // 0.8
  topK: number; // 40; 0 = off
  topP: number; // 0.95; 1 = off
  minP: number; // 0.05; 0 = off
  repeatPenalty: number; // 1.0 = off
  repeatLastN: number; // 64
  presencePenalty: number; // 0
  frequencyPenalty: number; // 0
  seed?: number; // random when absent
}

export const DEFAULT_SAMPLING: SamplingParams = {
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repeatPenalty: 1.0,
  repeatLastN: 64,
  presencePenalty: 0,
  frequencyPenalty: 0,
};

export interface GenerateRequest {
  /** Prompt as token ids (the server tokenizes; the engine never sees text in). */
  prompt: number[];
  maxTokens: number;
  sampling: SamplingParams;
  /** Generation stops when the output text contains one of these; the stop text is not emitted. */
  stop: string[];
  /** Stop at end-of-generation tokens (EOS, <|im_end|>); false only for benchmarks. */
  stopAtEog: boolean;
  /**
   * A prompt that does not fit the context keeps only its last tokens (room is left to generate)
   * instead of failing with EngineError('prompt_too_long'). Default false.
   */
  truncatePrompt?: boolean;
  /**
   * Constrained decoding: the output is one syntactically valid JSON value of this top-level kind
   * ('any' for any value), then generation stops. Only tokens that continue the value are sampled;
   * end-of-generation only once it is complete. maxTokens and stop strings still cut it short.
   */
  json?: JsonTopLevel;
}

export type FinishReason = 'stop' | 'length' | 'cancelled' | 'error';

export interface GenerateStats {
  promptTokens: number;
  /** Prompt tokens whose KV came from the prefix cache. */
  cachedTokens: number;
  completionTokens: number;
  /** Milliseconds spent queued, in prefill, and in decode. */
  queueMs: number;
  promptMs: number;
  decodeMs: number;
}

export type GenerateEvent =
  /** One sampled token; `text` is the newly completed UTF-8 text (may be '' mid-character). */
  | { type: 'token'; id: number; text: string }
  | { type: 'done'; reason: FinishReason; stats: GenerateStats; error?: string };

export interface ModelInfo {
  /** Display name (file name without extension, or "mixtile-demo"). */
  name: string;
  path: string;
  architecture: string; // GGUF general.architecture, e.g. "qwen3moe"
  fileType: string; // e.g. "Q4_K_M"
  nParams: number;
  nActiveParams: number;
  contextLength: number; // the context the engine was started with
  sizeBytes: number;
  /** True for the built-in random-weight demo model: its output is noise. */
  isDemo: boolean;
}

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool';
export interface ChatToolCall {
  id?: string;
  name: string;
  arguments: Record<string, unknown>;
}
export interface ChatMessage {
  role: ChatRole;
  content: string;
  reasoningContent?: string;
  toolCalls?: ChatToolCall[];
  toolCallId?: string;
  name?: string;
}
/** A tool in OpenAI's function shape: { type: 'function', function: { name, description, parameters } }. */
export interface ChatTool {
  type: 'function';
  function: { name: string; description?: string; parameters?: unknown };
}
export interface ChatTemplateOptions {
  tools?: ChatTool[];
  addGenerationPrompt: boolean;
  enableThinking: boolean;
}

/** What the server and CLI hold: a loaded model that answers requests, possibly concurrently. */
export interface Engine {
  readonly info: ModelInfo;
  tokenize(text: string, opts?: { addSpecial?: boolean; parseSpecial?: boolean }): number[];
  detokenize(ids: number[]): string;
  applyChatTemplate(messages: ChatMessage[], opts: ChatTemplateOptions): string;
  /**
   * Streams tokens; aborting `signal` (or leaving the loop early) ends the request with reason
   * 'cancelled' and frees the slot. A request that cannot be accepted throws EngineError
   * (src/engine/errors.ts: queue_full, prompt_too_long, bad_request, closed) from this call itself,
   * before any iteration; faults while running end the stream with reason 'error'.
   */
  generate(req: GenerateRequest, signal?: AbortSignal): AsyncIterable<GenerateEvent>;
  /** Counters for /metrics and `bench --op`: requests running/queued, per-kernel time. */
  stats(): { running: number; queued: number; slots: number };
  close(): Promise<void>;
}
