// The HTTP routes over the ScriptedEngine test double (scripted-engine.ts): wire shapes, tool calls
// and thinking (plain and streamed, through the official openai and ollama clients), errors in each
// protocol's shape, API key, cancel on disconnect, queue full, keep_alive. Real-engine tests: clients.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import { startServer, type RunningServer } from '../../src/server/app.ts';
import { ScriptedEngine, type ScriptOptions } from './scripted-engine.ts';

const TOOL_REPLY = '<think>\nI should call the weather tool.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>';
const THINK_REPLY = '<think>\nThe user says hi.\n</think>\n\nHello there!';
const TOOLS = [{ type: 'function' as const, function: { name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];

async function withServer(script: Partial<ScriptOptions>, f: (s: RunningServer, e: ScriptedEngine) => Promise<void>, opts: { apiKey?: string } = {}): Promise<void> {
  const engine = new ScriptedEngine({ reply: (p) => (p.includes('# Tools') ? TOOL_REPLY : THINK_REPLY), ...script });
  const s = await startServer({ host: '127.0.0.1', port: 0, load: async () => engine, apiKey: opts.apiKey });
  await s.ready;
  try {
    await f(s, engine);
  } finally {
    await s.close();
  }
}

async function post(s: RunningServer, path: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(s.url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, text, json, type: r.headers.get('content-type') ?? '' };
}

const MSG = [{ role: 'user', content: 'Hi' }];

test('/health is 503 while the model loads (server already listening), 200 after', async () => {
  let finish!: () => void;
  const gate = new Promise<void>((r) => (finish = r));
  const engine = new ScriptedEngine({ reply: () => 'x' });
  const s = await startServer({ host: '127.0.0.1', port: 0, load: async () => (await gate, engine) });
  try {
    const h1 = await fetch(s.url + '/health');
    assert.equal(h1.status, 503);
    assert.deepEqual(await h1.json(), { error: { code: 503, message: 'Loading model', type: 'unavailable_error' } });
    const c = await post(s, '/v1/chat/completions', { messages: MSG });
    assert.equal(c.status, 503);
    assert.match(c.json.error.message, /Loading model/);
    finish();
    await s.ready;
    const h2 = await fetch(s.url + '/health');
    assert.equal(h2.status, 200);
    assert.deepEqual(await h2.json(), { status: 'ok' });
  } finally {
    await s.close();
  }
});

test('OpenAI chat: reasoning_content split from content, usage and timings', async () => {
  await withServer({}, async (s) => {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused' });
    const r = await client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'Hi' }] });
    const msg = r.choices[0]!.message as { content: string; reasoning_content?: string };
    assert.equal(msg.content, 'Hello there!');
    assert.equal(msg.reasoning_content, 'The user says hi.');
    assert.equal(r.choices[0]!.finish_reason, 'stop');
    assert.equal(r.usage!.completion_tokens, THINK_REPLY.length);
    assert.equal(r.usage!.prompt_tokens_details?.cached_tokens, 0);
    assert.equal((r as unknown as { timings: { predicted_n: number } }).timings.predicted_n, THINK_REPLY.length);
  });
});

test('OpenAI chat streamed: delta.reasoning_content then delta.content, usage chunk, [DONE]', async () => {
  await withServer({}, async (s) => {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused' });
    const stream = await client.chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }], stream: true, stream_options: { include_usage: true } });
    let reasoning = '';
    let content = '';
    let finish: string | null = null;
    let usage = 0;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage.completion_tokens;
      const c = chunk.choices[0];
      if (!c) continue;
      reasoning += (c.delta as { reasoning_content?: string }).reasoning_content ?? '';
      content += c.delta.content ?? '';
      finish ??= c.finish_reason;
    }
    assert.equal(reasoning, 'The user says hi.');
    assert.equal(content, 'Hello there!');
    assert.equal(finish, 'stop');
    assert.equal(usage, THINK_REPLY.length);
    const raw = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages: MSG, stream: true }) });
    assert.match(raw.headers.get('content-type')!, /text\/event-stream/);
    assert.ok((await raw.text()).endsWith('data: [DONE]\n\n'));
  });
});

