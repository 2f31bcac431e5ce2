// Builds the tokenizer.json object that @huggingface/tokenizers runs, from a GGUF vocabulary.
// The pre-tokenizer regexes are the ones the model's own tokenizer.json carries; llama.cpp
// (llama-vocab.cpp) picks its copy of them by tokenizer.ggml.pre the same way.
import { FormatError } from '../formats/errors.ts';
import type { GgufVocab } from './gguf-vocab.ts';
import { TokenType } from './qwen3-vocab.ts';

interface PreTokenizerSpec {
  regex: string;
  /** Unicode normalization the HF tokenizer applies before splitting (Qwen2 uses NFC). */
  normalizer: 'NFC' | null;
}

const PRE_TOKENIZERS: Readonly<Record<string, PreTokenizerSpec>> = {
  qwen2: {
    regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    normalizer: 'NFC',
  },
  'llama-bpe': {
    regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    normalizer: null,
  },
};

/** The added tokens of a vocabulary: CONTROL ones are "special" (skipped by skipSpecial), USER_DEFINED are not. */
export function addedTokens(vocab: GgufVocab, opts: { includeControl: boolean }) {
  const out = [];
  for (let id = 0; id < vocab.tokens.length; id++) {
    const t = vocab.types[id];
    if (t === TokenType.UserDefined || (opts.includeControl && t === TokenType.Control)) {
      out.push({ id, content: vocab.tokens[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: t === TokenType.Control });
    }
  }
  return out;
}

/**
 * A tokenizer.json-shaped object for `vocab`. With includeControl false, control tokens
 * (`<|im_start|>`) are left out of the added-token splitter, so their text encodes as plain text.
 */
export function toHfTokenizerJson(vocab: GgufVocab, opts: { includeControl: boolean }): object {
  const spec = PRE_TOKENIZERS[vocab.pre];
  if (!spec) {
    throw new FormatError(`GGUF metadata tokenizer.ggml.pre: pre-tokenizer "${vocab.pre}" is not supported (known: ${Object.keys(PRE_TOKENIZERS).join(', ')})`, { key: 'tokenizer.ggml.pre' });
  }
  // The BPE model holds every id that is not an added token, PAD fillers included, so that ids
  // map one to one; fillers can never come out of BPE because no merge produces them.
  const modelVocab: Record<string, number> = Object.create(null);
  for (let id = 0; id < vocab.tokens.length; id++) {
    const t = vocab.types[id];
    if (t !== TokenType.Control && t !== TokenType.UserDefined) modelVocab[vocab.tokens[id]] = id;
  }
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(vocab, opts),
    normalizer: spec.normalizer ? { type: spec.normalizer } : null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [{ type: 'Split', pattern: { Regex: spec.regex }, behavior: 'Isolated', invert: false }, byteLevel],
    },
    post_processor: null,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: modelVocab,
      merges: vocab.merges,
    },
  };
}
