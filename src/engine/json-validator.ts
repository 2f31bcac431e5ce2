// An incremental JSON (RFC 8259) validator over UTF-8 bytes: a small pushdown automaton that says
// whether a byte stream is still the prefix of exactly one JSON value. Constrained decoding
// (json-constraint.ts) feeds it each candidate token's bytes; working on bytes, not characters,
// handles byte-level BPE tokens that hold only part of a UTF-8 character.

/** Which kind of value the whole text must be; 'integer' is a number without fraction or exponent. */
export type JsonTopLevel = 'any' | 'object' | 'array' | 'string' | 'number' | 'integer' | 'boolean' | 'null';

const enum M {
  Value, // expecting a value (leading whitespace allowed)
  ObjKeyOrEnd, // after '{'
  ObjKey, // after ',' in an object
  ObjColon, // after a key
  ObjNext, // after a member value: ',' or '}'
  ArrValueOrEnd, // after '['
  ArrNext, // after an element: ',' or ']'
  Str,
  StrEsc, // after '\'
  StrHex, // inside \uXXXX (hexLeft digits to go)
  StrUtf8, // inside a multi-byte character (utf8Left continuation bytes to go)
  NumMinus, // after '-'
  NumZero, // leading '0'
  NumInt,
  NumDot,
  NumFrac,
  NumE,
  NumESign,
  NumExp,
  Literal, // inside true/false/null (literal, litAt)
  Done, // the top-level value is complete: only whitespace may follow
}

const isWs = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isHex = (b: number) => isDigit(b) || (b >= 0x61 && b <= 0x66) || (b >= 0x41 && b <= 0x46);
const LITERALS: Record<number, string> = { 0x74: 'true', 0x66: 'false', 0x6e: 'null' };

/** Validator state; feed() advances it and returns false (leaving it unusable) on the first bad byte. */
export class JsonValidator {
  private mode = M.Value;
  /** Open containers, innermost last: 0x7b '{' or 0x5b '['. */
  private stack: number[] = [];
  private strIsKey = false;
  private hexLeft = 0;
  private utf8Left = 0;
  private literal = '';
  private litAt = 0;
  /** Whitespace bytes in a row outside strings. */
  private wsRun = 0;

  /**
   * `maxWsRun` caps whitespace bytes in a row outside strings (JSON itself has no cap): constrained
   * decoding sets one so a model cannot fill its budget with blanks (llama.cpp's JSON grammar caps
   * indentation too); pretty-printed JSON stays possible.
   */
  constructor(
    readonly top: JsonTopLevel = 'any',
    readonly maxWsRun = Infinity,
  ) {}

  clone(): JsonValidator {
    const c = new JsonValidator(this.top, this.maxWsRun);
    c.wsRun = this.wsRun;
    c.mode = this.mode;
    c.stack = this.stack.slice();
    c.strIsKey = this.strIsKey;
    c.hexLeft = this.hexLeft;
    c.utf8Left = this.utf8Left;
    c.literal = this.literal;
    c.litAt = this.litAt;
    return c;
  }

  /** The top-level value is complete and nothing but whitespace may follow. */
  get done(): boolean {
    return this.mode === M.Done;
  }

  /** The text so far is one complete value (a top-level number may still grow, yet may also end here). */
  get canEnd(): boolean {
    return this.mode === M.Done || (this.stack.length === 0 && (this.mode === M.NumZero || this.mode === M.NumInt || this.mode === M.NumFrac || this.mode === M.NumExp));
  }

