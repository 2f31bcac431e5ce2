// Reads and checks the tokenizer.ggml.* keys of a GGUF's metadata (llama.cpp's layout,
// gguf-py constants.py Keys.Tokenizer). Turning them into a working tokenizer is tokenizer.ts's job.
import { FormatError } from '../formats/errors.ts';
import { TokenType } from './qwen3-vocab.ts';

/** The tokenizer part of a GGUF, checked and in plain JS types. */
export interface GgufVocab {
  /** tokenizer.ggml.model: "gpt2" is byte-level BPE, the only kind we run. */
  model: string;
  /** tokenizer.ggml.pre: which pre-tokenizer regex llama.cpp applies ("qwen2", "llama-bpe", ...). */
  pre: string;
  /** Token text by id (byte-level alphabet for normal tokens, literal text for added ones). */
  tokens: string[];
  /** TokenType by id. */
  types: Uint8Array;
  /** "left right" pairs, highest priority first. */
  merges: string[];
  bosId?: number;
  eosId: number;
  eotId?: number;
  padId?: number;
  addBos: boolean;
  chatTemplate?: string;
}

function where(key: string): string {
  return `GGUF metadata ${key}`;
}

function isArrayLike(v: unknown): v is ArrayLike<unknown> {
  return Array.isArray(v) || ArrayBuffer.isView(v);
}

function stringArray(md: Map<string, unknown>, key: string): string[] {
  const v = md.get(key);
  if (!Array.isArray(v)) throw new FormatError(`${where(key)}: expected an array of strings, found ${describe(v)}`, { key });
  for (let i = 0; i < v.length; i++) {
    if (typeof v[i] !== 'string') throw new FormatError(`${where(key)}[${i}]: expected a string, found ${describe(v[i])}`, { key });
  }
  return v as string[];
}

function optionalId(md: Map<string, unknown>, key: string, nTokens: number): number | undefined {
  const v = md.get(key);
  if (v === undefined) return undefined;
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n)) throw new FormatError(`${where(key)}: expected a token id, found ${describe(v)}`, { key });
  // llama.cpp writes -1 (as u32 0xffffffff) for "no such token".
  if (n < 0 || n === 0xffffffff) return undefined;
  if (n >= nTokens) throw new FormatError(`${where(key)}: token id ${n} is past the vocabulary of ${nTokens} tokens`, { key });
  return n;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing (key missing)';
  if (isArrayLike(v)) return `an array of ${v.length}`;
  return `${typeof v} ${JSON.stringify(typeof v === 'bigint' ? String(v) : v)?.slice(0, 40)}`;
}

/** Reads tokenizer.ggml.* from GGUF metadata; throws FormatError naming the key on anything malformed. */
export function readGgufVocab(md: Map<string, unknown>): GgufVocab {
  const model = md.get('tokenizer.ggml.model');
  if (model !== 'gpt2') {
    throw new FormatError(`${where('tokenizer.ggml.model')}: expected "gpt2" (byte-level BPE), found ${describe(model)}; other tokenizer kinds are not supported yet`, { key: 'tokenizer.ggml.model' });
  }
  const pre = md.get('tokenizer.ggml.pre') ?? 'default';
  if (typeof pre !== 'string') throw new FormatError(`${where('tokenizer.ggml.pre')}: expected a string, found ${describe(pre)}`, { key: 'tokenizer.ggml.pre' });
  const tokens = stringArray(md, 'tokenizer.ggml.tokens');
  const merges = stringArray(md, 'tokenizer.ggml.merges');

  const typeKey = 'tokenizer.ggml.token_type';
  const rawTypes = md.get(typeKey);
  const types = new Uint8Array(tokens.length).fill(TokenType.Normal);
  if (rawTypes !== undefined) {
    if (!isArrayLike(rawTypes) || rawTypes.length !== tokens.length) {
      throw new FormatError(`${where(typeKey)}: expected an array of ${tokens.length} token types (one per token), found ${describe(rawTypes)}`, { key: typeKey });
    }
    for (let i = 0; i < tokens.length; i++) {
      const t = Number(rawTypes[i]);
      if (!(t >= TokenType.Normal && t <= TokenType.Byte)) throw new FormatError(`${where(typeKey)}[${i}]: expected a token type 1..6, found ${String(rawTypes[i])}`, { key: typeKey });
      types[i] = t;
    }
  }

  const eosId = optionalId(md, 'tokenizer.ggml.eos_token_id', tokens.length);
  if (eosId === undefined) throw new FormatError(`${where('tokenizer.ggml.eos_token_id')}: expected the end-of-sequence token id, found nothing`, { key: 'tokenizer.ggml.eos_token_id' });
  const addBos = md.get('tokenizer.ggml.add_bos_token');
  if (addBos !== undefined && typeof addBos !== 'boolean') throw new FormatError(`${where('tokenizer.ggml.add_bos_token')}: expected a boolean, found ${describe(addBos)}`, { key: 'tokenizer.ggml.add_bos_token' });
  const chatTemplate = md.get('tokenizer.chat_template');
  if (chatTemplate !== undefined && typeof chatTemplate !== 'string') throw new FormatError(`${where('tokenizer.chat_template')}: expected a string, found ${describe(chatTemplate)}`, { key: 'tokenizer.chat_template' });

  return {
    model,
    pre,
    tokens,
    types,
    merges,
    bosId: optionalId(md, 'tokenizer.ggml.bos_token_id', tokens.length),
    eosId,
    eotId: optionalId(md, 'tokenizer.ggml.eot_token_id', tokens.length),
    padId: optionalId(md, 'tokenizer.ggml.padding_token_id', tokens.length),
    addBos: addBos ?? false,
    chatTemplate,
  };
}
