// Typed errors of the engine's request boundary; the server maps `code` to an HTTP status.

/**
 * - queue_full: every slot is busy and the wait queue is at maxQueue (HTTP 503).
 * - prompt_too_long: the prompt does not fit the context and truncation was not asked for (HTTP 400).
 * - bad_request: invalid sampling settings, token ids out of range, maxTokens < 1 (HTTP 400).
 * - closed: the engine was closed or its worker died (HTTP 503).
 */
export type EngineErrorCode = 'queue_full' | 'prompt_too_long' | 'bad_request' | 'closed';

export class EngineError extends Error {
  override readonly name = 'EngineError';
  constructor(
    readonly code: EngineErrorCode,
    message: string,
  ) {
    super(message);
  }
}
