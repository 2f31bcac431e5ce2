// The server on the real engine (tiny synthetic Qwen3-MoE, random weights) driven by the official
// openai and ollama clients: streamed equals plain, greedy HTTP output equals the engine's and
// `mixtile generate`'s, prompt over context, cancel on disconnect, /health during a long prefill.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import { DEFAULT_SAMPLING } from '../../src/engine/types.ts';
import type { RunningServer } from '../../src/server/app.ts';
import { realServer, tinyModel, TEST_TIMEOUT_MS, type TinyModel } from './real-server.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let model: TinyModel;
let s: RunningServer;
let openai: OpenAI;

before(async () => {
  model = await tinyModel();
  s = await realServer(model.path, { ctxSize: 2048, ubatch: 2048 });
  openai = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(async () => {
  await s?.close();
  model?.remove();
});

const opts = { timeout: TEST_TIMEOUT_MS };

test('openai client: chat plain and streamed give the same greedy reply; models lists the file', opts, async () => {
  const models = await openai.models.list();
  assert.equal(models.data[0]!.id, 'tiny');
  const messages = [{ role: 'user' as const, content: 'Tell me a story.' }];
  const plain = await openai.chat.completions.create({ model: 'tiny', messages, max_tokens: 12, temperature: 0 });
  const m = plain.choices[0]!.message as { content: string | null; reasoning_content?: string };
  assert.equal(plain.usage!.completion_tokens, 12);
  assert.equal(plain.choices[0]!.finish_reason, 'length');
  const stream = await openai.chat.completions.create({ model: 'tiny', messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let content = '';
  let reasoning = '';
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    content += chunk.choices[0]?.delta.content ?? '';
    reasoning += (chunk.choices[0]?.delta as { reasoning_content?: string } | undefined)?.reasoning_content ?? '';
    usage ??= chunk.usage ?? undefined;
  }
  assert.equal(content, m.content ?? '');
  assert.equal(reasoning, m.reasoning_content ?? '');
  assert.equal(usage?.completion_tokens, 12);
  // The same prompt again is served from the prefix cache.
  const again = await openai.chat.completions.create({ model: 'tiny', messages, max_tokens: 12, temperature: 0 });
  assert.ok((again.usage!.prompt_tokens_details?.cached_tokens ?? 0) > 0, 'cached_tokens reported');
});

test('greedy /v1/completions equals the engine called directly and `mixtile generate`', opts, async () => {
  const prompt = 'The quick brown fox';
  const r = await openai.completions.create({ model: 'tiny', prompt, max_tokens: 16, temperature: 0 });
  const http = r.choices[0]!.text;
  assert.equal(r.usage!.completion_tokens, 16);

  const engine = s.host.loaded();
  let direct = '';
  const ids = engine.tokenize(prompt, { addSpecial: true, parseSpecial: true });
  for await (const ev of engine.generate({ prompt: ids, maxTokens: 16, sampling: { ...DEFAULT_SAMPLING, temperature: 0 }, stop: [], stopAtEog: true })) {
    if (ev.type === 'token') direct += ev.text;
  }
  assert.equal(http, direct);

  // Asynchronously: the server under test lives in this process and must keep running.
  const cli = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'generate', '-m', model.path, '-p', prompt, '-n', '16', '--temp', '0', '-t', '1'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 180_000,
  });
  // generate prints the completion, then a newline.
  assert.equal(cli.stdout, `${direct}\n`);
});

test('ollama client: chat and generate, streamed and not', opts, async () => {
  const ollama = new Ollama({ host: s.url });
  const chat = await ollama.chat({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], options: { temperature: 0, num_predict: 8 }, think: false, stream: false });
  assert.equal(chat.done, true);
  assert.equal(chat.eval_count, 8);
  assert.equal(chat.done_reason, 'length');
  const stream = await ollama.chat({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], options: { temperature: 0, num_predict: 8 }, think: false, stream: true });
  let content = '';
  let last: { done: boolean; eval_count: number; prompt_eval_count: number } | undefined;
  for await (const part of stream) {
    content += part.message.content;
    last = part;
  }
  assert.equal(content, chat.message.content);
  assert.equal(last?.done, true);
  assert.equal(last?.eval_count, 8);
  assert.equal(last?.prompt_eval_count, chat.prompt_eval_count);
  const gen = await ollama.generate({ model: 'tiny', prompt: 'Hi', raw: true, options: { temperature: 0, num_predict: 8 }, stream: false });
  const parts: string[] = [];
  for await (const p of await ollama.generate({ model: 'tiny', prompt: 'Hi', raw: true, options: { temperature: 0, num_predict: 8 }, stream: true })) parts.push(p.response ?? "");
  assert.equal(parts.join(''), gen.response);
  assert.equal(gen.eval_count, 8);
});

test('a seed makes sampled output repeat over HTTP (it reaches the engine)', opts, async () => {
  // Plain sampling over the whole vocabulary (llama.cpp's top_k / min_p extensions switched off).
  const ask = async (seed?: number) => {
    const body = { prompt: 'Once upon a time', max_tokens: 12, temperature: 1, top_k: 0, top_p: 1, min_p: 0, ...(seed !== undefined ? { seed } : {}) };
    const r = await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify(body) });
    return ((await r.json()) as { choices: Array<{ text: string }> }).choices[0]!.text;
  };
  assert.equal(await ask(42), await ask(42));
  // Without the seed two draws over a random model's flat distribution all but surely differ.
  assert.notEqual(await ask(), await ask());
});

