// Constrained decoding to one JSON value: which tokens may come next, given the text so far.
// The scheduler asks allows(id) for sampled candidates (sampler.ts scans them best first) and
// accept(id) for the token taken; the JSON grammar itself is json-validator.ts, over bytes.
import { JsonValidator, type JsonTopLevel } from './json-validator.ts';

/** What the constraint needs of the tokenizer: each token's bytes and which ids are control tokens. */
export interface ConstraintTokenizer {
  readonly eogIds: ReadonlySet<number>;
  tokenBytes(id: number): Uint8Array;
  isControl(id: number): boolean;
}

/** Whitespace bytes in a row allowed outside strings: a newline and deep indentation, not a page of blanks. */
const MAX_WS_RUN = 24;

export class JsonConstraint {
  private readonly v: JsonValidator;
  /**
   * Per first byte, whether it can come next (1), cannot (0) or is not yet known (-1); reset on
   * accept(). Most of a vocabulary fails on its first byte, so testing every token (the sampler's
   * whole-row mask) mostly costs one table lookup each.
   */
  private readonly firstByte = new Int8Array(256).fill(-1);
  /** allows() as a bound function, made once: the sampler calls it per candidate. */
  readonly allow = (id: number): boolean => this.allows(id);

  constructor(
    top: JsonTopLevel,
    private readonly tokenizer: ConstraintTokenizer,
  ) {
    this.v = new JsonValidator(top, MAX_WS_RUN);
  }

  /**
   * Whether `id` may come next: an end-of-generation token once the value is complete; no other
   * control token (`<|im_start|>` is not JSON text); a text token whose bytes continue the value.
   */
  allows(id: number): boolean {
    if (this.tokenizer.eogIds.has(id)) return this.v.canEnd;
    if (this.tokenizer.isControl(id)) return false;
    const bytes = this.tokenizer.tokenBytes(id);
    if (bytes.length === 0) return false;
    const b0 = bytes[0];
    if (this.firstByte[b0] < 0) this.firstByte[b0] = this.v.accepts(bytes.subarray(0, 1)) ? 1 : 0;
    return this.firstByte[b0] === 1 && (bytes.length === 1 || this.v.accepts(bytes));
  }

  /** Advances past token `id` (one allows() said yes to). */
  accept(id: number): void {
    if (this.tokenizer.eogIds.has(id)) return;
    this.firstByte.fill(-1);
    if (!this.v.feed(this.tokenizer.tokenBytes(id))) throw new Error(`json constraint: token ${id} does not continue the JSON value (accept() without allows())`);
  }

  /** The value is complete and only whitespace could follow: generation should stop. */
  get done(): boolean {
    return this.v.done;
  }
}
