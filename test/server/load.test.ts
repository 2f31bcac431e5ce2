// 64 concurrent streaming clients on the tiny real model: every SSE response complete and well
// formed, and none mixed up (greedy replies equal each prompt's reply when served alone).
// Prints the aggregate throughput (recorded in bench/RESULTS.md "## Server"), asserts nothing about speed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { RunningServer } from '../../src/server/app.ts';
import { realServer, sseEvents, tinyModel, TEST_TIMEOUT_MS, type TinyModel } from './real-server.ts';

const N_CLIENTS = 64;
const N_TOKENS = 16;
const PROMPTS = ['Hello, my name is', 'The capital of France', '1 2 3 4 5', 'Once upon a time', 'def fib(n):', 'Dear diary,', 'Rain again', 'Lorem ipsum'];
let model: TinyModel;
let s: RunningServer;

before(async () => {
  model = await tinyModel();
  s = await realServer(model.path, { parallel: 8, ctxSize: 256, maxQueue: 64 });
});
after(async () => {
  await s?.close();
  model?.remove();
});

interface Parsed {
  text: string;
  finish: string | null;
  completionTokens: number;
}

async function streamCompletion(prompt: string): Promise<Parsed> {
  const r = await fetch(`${s.url}/v1/completions`, {
    method: 'POST',
    body: JSON.stringify({ prompt, max_tokens: N_TOKENS, temperature: 0, stream: true, stream_options: { include_usage: true } }),
  });
  assert.equal(r.status, 200);
  const events = await sseEvents(r);
  assert.equal(events.at(-1), '[DONE]');
  const out: Parsed = { text: '', finish: null, completionTokens: -1 };
  const ids = new Set<string>();
  for (const data of events.slice(0, -1)) {
    const chunk = JSON.parse(data) as { id: string; object: string; choices: Array<{ text: string; finish_reason: string | null }>; usage?: { completion_tokens: number } };
    assert.equal(chunk.object, 'text_completion');
    ids.add(chunk.id);
    if (chunk.usage) out.completionTokens = chunk.usage.completion_tokens;
    const c = chunk.choices[0];
    if (!c) continue;
    assert.equal(out.finish, null, 'no text after finish_reason');
    out.text += c.text;
    out.finish = c.finish_reason;
  }
  assert.equal(ids.size, 1, 'one id per response');
  return out;
}

test(`${N_CLIENTS} concurrent streaming clients: complete, well-formed, not mixed up`, { timeout: TEST_TIMEOUT_MS }, async () => {
  // Each prompt's reply served alone is the reference.
  const alone = new Map<string, Parsed>();
  const tAlone = performance.now();
  for (const p of PROMPTS) alone.set(p, await streamCompletion(p));
  const aloneSeconds = (performance.now() - tAlone) / 1000;
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: N_CLIENTS }, (_, i) => streamCompletion(PROMPTS[i % PROMPTS.length]!)));
  const seconds = (performance.now() - t0) / 1000;
  let tokens = 0;
  results.forEach((r, i) => {
    const ref = alone.get(PROMPTS[i % PROMPTS.length]!)!;
    assert.equal(r.finish, ref.finish, `client ${i} finish_reason`);
    assert.equal(r.completionTokens, ref.completionTokens, `client ${i} token count`);
    assert.equal(r.text, ref.text, `client ${i} got another request's text`);
    tokens += r.completionTokens;
  });
  const m = await fetch(`${s.url}/metrics`).then((x) => x.text());
  assert.match(m, /mixtile_requests_processing 0/);
  assert.match(m, /mixtile_requests_queued 0/);
  const nAlone = PROMPTS.length * N_TOKENS;
  console.log(`# load: ${N_CLIENTS} streaming clients x ${N_TOKENS} tokens, --parallel 8, 1 thread: ${tokens} tokens in ${seconds.toFixed(2)} s = ${(tokens / seconds).toFixed(1)} tokens/s, ${(N_CLIENTS / seconds).toFixed(2)} requests/s`);
  console.log(`# load: one at a time: ${nAlone} tokens in ${aloneSeconds.toFixed(2)} s = ${(nAlone / aloneSeconds).toFixed(1)} tokens/s`);
});