test('OpenAI tools: tool_calls (plain and streamed, no tags in content), finish_reason, tool results fed back', async () => {
  await withServer({}, async (s, engine) => {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused' });
    const messages = [{ role: 'user' as const, content: 'Weather in Paris?' }];
    const r = await client.chat.completions.create({ model: 'scripted', messages, tools: TOOLS });
    const m = r.choices[0]!.message;
    assert.equal(r.choices[0]!.finish_reason, 'tool_calls');
    assert.equal(m.content, null);
    assert.equal(m.tool_calls?.length, 1);
    const call = m.tool_calls![0]! as { id: string; type: string; function: { name: string; arguments: string } };
    assert.equal(call.type, 'function');
    assert.match(call.id, /^call_/);
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris', unit: 'celsius' });

    const stream = await client.chat.completions.create({ model: 'scripted', messages, tools: TOOLS, stream: true });
    let content = '';
    let finish: string | null = null;
    const calls: Array<{ index: number; name?: string; args: string }> = [];
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (!c) continue;
      content += c.delta.content ?? '';
      finish ??= c.finish_reason;
      for (const tc of c.delta.tool_calls ?? []) {
        calls[tc.index] ??= { index: tc.index, args: '' };
        if (tc.function?.name) calls[tc.index]!.name = tc.function.name;
        calls[tc.index]!.args += tc.function?.arguments ?? '';
      }
    }
    assert.equal(content, '');
    assert.equal(finish, 'tool_calls');
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.name, 'get_weather');
    assert.deepEqual(JSON.parse(calls[0]!.args), { city: 'Paris', unit: 'celsius' });

    // The tool result goes back through the chat template with the assistant's call.
    await client.chat.completions.create({
      model: 'scripted',
      tools: TOOLS,
      messages: [...messages, { role: "assistant" as const, content: null, tool_calls: [m.tool_calls![0]!] }, { role: "tool" as const, tool_call_id: call.id, content: "{\"temp\": 21}" }],
    });
    const last = engine.prompts.at(-1)!;
    assert.match(last, /<\|im_start\|>tool\n\{"temp": 21\}<\|im_end\|>/);
    assert.match(last, /"name":"get_weather","arguments":\{"city":"Paris","unit":"celsius"\}/);
    // tool_choice "none" offers no tools, so nothing is parsed as a call.
    const none = await post(s, '/v1/chat/completions', { messages: MSG, tools: TOOLS, tool_choice: 'none' });
    assert.equal(none.status, 200);
    assert.ok(!engine.prompts.at(-1)!.includes('# Tools'));
    await post(s, '/v1/chat/completions', { messages: MSG, tools: TOOLS, tool_choice: 'required' });
    assert.match(engine.prompts.at(-1)!, /<\|im_start\|>system\nYou must call the function get_weather now\.<\|im_end\|>/);
  });
});

test('enable_thinking false reaches the template; n = 2 gives two choices', async () => {
  await withServer({}, async (s, engine) => {
    const r = await post(s, '/v1/chat/completions', { messages: MSG, chat_template_kwargs: { enable_thinking: false }, n: 2, seed: 5 });
    assert.equal(r.status, 200, r.text);
    assert.ok(engine.prompts.at(-1)!.endsWith('<think>\n\n</think>\n\n'));
    assert.deepEqual(r.json.choices.map((c: { index: number }) => c.index), [0, 1]);
    assert.equal(r.json.usage.completion_tokens, 2 * THINK_REPLY.length);
    // Streamed, the two choices interleave; each gets its own content and finish_reason.
    const raw = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ messages: MSG, n: 2, stream: true }) }).then((x) => x.text());
    const chunks = raw.split('\n\n').filter((e) => e && e !== 'data: [DONE]').map((e) => JSON.parse(e.slice(6)));
    for (const index of [0, 1]) {
      const mine = chunks.flatMap((c) => c.choices).filter((c: { index: number }) => c.index === index);
      assert.equal(mine.map((c: { delta: { content?: string } }) => c.delta.content ?? '').join(''), 'Hello there!');
      assert.equal(mine.at(-1).finish_reason, 'stop');
    }
  });
});

