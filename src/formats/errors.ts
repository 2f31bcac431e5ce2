// The one error type of the formats layer: a file (GGUF, safetensors, tokenizer data) is not what
// it claims. Callers above formats/ catch it to print the message; they never parse it.

/** Where in a file a problem was found; every field is optional because not all apply. */
export interface FormatErrorWhere {
  file?: string;
  /** Metadata key (GGUF) or JSON path (safetensors header). */
  key?: string;
  tensor?: string;
  /** Absolute byte offset in `file`. */
  offset?: number;
}

/**
 * A malformed, truncated or unsupported file. The message is complete on its own: file, key or
 * tensor, byte offset, what was expected and what was found; `where` carries the same facts as fields.
 */
export class FormatError extends Error {
  override readonly name = 'FormatError';
  constructor(
    message: string,
    readonly where: FormatErrorWhere = {},
  ) {
    super(message);
  }
}
