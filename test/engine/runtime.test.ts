// The engine end to end on a synthetic tiny Qwen3-MoE: worker thread started from src/ (through
// tsx), greedy determinism, batching that does not change tokens, cancel, prefix cache, seeds,
// and a main thread that stays responsive during a long prefill.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthModel } from '../../src/model/synth.ts';
import { loadEngine, EngineError } from '../../src/engine/index.ts';
import { DEFAULT_SAMPLING, type Engine, type GenerateRequest, type GenerateStats } from '../../src/engine/types.ts';

const GREEDY = { ...DEFAULT_SAMPLING, temperature: 0 };
/** A stuck worker fails the test instead of hanging the suite (a test takes 5-25 s on the shared 2-core box). */
const TEST_TIMEOUT_MS = 180_000;
let dir: string;
let model: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mixtile-runtime-'));
  model = join(dir, 'tiny.gguf');
  await synthModel({ preset: 'tiny', out: model, fileType: 'F32', seed: 7 });
});
after(() => rmSync(dir, { recursive: true, force: true }));

function req(prompt: number[], maxTokens: number, extra: Partial<GenerateRequest> = {}): GenerateRequest {
  return { prompt, maxTokens, sampling: GREEDY, stop: [], stopAtEog: false, ...extra };
}

async function run(e: Engine, r: GenerateRequest, signal?: AbortSignal): Promise<{ ids: number[]; text: string; reason: string; stats: GenerateStats }> {
  const ids: number[] = [];
  let text = '';
  for await (const ev of e.generate(r, signal)) {
    if (ev.type === 'token') {
      ids.push(ev.id);
      text += ev.text;
    } else {
      assert.notEqual(ev.reason, 'error', ev.error);
      return { ids, text, reason: ev.reason, stats: ev.stats };
    }
  }
  throw new Error('stream ended without a done event');
}

async function withEngine<T>(opts: { parallel?: number; ctxSize?: number; ubatch?: number }, f: (e: Engine) => Promise<T>): Promise<T> {
  const e = await loadEngine({ modelPath: model, threads: 1, ctxSize: opts.ctxSize ?? 256, parallel: opts.parallel ?? 1, ubatch: opts.ubatch });
  try {
    return await f(e);
  } finally {
    await e.close();
  }
}

const PROMPTS = ['Hello, my name is', 'The capital of France', '1 2 3 4 5 6 7 8 9 10 11 12', 'Once upon a time there was'];

test('greedy generation is deterministic across engines, text matches detokenized ids', { timeout: TEST_TIMEOUT_MS }, async () => {
  const a = await withEngine({}, async (e) => {
    assert.equal(e.info.architecture, 'qwen3moe');
    assert.ok(e.info.nActiveParams < e.info.nParams);
    return run(e, req(e.tokenize(PROMPTS[0]), 12));
  });
  assert.equal(a.ids.length, 12);
  assert.equal(a.reason, 'length');
  const b = await withEngine({}, async (e) => {
    const r = await run(e, req(e.tokenize(PROMPTS[0]), 12));
    assert.equal(r.text, e.detokenize(r.ids));
    return r;
  });
  assert.deepEqual(b.ids, a.ids);
});

test('concurrent requests give the same greedy tokens as each run alone', { timeout: TEST_TIMEOUT_MS }, async () => {
  const alone = await withEngine({ parallel: 1 }, async (e) => {
    const out = [];
    for (const p of PROMPTS) out.push(await run(e, req(e.tokenize(p), 10)));
    return out;
  });
  // ubatch 8: prompt chunks share steps with other sequences' decode tokens.
  await withEngine({ parallel: 4, ubatch: 8 }, async (e) => {
    const together = await Promise.all(PROMPTS.map((p) => run(e, req(e.tokenize(p), 10))));
    together.forEach((r, i) => assert.deepEqual(r.ids, alone[i].ids, `request ${i}`));
  });
});

test('cancel ends the stream with cancelled and frees the slot', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withEngine({ parallel: 1 }, async (e) => {
    const ac = new AbortController();
    const prompt = e.tokenize(PROMPTS[1]);
    let n = 0;
    let reason = '';
    for await (const ev of e.generate(req(prompt, 200), ac.signal)) {
      if (ev.type === 'token' && ++n === 2) ac.abort();
      if (ev.type === 'done') reason = ev.reason;
    }
    assert.equal(reason, 'cancelled');
    assert.ok(n < 200);
    assert.deepEqual(e.stats(), { running: 0, queued: 0, slots: 1 });
    // The slot is free: the next request runs (and reuses the cancelled prompt's KV).
    const next = await run(e, req(prompt, 3));
    assert.equal(next.ids.length, 3);
    assert.ok(next.stats.cachedTokens > 0);
    // Leaving the loop early (break) cancels the request too.
    for await (const ev of e.generate(req(prompt, 200))) {
      assert.equal(ev.type, 'token');
      break;
    }
    const t0 = Date.now();
    while (e.stats().running + e.stats().queued > 0 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(e.stats(), { running: 0, queued: 0, slots: 1 });
  });
});