test('/v1/completions: raw prompt, stream and not, max_tokens gives finish_reason length', async () => {
  await withServer({ reply: () => 'abcdef' }, async (s) => {
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused' });
    const r = await client.completions.create({ model: 'scripted', prompt: 'x', max_tokens: 3 });
    assert.equal(r.choices[0]!.text, 'abc');
    assert.equal(r.choices[0]!.finish_reason, 'length');
    const stream = await client.completions.create({ model: 'scripted', prompt: 'x', stream: true });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.text ?? '';
    assert.equal(text, 'abcdef');
  });
});

test('Ollama chat: tools with object arguments, thinking, NDJSON counters in ns; think false hides thinking', async () => {
  await withServer({}, async (s) => {
    const ollama = new Ollama({ host: s.url });
    const r = await ollama.chat({ model: 'scripted', messages: [{ role: 'user', content: 'Weather?' }], tools: TOOLS, stream: false });
    assert.deepEqual(r.message.tool_calls, [{ function: { name: 'get_weather', arguments: { city: 'Paris', unit: 'celsius' } } }]);
    assert.equal(r.message.thinking, 'I should call the weather tool.');
    assert.equal(r.message.content, '');
    assert.equal(r.done, true);

    const stream = await ollama.chat({ model: 'scripted:latest', messages: [{ role: 'user', content: 'Hi' }], stream: true });
    let content = '';
    let thinking = '';
    let last: any;
    for await (const part of stream) {
      content += part.message.content;
      thinking += part.message.thinking ?? '';
      last = part;
    }
    assert.equal(content, 'Hello there!');
    assert.equal(thinking, 'The user says hi.');
    assert.equal(last.done, true);
    assert.equal(last.done_reason, 'stop');
    assert.equal(last.eval_count, THINK_REPLY.length);
    assert.ok(last.total_duration > 1e6, 'durations are in nanoseconds');

    const hidden = await ollama.chat({ model: 'scripted', messages: [{ role: 'user', content: 'Hi' }], think: false, stream: false });
    assert.equal(hidden.message.thinking, undefined);
  });
});

test('Ollama generate, tags, show, ps, version; format json adds the instruction', async () => {
  await withServer({}, async (s, engine) => {
    const ollama = new Ollama({ host: s.url });
    const g = await ollama.generate({ model: 'scripted', prompt: 'Hi', format: 'json', stream: false });
    assert.equal(g.response, 'Hello there!');
    assert.match(engine.prompts.at(-1)!, /Respond with a single valid JSON value/);
    await ollama.generate({ model: 'scripted', prompt: 'Hi', format: { type: 'object', properties: { a: { type: 'number' } } }, stream: false });
    assert.match(engine.prompts.at(-1)!, /"properties":\{"a":\{"type":"number"\}\}/);
    const tags = await ollama.list();
    assert.equal(tags.models[0]!.name, 'scripted:latest');
    assert.equal(tags.models[0]!.details.family, 'qwen3moe');
    const show = await ollama.show({ model: 'scripted' });
    assert.equal(show.model_info['qwen3moe.context_length' as never], 4096);
    const ps = await ollama.ps();
    assert.equal(ps.models.length, 1);
    const v = await fetch(`${s.url}/api/version`).then((r) => r.json());
    assert.equal(typeof v.version, 'string');
  });
});

