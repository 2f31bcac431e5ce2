// GGUF tokenizer metadata (tokenizer.ggml.*, tokenizer.chat_template) from a Hugging Face folder's
// tokenizer.json and tokenizer_config.json, as llama.cpp's converter builds it for byte-level BPE
// models of the Qwen family (gguf-py vocab.py: SpecialVocab, does_token_look_special).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError } from './errors.ts';

/** The stored GGUF type of each key, in setTokenizerMetadata's notation. */
export const HF_TOKENIZER_GGUF_TYPES: Readonly<Record<string, string>> = {
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

// llama.cpp token types (gguf.TokenType).
const NORMAL = 1;
const CONTROL = 3;
const USER_DEFINED = 4;
const UNUSED = 5;

interface TokenizerJson {
  added_tokens?: Array<{ id: number; content: string; special: boolean }>;
  model?: { type?: string; vocab?: Record<string, number>; merges?: Array<string | [string, string]> };
}

async function json(file: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FormatError(`${file}: ${code === 'ENOENT' ? 'missing' : `not readable JSON (${(e as Error).message})`}; the tokenizer comes from tokenizer.json and tokenizer_config.json`, { file });
  }
}

/** A special token given as "text" or { content: "text" } in tokenizer_config.json. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/**
 * Tokenizer metadata for `vocab` embedding rows from `dir` (rows past the tokenizer become unused
 * `[PADn]` tokens). `config` is config.json, consulted for ids tokenizer_config.json leaves out.
 */
export async function hfTokenizerMetadata(dir: string, config: Record<string, unknown>, vocab: number): Promise<Map<string, unknown>> {
  const tjPath = join(dir, 'tokenizer.json');
  return tokenizerMetadataFromJson(await json(tjPath), await json(join(dir, 'tokenizer_config.json')), config, vocab, tjPath);
}

/**
 * The same from already parsed tokenizer.json (`tokenizerJson`) and tokenizer_config.json
 * (`tokenizerConfig`); `tjPath` names tokenizer.json in errors.
 */
export function tokenizerMetadataFromJson(
  tokenizerJson: Record<string, unknown>,
  tc: Record<string, unknown>,
  config: Record<string, unknown>,
  vocab: number,
  tjPath: string,
): Map<string, unknown> {
  const tj = tokenizerJson as TokenizerJson;
  if (tj.model?.type !== 'BPE' || !tj.model.vocab || !tj.model.merges) {
    throw new FormatError(`${tjPath}: expected a BPE model with vocab and merges, found ${JSON.stringify(tj.model?.type)}`, { file: tjPath, key: 'model.type' });
  }
  const tokens: string[] = new Array(vocab);
  const types: number[] = new Array(vocab);
  const ids = new Map<string, number>();
  const put = (id: number, text: string, type: number) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new FormatError(`${tjPath}: token ${JSON.stringify(text)} has id ${id}, outside the model's ${vocab} embedding rows (config vocab_size)`, { file: tjPath });
    }
    tokens[id] = text;
    types[id] = type;
    ids.set(text, id);
  };
  for (const [text, id] of Object.entries(tj.model.vocab)) put(id, text, NORMAL);
  // does_token_look_special: special tokens and <|...|> ones are CONTROL, other added tokens USER_DEFINED.
  for (const t of tj.added_tokens ?? []) put(t.id, t.content, t.special || (t.content.startsWith('<|') && t.content.endsWith('|>')) ? CONTROL : USER_DEFINED);
  for (let id = 0; id < vocab; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = UNUSED;
    }
  }
  const merges = tj.model.merges.map((m) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`));

  // SpecialVocab: tokenizer_config.json's token texts first, then config.json's *_token_id.
  const special = (kind: string): number | undefined => {
    const text = tokenText(tc[`${kind}_token`]);
    if (text !== undefined && ids.has(text)) return ids.get(text);
    const id = config[`${kind}_token_id`];
    return typeof id === 'number' ? id : undefined;
  };
  const out = new Map<string, unknown>([
    ['tokenizer.ggml.model', 'gpt2'],
    // The converter identifies the pre-tokenizer by hashing it; every Qwen2/Qwen3 tokenizer is "qwen2".
    ['tokenizer.ggml.pre', 'qwen2'],
    ['tokenizer.ggml.tokens', tokens],
    ['tokenizer.ggml.token_type', types],
    ['tokenizer.ggml.merges', merges],
  ]);
  const eos = special('eos');
  const pad = special('pad');
  const bos = special('bos');
  if (eos !== undefined) out.set('tokenizer.ggml.eos_token_id', eos);
  if (pad !== undefined) out.set('tokenizer.ggml.padding_token_id', pad);
  if (bos !== undefined) out.set('tokenizer.ggml.bos_token_id', bos);
  if (typeof tc.add_bos_token === 'boolean') out.set('tokenizer.ggml.add_bos_token', tc.add_bos_token);
  if (typeof tc.chat_template === 'string') out.set('tokenizer.chat_template', tc.chat_template);
  return out;
}
