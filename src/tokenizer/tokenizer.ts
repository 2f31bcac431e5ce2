// Text ⇄ token ids for a model, built from its GGUF tokenizer.ggml.* metadata. Encoding runs in
// @huggingface/tokenizers; decoding is ours (byte-level text → bytes → UTF-8) so that whole and
// streamed decodes agree byte for byte. Chat formatting lives in chat-template.ts.
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { byteLevelToBytes } from './byte-level.ts';
import { readGgufVocab, type GgufVocab } from './gguf-vocab.ts';
import { toHfTokenizerJson } from './hf-json.ts';
import { TokenType } from './qwen3-vocab.ts';

/**
 * Token texts that end generation when they are control tokens: llama.cpp's list
 * (llama-vocab.cpp, special_eog_ids), which also counts the FIM pad/repo/file-separator tokens.
 */
const EOG_TEXTS = new Set([
  '<|eot_id|>', '<|im_end|>', '<|end|>', '<|return|>', '<|call|>', '<end_of_turn>', '<|endoftext|>',
  '<|eom_id|>', '<EOT>', '_<EOT>', '<|end_of_text|>', '<end_of_utterance>',
  '<|fim_pad|>', '<fim-pad>', '<fim_pad>', '<|repo_name|>', '<reponame>', '<repo_name>', '<|file_sep|>', '<file_sep>', '<file-sep>',
]);

export interface EncodeOptions {
  /** Add BOS when the model asks for it (tokenizer.ggml.add_bos_token). Default true. */
  addSpecial?: boolean;
  /** Turn control-token text such as "<|im_start|>" into its id; false encodes it as plain text. Default true. */
  parseSpecial?: boolean;
}

export interface StreamDecoder {
  /** Adds one token; returns the text completed by it ('' while a character is split across tokens). */
  push(id: number): string;
  /** Returns whatever is left, with U+FFFD for an unfinished character, and resets. */
  flush(): string;
}

const utf8 = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();

/** Length of the longest prefix of `b` that does not end inside an unfinished UTF-8 sequence. */
function completeUtf8Prefix(b: Uint8Array): number {
  for (let i = b.length - 1; i >= Math.max(0, b.length - 4); i--) {
    const x = b[i];
    if ((x & 0xc0) === 0x80) continue; // continuation byte: keep looking for the lead
    const need = x < 0x80 ? 1 : (x & 0xe0) === 0xc0 ? 2 : (x & 0xf0) === 0xe0 ? 3 : (x & 0xf8) === 0xf0 ? 4 : 1;
    return b.length - i < need ? i : b.length;
  }
  return b.length;
}

/** A model's tokenizer. Build with Tokenizer.fromGguf(metadata). */
export class Tokenizer {
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId: number;
  /** Ids that end generation: EOS, EOT and the control tokens llama.cpp treats as end of generation. */
  readonly eogIds: ReadonlySet<number>;
  /** Bytes of each token, computed on first use. */
  private readonly pieces: Array<Uint8Array | undefined>;
  private plainTextEncoder?: HfTokenizer;

  private constructor(
    private readonly vocab: GgufVocab,
    private readonly hf: HfTokenizer,
  ) {
    this.vocabSize = vocab.tokens.length;
    this.bosId = vocab.bosId;
    this.eosId = vocab.eosId;
    this.pieces = new Array(this.vocabSize);
    const eog = new Set<number>([vocab.eosId]);
    if (vocab.eotId !== undefined) eog.add(vocab.eotId);
    for (let id = 0; id < this.vocabSize; id++) {
      if (vocab.types[id] === TokenType.Control && EOG_TEXTS.has(vocab.tokens[id])) eog.add(id);
    }
    this.eogIds = eog;
  }

  /** Builds the tokenizer from GGUF metadata (tokenizer.ggml.*); throws FormatError on bad metadata. */
  static fromGguf(metadata: Map<string, unknown>): Tokenizer {
    const vocab = readGgufVocab(metadata);
    return new Tokenizer(vocab, new HfTokenizer(toHfTokenizerJson(vocab, { includeControl: true }), {}));
  }

  /** The chat template stored in the GGUF (tokenizer.chat_template), if any. */
  get chatTemplate(): string | undefined {
    return this.vocab.chatTemplate;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const { addSpecial = true, parseSpecial = true } = opts;
    const enc = parseSpecial ? this.hf : this.plainText();
    const ids = text === '' ? [] : enc.encode(text, { add_special_tokens: false }).ids;
    if (addSpecial && this.vocab.addBos && this.bosId !== undefined) ids.unshift(this.bosId);
    return ids;
  }

  /** Text of `ids`; invalid UTF-8 becomes U+FFFD. skipSpecial drops control tokens (`<|im_end|>`), not `<think>`. */
  decode(ids: number[], opts: { skipSpecial?: boolean } = {}): string {
    const parts: Uint8Array[] = [];
    let n = 0;
    for (const id of ids) {
      if (opts.skipSpecial && this.vocab.types[id] === TokenType.Control) continue;
      const p = this.piece(id);
      parts.push(p);
      n += p.length;
    }
    const all = new Uint8Array(n);
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return utf8.decode(all);
  }

  /** A decoder for one generated stream: yields only completed characters. */
  createStreamDecoder(opts: { skipSpecial?: boolean } = {}): StreamDecoder {
    let pending = new Uint8Array(0);
    return {
      push: (id) => {
        if (opts.skipSpecial && this.vocab.types[id] === TokenType.Control) return '';
        const p = this.piece(id);
        const buf = new Uint8Array(pending.length + p.length);
        buf.set(pending);
        buf.set(p, pending.length);
        const cut = completeUtf8Prefix(buf);
        pending = buf.slice(cut);
        return utf8.decode(buf.subarray(0, cut));
      },
      flush: () => {
        const rest = utf8.decode(pending);
        pending = new Uint8Array(0);
        return rest;
      },
    };
  }

  /** The token's text as stored in the GGUF (byte-level form for normal tokens, e.g. "Ġthe"). */
  tokenText(id: number): string {
    this.checkId(id);
    return this.vocab.tokens[id];
  }

  /** The token's raw bytes as decoding emits them (part of a UTF-8 character for some byte-level tokens). */
  tokenBytes(id: number): Uint8Array {
    return this.piece(id);
  }

  /** Whether `id` is a control token (`<|im_start|>`), as opposed to text or `<think>`-style added tokens. */
  isControl(id: number): boolean {
    this.checkId(id);
    return this.vocab.types[id] === TokenType.Control;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
  }

  private piece(id: number): Uint8Array {
    const cached = this.pieces[id];
    if (cached) return cached;
    this.checkId(id);
    const text = this.vocab.tokens[id];
    const type = this.vocab.types[id];
    // Added tokens are stored as literal text; everything else in the byte-level alphabet.
    const literal = type === TokenType.Control || type === TokenType.UserDefined;
    const p = (literal ? undefined : byteLevelToBytes(text)) ?? utf8Encoder.encode(text);
    this.pieces[id] = p;
    return p;
  }

  /** Second HF tokenizer without control tokens, built on first parseSpecial:false call. */
  private plainText(): HfTokenizer {
    this.plainTextEncoder ??= new HfTokenizer(toHfTokenizerJson(this.vocab, { includeControl: false }), {});
    return this.plainTextEncoder;
  }
}
