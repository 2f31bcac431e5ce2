// Scheduler against a deterministic fake model (test double): batching must not change tokens,
// cancel frees slots, the prefix cache reuses KV, queue limits and prompt checks throw typed errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scheduler } from '../../src/engine/scheduler.ts';
import { EngineError } from '../../src/engine/errors.ts';
import { DEFAULT_SAMPLING, type GenerateEvent, type GenerateRequest, type GenerateStats } from '../../src/engine/types.ts';
import { fakeModel, fakeTokenizer, fakeGreedy } from './runtime-fake-model.ts';

const GREEDY = { ...DEFAULT_SAMPLING, temperature: 0 };

function req(prompt: number[], maxTokens: number, extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return { prompt, maxTokens, sampling: GREEDY, stop: [], stopAtEog: true, ...extra };
}

interface Result {
  ids: number[];
  text: string;
  reason?: string;
  stats?: GenerateStats;
}

/** Submits requests, runs steps until idle, returns each request's tokens and final event. */
function runAll(s: Scheduler, reqs: GenerateRequest[], firstId = 1): Result[] {
  const results = reqs.map(() => ({ ids: [], text: '' }) as Result);
  reqs.forEach((r, i) => s.submit(firstId + i, r, (ev) => collect(results[i], ev)));
  let guard = 0;
  while (!s.idle()) {
    assert.ok(s.step(), 'step() had work while requests were pending');
    assert.ok(++guard < 10000, 'scheduler did not finish');
  }
  return results;
}

function collect(r: Result, ev: GenerateEvent): void {
  if (ev.type === 'token') {
    r.ids.push(ev.id);
    r.text += ev.text;
  } else {
    r.reason = ev.reason;
    r.stats = ev.stats;
  }
}

const prompts = [
  [1, 2, 3, 4, 5],
  [9, 8, 7],
  [1, 2, 3, 40, 41, 42, 43, 44, 45, 46, 47],
  [33],
];

test('greedy generation matches the step-by-step reference and is deterministic', () => {
  const m = fakeModel({ nSeq: 1, ctxSize: 64 });
  const s = new Scheduler(m, fakeTokenizer(), { ubatch: 512, maxQueue: 8 });
  const [a] = runAll(s, [req(prompts[0], 12)]);
  assert.deepEqual(a.ids, fakeGreedy(prompts[0], 12));
  assert.equal(a.reason, 'length');
  assert.equal(a.text, a.ids.map((i) => `<${i}>`).join(''));
  assert.equal(a.stats!.promptTokens, 5);
  assert.equal(a.stats!.completionTokens, 12);
  const [b] = runAll(new Scheduler(fakeModel({ nSeq: 1, ctxSize: 64 }), fakeTokenizer(), { ubatch: 512, maxQueue: 8 }), [req(prompts[0], 12)]);
  assert.deepEqual(b.ids, a.ids);
});

test('concurrent requests give the same tokens as each alone, in batched steps', () => {
  const m = fakeModel({ nSeq: 4, ctxSize: 64 });
  const s = new Scheduler(m, fakeTokenizer(), { ubatch: 6, maxQueue: 8 });
  const got = runAll(s, prompts.map((p, i) => req(p, 8 + i)));
  got.forEach((r, i) => assert.deepEqual(r.ids, fakeGreedy(prompts[i], 8 + i), `request ${i}`));
  // Batching really happened: some step carried tokens of several sequences, and no step exceeded ubatch.
  assert.ok(m.batchSizes.some((n) => n > 1 && n <= 6));
  assert.ok(m.batchSizes.every((n) => n <= 6), `ubatch respected: ${m.batchSizes}`);
  // 4 sequences decoding together: far fewer steps than running them one after another.
  assert.ok(m.batchSizes.length < prompts.length * 8, `steps ${m.batchSizes.length}`);
});

test('more requests than slots wait in the queue, then run with unchanged output', () => {
  const s = new Scheduler(fakeModel({ nSeq: 2, ctxSize: 64 }), fakeTokenizer(), { ubatch: 512, maxQueue: 8 });
  const got = runAll(s, prompts.map((p) => req(p, 5)));
  got.forEach((r, i) => assert.deepEqual(r.ids, fakeGreedy(prompts[i], 5)));
  assert.ok(got[3].stats!.queueMs >= 0);
});