test('keep_alive 0 unloads after the request; the next request loads the model again', async () => {
  let loads = 0;
  const s = await startServer({ host: '127.0.0.1', port: 0, load: async () => (loads++, new ScriptedEngine({ reply: () => 'ok' })) });
  try {
    await s.ready;
    const ollama = new Ollama({ host: s.url });
    await ollama.generate({ model: 'scripted', prompt: 'Hi', keep_alive: 0, stream: false });
    for (let i = 0; i < 50 && s.host.engine; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal((await ollama.ps()).models.length, 0);
    assert.equal(s.host.state, 'unloaded');
    const r = await ollama.generate({ model: 'scripted', prompt: 'Hi', keep_alive: '5m', stream: false });
    assert.equal(r.response, 'ok');
    assert.equal(loads, 2);
    const ps = await ollama.ps();
    assert.ok(new Date(ps.models[0]!.expires_at).getTime() > Date.now() + 4 * 60_000);
  } finally {
    await s.close();
  }
});

test('bad input gives 4xx JSON in each protocol\'s shape, and the server keeps serving', async () => {
  await withServer({ contextLength: 128 }, async (s) => {
    const cases: Array<[string, unknown, number, RegExp]> = [
      ['/v1/chat/completions', '{"messages": [', 400, /not valid JSON/],
      ['/v1/chat/completions', '', 400, /body is empty/],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 5 }] }, 400, /messages\[0\]\.content: unexpected value \(found number 5\)/],
      ['/v1/chat/completions', { messages: MSG, temperature: 'hot' }, 400, /temperature/],
      ['/v1/chat/completions', { messages: [] }, 400, /messages/],
      ['/v1/chat/completions', { messages: MSG, max_tokens: 1e9 }, 400, /max_tokens is 1000000000 but the context holds 128/],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 'x'.repeat(200) }] }, 400, /context holds 128/],
      ['/v1/chat/completions', { model: 'gpt-4o', messages: MSG }, 404, /model "gpt-4o" not found/],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 400, /image_url" is not supported/],
      ['/v1/completions', { prompt: 5 }, 400, /prompt/],
      ['/tokenize', { content: 1 }, 400, /content/],
    ];
    for (const [path, body, status, message] of cases) {
      const r = await post(s, path, body);
      assert.equal(r.status, status, `${path} ${JSON.stringify(body)}: ${r.text}`);
      assert.match(r.type, /application\/json/);
      assert.match(r.json.error.message, message);
      assert.equal(r.json.error.code, status);
      assert.equal(typeof r.json.error.type, 'string');
    }
    const o = await post(s, '/api/chat', { model: 'nope', messages: MSG });
    assert.equal(o.status, 404);
    assert.match(o.json.error, /model "nope" not found/);
    const bad = await post(s, '/api/generate', { model: 'scripted', prompt: 'x', options: { temperature: 'x' } });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error, /options\.temperature/);
    assert.equal((await post(s, '/nowhere', {})).status, 404);
    const huge = await post(s, '/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(17 * 1024 * 1024) }] }));
    assert.equal(huge.status, 413);
    assert.match(huge.json.error.message, /over 16 MiB/);
    const ok = await post(s, '/v1/chat/completions', { messages: MSG });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.choices[0].message.content, 'Hello there!');
  });
});

test('--api-key: 401 JSON without or with a wrong Bearer key; /health and the page stay open', async () => {
  await withServer(
    {},
    async (s) => {
      const none = await post(s, '/v1/chat/completions', { messages: MSG });
      assert.equal(none.status, 401);
      assert.equal(none.json.error.type, 'authentication_error');
      assert.match(none.json.error.message, /missing API key/);
      const wrong = await post(s, '/v1/chat/completions', { messages: MSG }, { authorization: 'Bearer nope' });
      assert.equal(wrong.status, 401);
      assert.match(wrong.json.error.message, /invalid API key/);
      const ollamaWrong = await post(s, '/api/tags', {}, { authorization: 'Bearer nope' });
      assert.equal(ollamaWrong.status, 401);
      assert.equal((await fetch(s.url + '/health')).status, 200);
      assert.equal((await fetch(s.url + '/')).status, 200);
      // A browser's CORS preflight carries no key and must pass.
      const pre = await fetch(s.url + '/v1/chat/completions', { method: 'OPTIONS', headers: { origin: 'http://example.test', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
      assert.equal(pre.status, 204);
      assert.equal(pre.headers.get('access-control-allow-origin'), '*');
      const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'sekret' });
      const r = await client.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], model: 'scripted' });
      assert.equal(r.choices[0]!.message.content, 'Hello there!');
      await assert.rejects(new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0 }).models.list(), (e: { status: number }) => e.status === 401);
    },
    { apiKey: 'sekret' },
  );
});

