// The Qwen3 GGUF tokenizer metadata has the shape llama.cpp's converter gives real Qwen3 files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { qwen3TokenizerMetadata, QWEN3_TOKENIZER_GGUF_TYPES, TokenType } from '../../src/tokenizer/qwen3-vocab.ts';

test('qwen3TokenizerMetadata matches a real Qwen3 GGUF', () => {
  const m = qwen3TokenizerMetadata();
  assert.deepEqual([...m.keys()].sort(), Object.keys(QWEN3_TOKENIZER_GGUF_TYPES).sort());
  const tokens = m.get('tokenizer.ggml.tokens') as string[];
  const types = m.get('tokenizer.ggml.token_type') as number[];
  assert.equal(tokens.length, 151936);
  assert.equal(types.length, 151936);
  assert.equal(tokens[0], '!');
  assert.equal(tokens[151643], '<|endoftext|>');
  assert.equal(tokens[151645], '<|im_end|>');
  assert.equal(tokens[151667], '<think>');
  assert.equal(tokens[151669], '[PAD151669]');
  assert.equal(tokens[151935], '[PAD151935]');
  assert.equal(types[0], TokenType.Normal);
  assert.equal(types[151644], TokenType.Control);
  assert.equal(types[151659], TokenType.Control, '<|fim_prefix|> is not special in HF but looks special');
  assert.equal(types[151657], TokenType.UserDefined, '<tool_call>');
  assert.equal(types[151667], TokenType.UserDefined, '<think>');
  assert.equal(types[151700], TokenType.Unused);
  const merges = m.get('tokenizer.ggml.merges') as string[];
  assert.equal(merges[0], 'Ġ Ġ');
  assert.ok(merges.every((s) => s.split(' ').length === 2));
  assert.equal(m.get('tokenizer.ggml.eos_token_id'), 151645);
  assert.equal(m.get('tokenizer.ggml.bos_token_id'), 151643);
  assert.equal(m.get('tokenizer.ggml.padding_token_id'), 151643);
  assert.equal(m.get('tokenizer.ggml.add_bos_token'), false);
  assert.match(m.get('tokenizer.chat_template') as string, /enable_thinking/);
  assert.equal(qwen3TokenizerMetadata(), m, 'cached');
});