test('a full queue refuses with EngineError queue_full', () => {
  const s = new Scheduler(fakeModel({ nSeq: 1, ctxSize: 64 }), fakeTokenizer(), { ubatch: 512, maxQueue: 1 });
  s.submit(1, req([1], 3), () => {}); // will take the free slot
  s.submit(2, req([2], 3), () => {}); // will wait
  assert.throws(() => s.submit(3, req([3], 3), () => {}), (e: unknown) => e instanceof EngineError && e.code === 'queue_full');
  s.step();
  assert.deepEqual(s.stats(), { running: 1, queued: 1, slots: 1 });
  assert.throws(() => s.submit(3, req([3], 3), () => {}), /1 requests are already waiting/);
});

test('cancel ends the request with cancelled and frees its slot at once', () => {
  const s = new Scheduler(fakeModel({ nSeq: 1, ctxSize: 64 }), fakeTokenizer(), { ubatch: 512, maxQueue: 4 });
  const a: Result = { ids: [], text: '' };
  const b: Result = { ids: [], text: '' };
  s.submit(1, req(prompts[0], 50), (ev) => collect(a, ev));
  s.submit(2, req(prompts[1], 4), (ev) => collect(b, ev));
  s.step();
  s.step();
  assert.deepEqual(s.stats(), { running: 1, queued: 1, slots: 1 });
  s.cancel(1);
  assert.equal(a.reason, 'cancelled');
  assert.equal(a.ids.length, 2);
  assert.deepEqual(s.stats(), { running: 0, queued: 1, slots: 1 });
  while (!s.idle()) s.step();
  assert.deepEqual(b.ids, fakeGreedy(prompts[1], 4));
  s.cancel(2); // already done: no effect, no second done event
  assert.equal(b.reason, 'length');
});

test('prefix cache: a follow-up turn reuses the KV and gives identical output', () => {
  const s = new Scheduler(fakeModel({ nSeq: 2, ctxSize: 64 }), fakeTokenizer(), { ubatch: 512, maxQueue: 4 });
  const [first] = runAll(s, [req(prompts[2], 6)]);
  assert.equal(first.stats!.cachedTokens, 0);
  // Turn 2: history (prompt + answer) plus new text. The answer's last token was never fed, so
  // cached = prompt + 5 answer tokens.
  const turn2 = [...prompts[2], ...first.ids, 50, 51];
  const [second] = runAll(s, [req(turn2, 6)], 10);
  assert.equal(second.stats!.cachedTokens, prompts[2].length + 5);
  assert.deepEqual(second.ids, fakeGreedy(turn2, 6));
  // The same prompt again: everything but the last token comes from the cache.
  const [again] = runAll(s, [req(turn2, 6)], 20);
  assert.equal(again.stats!.cachedTokens, turn2.length - 1);
  assert.deepEqual(again.ids, second.ids);
  // A different prompt goes to the other (empty) slot; the cached one survives.
  const [other] = runAll(s, [req([7, 7, 7], 2)], 30);
  assert.equal(other.stats!.cachedTokens, 0);
  const [third] = runAll(s, [req(turn2, 3)], 40);
  assert.equal(third.stats!.cachedTokens, turn2.length - 1);
});

test('prefix cache: a request sharing a running request\'s prefix copies its KV', () => {
  const m = fakeModel({ nSeq: 2, ctxSize: 64 });
  const s = new Scheduler(m, fakeTokenizer(), { ubatch: 512, maxQueue: 4 });
  const a: Result = { ids: [], text: '' };
  const b: Result = { ids: [], text: '' };
  s.submit(1, req(prompts[2], 20), (ev) => collect(a, ev));
  s.step();
  s.step(); // a is decoding in slot 0
  const shared = [...prompts[2].slice(0, 8), 60, 61];
  s.submit(2, req(shared, 5), (ev) => collect(b, ev));
  while (!s.idle()) s.step();
  assert.equal(b.stats!.cachedTokens, 8);
  assert.deepEqual(b.ids, fakeGreedy(shared, 5));
  assert.deepEqual(a.ids, fakeGreedy(prompts[2], 20));
});

test('a prompt longer than ubatch is prefilled in chunks with the same result', () => {
  const long = Array.from({ length: 40 }, (_, i) => (i * 13) % 64);
  const m = fakeModel({ nSeq: 1, ctxSize: 64 });
  const [r] = runAll(new Scheduler(m, fakeTokenizer(), { ubatch: 16, maxQueue: 1 }), [req(long, 4)]);
  assert.deepEqual(r.ids, fakeGreedy(long, 4));
  assert.deepEqual(m.batchSizes.slice(0, 3), [16, 16, 8]);
});