test('prompt over the context is a 400 and the server keeps serving', opts, async () => {
  const long = 'lorem ipsum '.repeat(2000);
  await assert.rejects(openai.completions.create({ model: 'tiny', prompt: long, max_tokens: 4 }), (e: { status: number; error: { type: string } }) => {
    assert.equal(e.status, 400);
    assert.equal(e.error.type, 'exceed_context_size_error');
    return true;
  });
  const ok = await openai.completions.create({ model: 'tiny', prompt: 'ok', max_tokens: 2 });
  assert.equal(ok.usage!.completion_tokens, 2);
});

test('client disconnect mid-stream cancels the request: the engine slot is freed', opts, async () => {
  const engine = s.host.loaded();
  const abort = new AbortController();
  const r = await fetch(`${s.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ messages: [{ role: 'user', content: 'Go on forever' }], max_tokens: 1500, stream: true }),
    signal: abort.signal,
  });
  const reader = r.body!.getReader();
  for (let i = 0; i < 3; i++) await reader.read();
  assert.equal(engine.stats().running, 1);
  abort.abort();
  const t0 = performance.now();
  while (engine.stats().running > 0 && performance.now() - t0 < 10_000) await new Promise((res) => setTimeout(res, 20));
  assert.equal(engine.stats().running, 0, 'slot freed after the client went away');
  // The engine frees the slot on its thread; the server counts the request when its reply ends,
  // which can come a moment later.
  let m = '';
  for (const t1 = performance.now(); performance.now() - t1 < 5_000; await new Promise((res) => setTimeout(res, 20))) {
    m = await fetch(`${s.url}/metrics`).then((x) => x.text());
    if (/mixtile_requests_total\{reason="cancelled"\}/.test(m)) break;
  }
  assert.match(m, /mixtile_requests_total\{reason="cancelled"\} 1/);
});

test('/health answers within 50 ms during a long prefill', opts, async () => {
  const engine = s.host.loaded();
  let worst = 0;
  let n = 0;
  let prefillMs = 0;
  const all: number[] = [];
  // Warm-up: the first token-array request compiles its code paths (V8) in this process, which
  // would be charged to the first probe; it is not prefill.
  await fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: engine.tokenize('warm up'), max_tokens: 1 }) }).then((r) => r.text());
  // Prefills of ~1900 tokens (each a new prompt, so the prefix cache does not shorten it) until
  // half a second of prefill has been probed: the kernels keep getting faster.
  for (let round = 0; round < 20 && prefillMs < 500; round++) {
    const prompt = engine.tokenize(`${round} lorem ipsum dolor sit amet `.repeat(300)).slice(0, 1900);
    let done = false;
    const busy = fetch(`${s.url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt, max_tokens: 1 }) })
      .then((r) => r.json() as Promise<{ timings: { prompt_ms: number } }>)
      .finally(() => (done = true));
    while (!done) {
      const t0 = performance.now();
      const h = await fetch(`${s.url}/health`);
      await h.text();
      const ms = performance.now() - t0;
      assert.equal(h.status, 200);
      // Only probes answered while the prefill was still running count.
      if (!done) {
        worst = Math.max(worst, ms);
        all.push(ms);
        n++;
      }
      await new Promise((res) => setTimeout(res, 5));
    }
    prefillMs += (await busy).timings.prompt_ms;
  }
  assert.ok(prefillMs >= 500, `only ${prefillMs.toFixed(0)} ms of prefill in 20 rounds`);
  assert.ok(n >= 5, `only ${n} probes during ${prefillMs.toFixed(0)} ms of prefill`);
  // Nine probes in ten must answer within 50 ms. Single slower ones happen on the shared 2-vCPU
  // box when the OS runs other work; a loop blocked by the prefill would instead delay a probe by
  // most of a ~250 ms prefill round, which the 150 ms bound on the worst probe catches.
  all.sort((a, b) => a - b);
  const p90 = all[Math.floor(all.length * 0.9)]!;
  const shown = `${n} probes: p90 ${p90.toFixed(1)} ms, worst ${worst.toFixed(1)} ms, ${prefillMs.toFixed(0)} ms of prefill`;
  assert.ok(p90 < 50, shown);
  assert.ok(worst < 150, shown);
  console.log(`# /health during prefill: ${shown}`);
});

test('the model\'s own chat template renders tools, tool calls and tool results; detokenize checks ids', opts, async () => {
  const post = (path: string, body: unknown) => fetch(s.url + path, { method: 'POST', body: JSON.stringify(body) });
  const r = await post('/apply-template', {
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }],
    messages: [
      { role: 'user', content: 'Weather?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp":21}' },
    ],
  });
  assert.equal(r.status, 200);
  const { prompt } = (await r.json()) as { prompt: string };
  assert.match(prompt, /<tools>\n\{"type": "function", "function": \{"name": "get_weather"/);
  assert.match(prompt, /<\|im_start\|>assistant\n<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "Paris"\}\}\n<\/tool_call><\|im_end\|>/);
  assert.match(prompt, /<tool_response>\n\{"temp":21\}\n<\/tool_response>/);
  assert.ok(prompt.endsWith('<|im_start|>assistant\n'));
  const tok = (await (await post('/tokenize', { content: 'Hello world' })).json()) as { tokens: number[] };
  const detok = (await (await post('/detokenize', { tokens: tok.tokens })).json()) as { content: string };
  assert.equal(detok.content, 'Hello world');
  const bad = await post('/detokenize', { tokens: [999999999] });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { error: { message: string } }).error.message, /999999999 is outside the vocabulary/);
});
