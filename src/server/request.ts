// What every route shares: the server's context, reading a JSON body against its zod schema, the
// model-name check, sampling from wire fields, and the JSON-output instruction for `format` /
// `response_format`.
import { basename } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Context } from 'hono';
import type { z } from 'zod';
import type { JsonTopLevel } from '../engine/json-validator.ts';
import { DEFAULT_SAMPLING, type ChatMessage, type ModelInfo, type SamplingParams } from '../engine/types.ts';
import { ApiError, badRequest, fromZod } from './errors.ts';
import type { ModelHost } from './host.ts';
import type { ServerMetrics } from './metrics.ts';

export interface ServerContext {
  host: ModelHost;
  metrics: ServerMetrics;
  /** Mixtile's version (Ollama /api/version, system_fingerprint). */
  version: string;
}

/** The body parsed as JSON and checked by `schema`; a 400 that says where when it is not. */
export async function readJson<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  const text = await c.req.text();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw badRequest(`the request body is not valid JSON: ${(err as Error).message}${text ? '' : ' (the body is empty)'}`);
  }
  const r = schema.safeParse(value);
  if (!r.success) throw fromZod(r.error, value);
  return r.data;
}

/** Names a client may use for the model: its display name, with Ollama's ":latest", or the file name. */
export function modelNames(info: ModelInfo): string[] {
  const file = basename(info.path);
  return [info.name, `${info.name}:latest`, file, file.replace(/\.gguf$/i, '')];
}

/** 404 (the protocols' "model not found") unless `requested` is absent or names the loaded model. */
export function checkModel(info: ModelInfo, requested: string | undefined | null): void {
  if (!requested) return;
  if (modelNames(info).includes(requested)) return;
  throw new ApiError(404, 'not_found_error', `model "${requested}" not found; this server runs "${info.name}" (see GET /v1/models)`, 'model');
}

/** Wire sampling fields (already range-checked by the schema) over llama.cpp's defaults. */
export function samplingFrom(f: {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repeat_penalty?: number | null;
  repeat_last_n?: number | null;
}): SamplingParams {
  const d = DEFAULT_SAMPLING;
  return {
    temperature: f.temperature ?? d.temperature,
    topP: f.top_p ?? d.topP,
    topK: f.top_k ?? d.topK,
    minP: f.min_p ?? d.minP,
    presencePenalty: f.presence_penalty ?? d.presencePenalty,
    frequencyPenalty: f.frequency_penalty ?? d.frequencyPenalty,
    repeatPenalty: f.repeat_penalty ?? d.repeatPenalty,
    repeatLastN: f.repeat_last_n ?? d.repeatLastN,
    ...(f.seed != null ? { seed: f.seed } : {}),
  };
}

/**
 * Tokens to generate: the client's limit, else what the context has room for. A limit larger
 * than the whole context can never be met and is refused; a smaller one that does not fit
 * after this prompt is cut to the room left (the reply then ends with "length").
 */
export function maxTokensFor(requested: number | null | undefined, promptTokens: number, contextLength: number, field: string): number {
  const room = Math.max(1, contextLength - promptTokens);
  if (requested == null) return room;
  if (requested > contextLength) {
    throw new ApiError(400, 'exceed_context_size_error', `${field} is ${requested} but the context holds ${contextLength} tokens in all; ask for at most ${room} after this ${promptTokens}-token prompt, or start the server with a larger --ctx-size`, field);
  }
  return Math.min(requested, room);
}

/** `text` added to the system message (one is created first when there is none). */
export function withSystemInstruction(messages: ChatMessage[], text: string): ChatMessage[] {
  const [first, ...rest] = messages;
  if (first?.role === 'system') return [{ ...first, content: `${first.content}\n\n${text}` }, ...rest];
  return [{ role: 'system', content: text }, ...messages];
}

/**
 * JSON output, asked for in words: the system message gains an instruction (with the schema when
 * given). It helps the model; the guarantee comes from constrained decoding (GenerateRequest.json).
 */
export function withJsonInstruction(messages: ChatMessage[], schema: unknown): ChatMessage[] {
  const text =
    schema === undefined
      ? 'Respond with a single valid JSON value and nothing else.'
      : `Respond with a single valid JSON value and nothing else. It must match this JSON schema:\n${JSON.stringify(schema)}`;
  return withSystemInstruction(messages, text);
}

const TOP_LEVEL_KINDS: readonly string[] = ['object', 'array', 'string', 'number', 'integer', 'boolean', 'null'];

/**
 * The top-level kind a JSON schema asks for (`"type": "object"`), which constrained decoding
 * enforces; anything else (no type, a list of types, $ref, anyOf) allows any JSON value. Nested
 * properties, required keys and enums are not enforced, only asked for in the instruction.
 */
export function jsonTopLevelOf(schema: unknown): JsonTopLevel {
  const type = typeof schema === 'object' && schema !== null ? (schema as { type?: unknown }).type : undefined;
  return typeof type === 'string' && TOP_LEVEL_KINDS.includes(type) ? (type as JsonTopLevel) : 'any';
}

/** A short random id such as OpenAI's (`chatcmpl-…`, `call_…`). */
export function randomId(prefix: string): string {
  return prefix + randomBytes(12).toString('hex');
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);