test('client disconnect mid-stream cancels the engine request; a full queue answers 503', async () => {
  await withServer({ reply: () => 'y'.repeat(1000), tokenDelayMs: 5, slots: 1, maxQueue: 0 }, async (s, engine) => {
    for (const path of ['/v1/chat/completions', '/api/chat']) {
      const abort = new AbortController();
      const r = await fetch(s.url + path, { method: 'POST', body: JSON.stringify({ messages: MSG, stream: true }), signal: abort.signal });
      const reader = r.body!.getReader();
      await reader.read();
      await reader.read();
      assert.equal(engine.running, 1);
      const busy = await post(s, path, { messages: MSG });
      assert.equal(busy.status, 503, busy.text);
      abort.abort();
      for (let i = 0; i < 200 && engine.running > 0; i++) await new Promise((res) => setTimeout(res, 10));
      assert.equal(engine.running, 0, 'slot freed');
      assert.equal(engine.finished.at(-1), 'cancelled');
    }
  });
});

test('tokenize / detokenize / apply-template / metrics', async () => {
  await withServer({}, async (s) => {
    const t = await post(s, '/tokenize', { content: 'ab', with_pieces: true });
    assert.deepEqual(t.json, { tokens: [{ id: 97, piece: 'a' }, { id: 98, piece: 'b' }] });
    assert.deepEqual((await post(s, '/detokenize', { tokens: [104, 105] })).json, { content: 'hi' });
    const a = await post(s, '/apply-template', { messages: MSG });
    assert.equal(a.json.prompt, '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    await post(s, '/v1/chat/completions', { messages: MSG });
    const m = await fetch(s.url + '/metrics').then((r) => r.text());
    assert.match(m, new RegExp(`mixtile_generated_tokens_total ${THINK_REPLY.length}\\b`));
    assert.match(m, /mixtile_prompt_tokens_total \d+/);
    assert.match(m, new RegExp(`mixtile_time_to_first_token_seconds_count 1\\b`));
    assert.match(m, new RegExp(`mixtile_inter_token_latency_seconds_count ${THINK_REPLY.length - 1}\\b`));
    assert.match(m, /mixtile_requests_processing 0/);
    assert.match(m, /mixtile_requests_queued 0/);
  });
});

test('an engine fault: 500 JSON before the reply starts, an error event inside a started stream', async () => {
  await withServer({ reply: () => 'abcdef', errorAfter: 3 }, async (s) => {
    const plain = await post(s, '/v1/chat/completions', { messages: MSG });
    assert.equal(plain.status, 500);
    assert.deepEqual(plain.json.error, { code: 500, message: 'generation failed: scripted engine fault', type: 'server_error' });
    const stream = await post(s, '/v1/chat/completions', { messages: MSG, stream: true });
    assert.equal(stream.status, 200);
    const events = stream.text.split('\n\n').filter(Boolean);
    assert.equal(events.at(-1), 'data: [DONE]');
    assert.deepEqual(JSON.parse(events.at(-2)!.slice(6)), { error: { code: 500, message: 'generation failed: scripted engine fault', type: 'server_error' } });
    const nd = await post(s, '/api/chat', { messages: MSG });
    const lines = nd.text.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.at(-1), { error: 'generation failed: scripted engine fault' });
    const ollamaPlain = await post(s, '/api/generate', { prompt: 'x', stream: false });
    assert.equal(ollamaPlain.status, 500);
    assert.equal(ollamaPlain.json.error, 'generation failed: scripted engine fault');
  });
});