test('prompt over the context: typed error, or truncation when asked', () => {
  const s = new Scheduler(fakeModel({ nSeq: 1, ctxSize: 16 }), fakeTokenizer(), { ubatch: 512, maxQueue: 1 });
  const long = Array.from({ length: 20 }, (_, i) => i);
  assert.throws(() => s.submit(1, req(long, 4), () => {}), (e: unknown) => e instanceof EngineError && e.code === 'prompt_too_long' && /20 tokens.*16/.test(e.message));
  const [r] = runAll(s, [req(long, 4, { truncatePrompt: true })], 2);
  assert.equal(r.stats!.promptTokens, 12); // 16 - 4 kept for generation
  assert.deepEqual(r.ids, fakeGreedy(long.slice(8), 4));
  assert.throws(() => s.submit(3, req([], 4), () => {}), (e: unknown) => e instanceof EngineError && e.code === 'bad_request');
  assert.throws(() => s.submit(3, req([999], 4), () => {}), /outside the vocabulary/);
});

test('generation stops when the context is full', () => {
  const s = new Scheduler(fakeModel({ nSeq: 1, ctxSize: 10 }), fakeTokenizer(), { ubatch: 512, maxQueue: 1 });
  const [r] = runAll(s, [req([1, 2, 3, 4, 5, 6], 100)]);
  assert.equal(r.reason, 'length');
  assert.equal(r.ids.length, 5); // 4 more positions fed + the last sampled token
});

test('EOG token ends with stop and is not emitted; stop strings cut the text', () => {
  const ref = fakeGreedy(prompts[0], 6);
  const eog = ref[3];
  assert.ok(!ref.slice(0, 3).includes(eog));
  const s = new Scheduler(fakeModel({ nSeq: 1, ctxSize: 64 }), fakeTokenizer([eog]), { ubatch: 512, maxQueue: 1 });
  const [r] = runAll(s, [req(prompts[0], 6)]);
  assert.deepEqual(r.ids, ref.slice(0, 3));
  assert.equal(r.reason, 'stop');
  assert.equal(r.stats!.completionTokens, 4);
  const stop = `<${ref[2]}>`;
  const s2 = new Scheduler(fakeModel({ nSeq: 1, ctxSize: 64 }), fakeTokenizer(), { ubatch: 512, maxQueue: 1 });
  const [t] = runAll(s2, [req(prompts[0], 6, { stop: [stop] })]);
  assert.equal(t.reason, 'stop');
  assert.equal(t.text, `<${ref[0]}><${ref[1]}>`);
});

test('same seed gives the same sampled tokens, also when batched with others', () => {
  const sampling = { ...DEFAULT_SAMPLING, temperature: 1.2, topK: 0, topP: 1, minP: 0, seed: 99 };
  const alone = runAll(new Scheduler(fakeModel({ nSeq: 1, ctxSize: 64 }), fakeTokenizer(), { ubatch: 512, maxQueue: 1 }), [req(prompts[0], 10, { sampling })]);
  const batched = runAll(new Scheduler(fakeModel({ nSeq: 3, ctxSize: 64 }), fakeTokenizer(), { ubatch: 512, maxQueue: 1 }), [
    req(prompts[1], 10, { sampling: { ...sampling, seed: 5 } }),
    req(prompts[0], 10, { sampling }),
    req(prompts[3], 10, { sampling: { ...sampling, seed: 6 } }),
  ]);
  assert.deepEqual(batched[1].ids, alone[0].ids);
  const other = runAll(new Scheduler(fakeModel({ nSeq: 1, ctxSize: 64 }), fakeTokenizer(), { ubatch: 512, maxQueue: 1 }), [req(prompts[0], 10, { sampling: { ...sampling, seed: 100 } })]);
  assert.notDeepEqual(other[0].ids, alone[0].ids);
});

test('a failing forward ends the batch with error and clears those slots', () => {
  const m = fakeModel({ nSeq: 1, ctxSize: 64 });
  const s = new Scheduler(m, fakeTokenizer(), { ubatch: 512, maxQueue: 1 });
  const r: Result = { ids: [], text: '' };
  let done: GenerateEvent | undefined;
  s.submit(1, req([1, 2], 5), (ev) => (ev.type === 'done' ? (done = ev) : collect(r, ev)));
  const forward = m.forward;
  (m as { forward: typeof forward }).forward = () => {
    throw new Error('kernel exploded');
  };
  s.step();
  assert.equal(done?.type === 'done' && done.reason, 'error');
  assert.equal(done?.type === 'done' && done.error, 'kernel exploded');
  assert.equal(m.kv.length(0), 0);
  assert.ok(s.idle());
});
