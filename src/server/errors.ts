// ApiError: a client mistake (4xx) or a server fault (5xx) found while answering HTTP. app.ts turns it
// into each protocol's error body (OpenAI / llama-server `{"error":{code,message,type}}`, Ollama `{"error":"…"}`).
import type { ZodError } from 'zod';
import { EngineError } from '../engine/errors.ts';

/** llama-server's error types, which its clients switch on. */
export type ApiErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'exceed_context_size_error'
  | 'unavailable_error'
  | 'server_error'
  | 'not_supported_error';

export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    readonly type: ApiErrorType,
    message: string,
    /** The request field at fault, as a JSON path (`messages[0].content`). */
    readonly param?: string,
  ) {
    super(message);
  }
}

export const badRequest = (message: string, param?: string) => new ApiError(400, 'invalid_request_error', message, param);

/** `messages[0].content`-style path of a zod issue. */
function jsonPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(body)';
}

/** What a JSON value is, for messages: "number 5", "string", "array", "null". */
function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'number' || typeof v === 'boolean') return `${typeof v} ${v}`;
  return typeof v === 'object' ? 'an object' : typeof v;
}

/** The first issue of a failed body parse, with where it is and what was found, as a 400. */
export function fromZod(err: ZodError, body: unknown): ApiError {
  const issue = err.issues[0]!;
  const where = jsonPath(issue.path);
  let found: unknown = body;
  for (const p of issue.path) found = found !== null && typeof found === 'object' ? (found as Record<PropertyKey, unknown>)[p] : undefined;
  // zod says only "Invalid input" for a union; say what was there instead.
  const what = issue.code === 'invalid_union' ? `unexpected value (found ${describeValue(found)})` : issue.message;
  const more = err.issues.length > 1 ? ` (and ${err.issues.length - 1} more problem${err.issues.length > 2 ? 's' : ''})` : '';
  return badRequest(`${where}: ${what}${more}`, where);
}

/** EngineError codes to HTTP: a full queue or a closed engine is ours (503), the rest is the client's (400). */
export function fromEngine(err: EngineError): ApiError {
  switch (err.code) {
    case 'queue_full':
      return new ApiError(503, 'unavailable_error', err.message);
    case 'closed':
      return new ApiError(503, 'unavailable_error', `the model is not available: ${err.message}`);
    case 'prompt_too_long':
      return new ApiError(400, 'exceed_context_size_error', err.message);
    case 'bad_request':
      return badRequest(err.message);
  }
}

/** Any thrown value as an ApiError; unknown errors are 500 with their message (never a stack). */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof EngineError) return fromEngine(err);
  if (err instanceof Error && err.name === 'ChatTemplateError') return badRequest(err.message);
  return new ApiError(500, 'server_error', err instanceof Error ? err.message : String(err));
}
