// Stop conditions: stop strings split across tokens are held back and never emitted; EOG and max tokens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StopStrings, StopCondition } from '../../src/engine/stop.ts';

function run(stops: string[], pieces: string[]): { out: string; stopped: boolean } {
  const s = new StopStrings(stops);
  let out = '';
  for (const p of pieces) {
    const r = s.push(p);
    out += r.text;
    if (r.stopped) return { out, stopped: true };
  }
  return { out: out + s.flush(), stopped: false };
}

test('a stop string split over tokens is cut and never emitted', () => {
  assert.deepEqual(run(['</end>'], ['Hello', ' wor', 'ld</', 'en', 'd> more']), { out: 'Hello world', stopped: true });
});

test('a partial match is held back, then released when it turns out not to be a stop', () => {
  const s = new StopStrings(['STOP']);
  assert.deepEqual(s.push('abc ST'), { text: 'abc ', stopped: false });
  assert.deepEqual(s.push('O'), { text: '', stopped: false });
  assert.deepEqual(s.push('?'), { text: 'STO?', stopped: false });
  assert.equal(s.flush(), '');
});

test('the earliest of several stop strings wins; held text flushes at the end', () => {
  assert.deepEqual(run(['bb', 'a'], ['xxbba']), { out: 'xx', stopped: true });
  assert.deepEqual(run(['###'], ['x#', '#']), { out: 'x##', stopped: false });
  assert.deepEqual(run([], ['a', 'b']), { out: 'ab', stopped: false });
});

test('StopCondition: EOG ends with stop, its text is not emitted', () => {
  const c = new StopCondition({ maxTokens: 10, stop: ['<x'], eogIds: new Set([99]), stopAtEog: true });
  assert.deepEqual(c.step(1, 'hi <'), { text: 'hi ' });
  assert.deepEqual(c.step(99, '<|im_end|>'), { text: '<', finish: 'stop' });
});

test('StopCondition: stopAtEog false keeps going; maxTokens ends with length', () => {
  const c = new StopCondition({ maxTokens: 2, stop: [], eogIds: new Set([99]), stopAtEog: false });
  assert.deepEqual(c.step(99, 'e'), { text: 'e' });
  assert.deepEqual(c.step(5, 'f'), { text: 'f', finish: 'length' });
});

test('StopCondition: stop string on the last allowed token reports stop, not length', () => {
  const c = new StopCondition({ maxTokens: 1, stop: ['.'], eogIds: new Set(), stopAtEog: true });
  assert.deepEqual(c.step(3, 'a.b'), { text: 'a', finish: 'stop' });
});