  /** Feeds bytes; false when some byte cannot continue a JSON value (the state is then undefined). */
  feed(bytes: Uint8Array | string): boolean {
    if (typeof bytes === 'string') bytes = new TextEncoder().encode(bytes);
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i];
      if (!isWs(b) || (this.mode >= M.Str && this.mode <= M.StrUtf8)) this.wsRun = 0;
      else if (++this.wsRun > this.maxWsRun) return false;
      if (!this.byte(b)) return false;
    }
    return true;
  }

  /** Whether `bytes` could be fed next, without changing this state. */
  accepts(bytes: Uint8Array): boolean {
    return this.clone().feed(bytes);
  }

  private byte(b: number): boolean {
    switch (this.mode) {
      case M.Value:
      case M.ArrValueOrEnd:
        if (isWs(b)) return true;
        if (b === 0x5d && this.mode === M.ArrValueOrEnd) return this.close(0x5b);
        return this.startValue(b);
      case M.ObjKeyOrEnd:
        if (isWs(b)) return true;
        if (b === 0x7d) return this.close(0x7b);
        return this.startKey(b);
      case M.ObjKey:
        return isWs(b) || this.startKey(b);
      case M.ObjColon:
        if (isWs(b)) return true;
        if (b !== 0x3a) return false;
        this.mode = M.Value;
        return true;
      case M.ObjNext:
      case M.ArrNext: {
        if (isWs(b)) return true;
        const obj = this.mode === M.ObjNext;
        if (b === 0x2c) {
          this.mode = obj ? M.ObjKey : M.Value;
          return true;
        }
        return b === (obj ? 0x7d : 0x5d) && this.close(obj ? 0x7b : 0x5b);
      }
      case M.Str:
        if (b === 0x22) return this.endString();
        if (b === 0x5c) {
          this.mode = M.StrEsc;
          return true;
        }
        if (b < 0x20) return false; // control characters must be escaped
        if (b < 0x80) return true;
        // UTF-8 lead byte: how many continuation bytes follow (C0/C1 and F5+ never occur).
        this.utf8Left = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : 0;
        if (this.utf8Left === 0) return false;
        this.mode = M.StrUtf8;
        return true;
      case M.StrUtf8:
        if ((b & 0xc0) !== 0x80) return false;
        if (--this.utf8Left === 0) this.mode = M.Str;
        return true;
      case M.StrEsc:
        if (b === 0x75) {
          this.mode = M.StrHex;
          this.hexLeft = 4;
          return true;
        }
        if (!'"\\/bfnrt'.includes(String.fromCharCode(b))) return false;
        this.mode = M.Str;
        return true;
      case M.StrHex:
        if (!isHex(b)) return false;
        if (--this.hexLeft === 0) this.mode = M.Str;
        return true;
      case M.NumMinus:
        if (b === 0x30) this.mode = M.NumZero;
        else if (isDigit(b)) this.mode = M.NumInt;
        else return false;
        return true;
      case M.NumZero:
      case M.NumInt:
        if (isDigit(b) && this.mode === M.NumInt) return true;
        if (b === 0x2e && !this.integerOnly()) this.mode = M.NumDot;
        else if ((b === 0x65 || b === 0x45) && !this.integerOnly()) this.mode = M.NumE;
        else return this.endNumber(b);
        return true;
      case M.NumDot:
        if (!isDigit(b)) return false;
        this.mode = M.NumFrac;
        return true;
      case M.NumFrac:
        if (isDigit(b)) return true;
        if (b === 0x65 || b === 0x45) {
          this.mode = M.NumE;
          return true;
        }
        return this.endNumber(b);
      case M.NumE:
        if (b === 0x2b || b === 0x2d) this.mode = M.NumESign;
        else if (isDigit(b)) this.mode = M.NumExp;
        else return false;
        return true;
      case M.NumESign:
        if (!isDigit(b)) return false;
        this.mode = M.NumExp;
        return true;
      case M.NumExp:
        return isDigit(b) || this.endNumber(b);
      case M.Literal:
        if (b !== this.literal.charCodeAt(this.litAt)) return false;
        if (++this.litAt === this.literal.length) this.endValue();
        return true;
      case M.Done:
        return isWs(b);
    }
  }

  private integerOnly(): boolean {
    return this.top === 'integer' && this.stack.length === 0;
  }

  /** First byte of a value; at the top level it must match the required kind. */
  private startValue(b: number): boolean {
    if (this.stack.length === 0 && !this.topAllows(b)) return false;
    if (b === 0x7b) {
      this.stack.push(b);
      this.mode = M.ObjKeyOrEnd;
    } else if (b === 0x5b) {
      this.stack.push(b);
      this.mode = M.ArrValueOrEnd;
    } else if (b === 0x22) {
      this.strIsKey = false;
      this.mode = M.Str;
    } else if (b === 0x2d) this.mode = M.NumMinus;
    else if (b === 0x30) this.mode = M.NumZero;
    else if (isDigit(b)) this.mode = M.NumInt;
    else if (LITERALS[b]) {
      this.literal = LITERALS[b];
      this.litAt = 1;
      this.mode = M.Literal;
    } else return false;
    return true;
  }

  private topAllows(b: number): boolean {
    switch (this.top) {
      case 'any':
        return true;
      case 'object':
        return b === 0x7b;
      case 'array':
        return b === 0x5b;
      case 'string':
        return b === 0x22;
      case 'number':
      case 'integer':
        return b === 0x2d || isDigit(b);
      case 'boolean':
        return b === 0x74 || b === 0x66;
      case 'null':
        return b === 0x6e;
    }
  }

  private startKey(b: number): boolean {
    if (b !== 0x22) return false;
    this.strIsKey = true;
    this.mode = M.Str;
    return true;
  }

  private endString(): boolean {
    if (this.strIsKey) this.mode = M.ObjColon;
    else this.endValue();
    return true;
  }

  /** A number ends at the first byte that cannot extend it; that byte is then read as what follows. */
  private endNumber(b: number): boolean {
    this.endValue();
    return this.byte(b);
  }

  private close(open: number): boolean {
    if (this.stack.pop() !== open) return false;
    this.endValue();
    return true;
  }

  private endValue(): void {
    const top = this.stack[this.stack.length - 1];
    this.mode = top === undefined ? M.Done : top === 0x7b ? M.ObjNext : M.ArrNext;
  }
}
