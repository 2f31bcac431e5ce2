// JsonValidator against JSON.parse: valid and invalid texts whole, byte by byte, and random prefixes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsonValidator, type JsonTopLevel } from '../../src/engine/json-validator.ts';
import { Prng } from '../../src/engine/sampler.ts';

/** Feeds `text` in one go; returns whether every byte was accepted and whether it may end there. */
function run(text: string, top: JsonTopLevel = 'any'): { ok: boolean; canEnd: boolean } {
  const v = new JsonValidator(top);
  const ok = v.feed(text);
  return { ok, canEnd: ok && v.canEnd };
}

const VALID = [
  '{}',
  '[]',
  ' { "a" : 1 , "b":[true,false,null] }\n',
  '{"n":[-0, 0.5, 1e10, -2.5E-3, 12e+4, 3.14159]}',
  '"plain"',
  '"esc \\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00"',
  '"héllo wörld 日本語 😀"',
  '[[[[]]],{"x":{"y":{"z":[1,[2,[3]]]}}}]',
  '\t\r\n[ 1 ,\n 2 ]  ',
  '123',
  '-0.0e-0',
  'true',
  'null',
  '{"":""}',
];

const INVALID = [
  '{,}',
  '{"a"}',
  '{"a":}',
  '{"a":1,}',
  '[1,]',
  '[1 2]',
  '{a:1}',
  '01',
  '-',
  '1.',
  '.5',
  '1e',
  '1e+',
  '+1',
  'tru',
  'truth',
  'nul ',
  '"\\x"',
  '"\\u12g4"',
  '"tab\there"',
  '"bad\u0001"',
  '{}x',
  '{} {}',
  ']',
  '[}',
  '{]',
  "'single'",
];

test('valid texts are accepted and may end; JSON.parse agrees', () => {
  for (const t of VALID) {
    JSON.parse(t);
    assert.deepEqual(run(t), { ok: true, canEnd: true }, t);
  }
});

test('invalid texts are rejected or cannot end there; JSON.parse agrees', () => {
  for (const t of INVALID) {
    assert.throws(() => JSON.parse(t), t);
    assert.equal(run(t).canEnd, false, t);
  }
});

test('every prefix of a valid text is accepted, byte by byte', () => {
  for (const t of VALID) {
    const v = new JsonValidator();
    for (const b of new TextEncoder().encode(t)) assert.ok(v.feed(Uint8Array.of(b)), `${t}: byte ${b}`);
    assert.ok(v.canEnd, t);
  }
});

test('bad UTF-8 inside strings is rejected: stray continuation, overlong lead, truncated character', () => {
  const v = (bytes: number[]) => new JsonValidator().feed(Uint8Array.from([0x22, ...bytes]));
  assert.equal(v([0x80]), false);
  assert.equal(v([0xc0, 0x80]), false);
  assert.equal(v([0xe6, 0x97, 0x22]), false); // '"' where a continuation byte belongs
  assert.equal(v([0xf5, 0x80]), false);
  assert.equal(v([0xe6, 0x97, 0xa5, 0x22]), true); // 日"
});

test('top-level kind: object, array, string, number, integer, boolean, null', () => {
  assert.equal(run('[1]', 'object').ok, false);
  assert.equal(run('{"a":[1]}', 'object').canEnd, true);
  assert.equal(run('{}', 'array').ok, false);
  assert.equal(run('"s"', 'string').canEnd, true);
  assert.equal(run('1', 'string').ok, false);
  assert.equal(run('-1.5e3', 'number').canEnd, true);
  assert.equal(run('-15', 'integer').canEnd, true);
  assert.equal(run('1.5', 'integer').ok, false);
  assert.equal(run('1e5', 'integer').ok, false);
  assert.equal(run('false', 'boolean').canEnd, true);
  assert.equal(run('null', 'boolean').ok, false);
  assert.equal(run('null', 'null').canEnd, true);
  // The top-level kind does not constrain nested values.
  assert.equal(run('{"a":1.5}', 'object').canEnd, true);
});

test('done: a closed container or literal ends the value; a top-level number ends only at whitespace', () => {
  const v = new JsonValidator();
  assert.ok(v.feed('{"a":1'));
  assert.equal(v.done, false);
  assert.ok(v.feed('}'));
  assert.equal(v.done, true);
  assert.equal(v.accepts(new TextEncoder().encode(' \n')), true);
  assert.equal(v.accepts(new TextEncoder().encode(',')), false);
  const n = new JsonValidator();
  assert.ok(n.feed('12'));
  assert.equal(n.done, false);
  assert.equal(n.canEnd, true);
  assert.ok(n.feed(' '));
  assert.equal(n.done, true);
});

test('accepts() leaves the state unchanged', () => {
  const v = new JsonValidator();
  v.feed('{"k":');
  assert.equal(v.accepts(new TextEncoder().encode('}')), false);
  assert.equal(v.accepts(new TextEncoder().encode('"v"}')), true);
  assert.ok(v.feed('[1]}'));
  assert.ok(v.done);
});

test('random byte strings from a JSON alphabet: validator and JSON.parse agree on every full string', () => {
  const rng = new Prng(99);
  const alphabet = ['{', '}', '[', ']', '"', ':', ',', ' ', '0', '1', '-', '.', 'e', '\\', 'u', 'a', 'true', 'null', 'é'];
  let valid = 0;
  for (let n = 0; n < 20000; n++) {
    let t = '';
    const len = 1 + Math.floor(rng.next() * 8);
    for (let i = 0; i < len; i++) t += alphabet[Math.floor(rng.next() * alphabet.length)];
    let parses = true;
    try {
      JSON.parse(t);
    } catch {
      parses = false;
    }
    // JSON.parse allows trailing whitespace only; our canEnd must match exactly.
    assert.equal(run(t).canEnd, parses, JSON.stringify(t));
    if (parses) valid++;
  }
  assert.ok(valid > 50, `enough valid samples (${valid})`);
});

test('maxWsRun caps whitespace in a row outside strings, not inside them', () => {
  const v = new JsonValidator('any', 3);
  assert.equal(v.accepts(new TextEncoder().encode('   {')), true);
  assert.equal(v.accepts(new TextEncoder().encode('    {')), false);
  assert.ok(v.feed('{ "a      b" :\n  1,'));
  assert.equal(v.accepts(new TextEncoder().encode('\n\t\t\t')), false);
  assert.ok(v.feed('\n\t\t"c":2}'));
  assert.ok(v.done);
});
