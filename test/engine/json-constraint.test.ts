// JsonConstraint on the real Qwen3 tokenizer: tokenized JSON passes token by token, end-of-generation
// only once the value is complete, control tokens never, a character split over tokens is accepted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsonConstraint } from '../../src/engine/json-constraint.ts';
import { Tokenizer } from '../../src/tokenizer/tokenizer.ts';
import { qwen3TokenizerMetadata } from '../../src/tokenizer/qwen3-vocab.ts';

const tok = Tokenizer.fromGguf(qwen3TokenizerMetadata() as Map<string, unknown>);
const eos = [...tok.eogIds][0];
const imStart = tok.encode('<|im_start|>', { addSpecial: false })[0];

test('a tokenized JSON object passes token by token; EOG and control tokens only where allowed', () => {
  const c = new JsonConstraint('object', tok);
  const ids = tok.encode('{"name": "Kitty 日本 😀", "age": 3.5e1, "tags": [true, null, {"x": -0}]}\n', { addSpecial: false });
  for (const id of ids) {
    assert.equal(c.allows(eos), false, 'no EOG before the value is complete');
    assert.equal(c.allows(imStart), false);
    assert.ok(c.allows(id), `token ${id} ${JSON.stringify(tok.decode([id]))}`);
    c.accept(id);
  }
  assert.ok(c.done);
  assert.ok(c.allows(eos));
  assert.equal(c.allows(tok.encode('x', { addSpecial: false })[0]), false);
});

test('top-level kind: an object is required for "object"; text before the value is rejected', () => {
  const c = new JsonConstraint('object', tok);
  assert.equal(c.allows(tok.encode('[', { addSpecial: false })[0]), false);
  assert.equal(c.allows(tok.encode('Sure', { addSpecial: false })[0]), false);
  assert.ok(c.allows(tok.encode('{', { addSpecial: false })[0]));
  assert.throws(() => c.accept(tok.encode('Sure', { addSpecial: false })[0]), /does not continue/);
});

test('byte tokens that split one UTF-8 character are accepted inside a string, not outside', () => {
  // Byte-level tokens for each byte of '😀' (F0 9F 98 80): find them by their single-byte pieces.
  const byteToken = new Map<number, number>();
  for (let id = 0; id < tok.vocabSize && byteToken.size < 256; id++) {
    const b = tok.tokenBytes(id);
    if (b.length === 1 && !tok.isControl(id)) byteToken.set(b[0], id);
  }
  const c = new JsonConstraint('string', tok);
  assert.equal(c.allows(byteToken.get(0xf0)!), false, 'a lead byte is not a value start');
  c.accept(byteToken.get(0x22)!);
  for (const b of [0xf0, 0x9f, 0x98, 0x80]) {
    assert.equal(c.allows(byteToken.get(0x22)!), b === 0xf0, 'a quote cannot cut a character');
    assert.ok(c.allows(byteToken.get(b)!));
    c.accept(byteToken.get(b)!);
  }
  c.accept(byteToken.get(0x22)!);
  assert.ok(c.done);
});

test('a request with an unknown json kind is refused before it runs', async () => {
  const { checkRequest } = await import('../../src/engine/scheduler.ts');
  const { DEFAULT_SAMPLING } = await import('../../src/engine/types.ts');
  const req = { prompt: [1, 2], maxTokens: 4, sampling: DEFAULT_SAMPLING, stop: [], stopAtEog: true };
  assert.deepEqual(checkRequest({ ...req, json: 'object' }, 64, 100), [1, 2]);
  assert.throws(() => checkRequest({ ...req, json: 'map' as never }, 64, 100), /json must be one of/);
});