test('prefix cache: a follow-up turn reuses KV and gives the same output as a cold engine', { timeout: TEST_TIMEOUT_MS }, async () => {
  let turn2: number[] = [];
  let expectCached = 0;
  const warm = await withEngine({ parallel: 2 }, async (e) => {
    const p1 = e.tokenize(PROMPTS[3]);
    const first = await run(e, req(p1, 6));
    assert.equal(first.stats.cachedTokens, 0);
    turn2 = [...p1, ...first.ids, ...e.tokenize(' and then')];
    // The answer's last token was sampled but never fed through the model, so it is not cached.
    expectCached = p1.length + first.ids.length - 1;
    return run(e, req(turn2, 8));
  });
  assert.equal(warm.stats.cachedTokens, expectCached);
  const cold = await withEngine({ parallel: 2 }, (e) => run(e, req(turn2, 8)));
  assert.equal(cold.stats.cachedTokens, 0);
  assert.deepEqual(warm.ids, cold.ids);
});

test('prefix cache: a request sharing a running request\'s prefix copies its KV', { timeout: TEST_TIMEOUT_MS }, async () => {
  let shared: number[] = [];
  const together = await withEngine({ parallel: 2 }, async (e) => {
    const pa = e.tokenize(PROMPTS[2]);
    shared = [...pa.slice(0, 8), ...e.tokenize(' thirteen')];
    const ac = new AbortController();
    const a = e.generate(req(pa, 40), ac.signal)[Symbol.asyncIterator]();
    await a.next(); // a has its prompt in slot KV and is decoding
    const b = await run(e, req(shared, 6));
    ac.abort();
    while (!(await a.next()).done);
    return b;
  });
  assert.equal(together.stats.cachedTokens, 8);
  const cold = await withEngine({ parallel: 2 }, (e) => run(e, req(shared, 6)));
  assert.deepEqual(together.ids, cold.ids);
});

test('the same seed gives the same sampled tokens; another seed differs', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withEngine({ parallel: 2 }, async (e) => {
    const prompt = e.tokenize(PROMPTS[0]);
    const sampling = { ...DEFAULT_SAMPLING, temperature: 1.5, topK: 0, topP: 1, minP: 0, seed: 1234 };
    const a = await run(e, req(prompt, 16, { sampling }));
    const b = await run(e, req(prompt, 16, { sampling }));
    const c = await run(e, req(prompt, 16, { sampling: { ...sampling, seed: 4321 } }));
    assert.deepEqual(a.ids, b.ids);
    assert.notDeepEqual(a.ids, c.ids);
  });
});

test('bad requests throw EngineError at once; a closed engine refuses work', { timeout: TEST_TIMEOUT_MS }, async () => {
  const e = await loadEngine({ modelPath: model, threads: 1, ctxSize: 32 });
  try {
    const long = e.tokenize('word '.repeat(40));
    assert.throws(() => e.generate(req(long, 4)), (err: unknown) => err instanceof EngineError && err.code === 'prompt_too_long');
    const cut = await run(e, req(long, 4, { truncatePrompt: true }));
    assert.equal(cut.stats.promptTokens, 28);
    assert.throws(() => e.generate(req([], 4)), (err: unknown) => err instanceof EngineError && err.code === 'bad_request');
  } finally {
    await e.close();
  }
  assert.throws(() => e.generate(req([1, 2], 4)), (err: unknown) => err instanceof EngineError && err.code === 'closed');
});

test('the main thread stays responsive during a long prefill', { timeout: TEST_TIMEOUT_MS }, async () => {
  await withEngine({ ctxSize: 4096, ubatch: 4096 }, async (e) => {
    // One 4000-token step: attention alone makes it several hundred ms on the dev box.
    const prompt = e.tokenize('lorem ipsum dolor sit amet '.repeat(800)).slice(0, 4000);
    let maxLag = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxLag = Math.max(maxLag, now - last - 5);
      last = now;
    }, 5);
    const r = await run(e, req(prompt, 1));
    clearInterval(timer);
    assert.ok(r.stats.promptMs > 150, `prefill took ${r.stats.promptMs.toFixed(0)} ms; too short to show anything`);
    // Generous bound for a shared 2-core box; blocking the loop would give a lag of about promptMs.
    assert.ok(maxLag < Math.min(100, r.stats.promptMs / 2), `event loop blocked for ${maxLag.toFixed(0)} ms during a ${r.stats.promptMs.toFixed(0)} ms prefill`);
  });
});
