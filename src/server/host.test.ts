// ModelHost: keep_alive parsing (Ollama's forms) and the load-failure path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError } from './errors.ts';
import { ModelHost, parseKeepAlive } from './host.ts';

test('parseKeepAlive reads Ollama durations and numbers of seconds', () => {
  const cases: Array<[string | number, number | undefined]> = [
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['10s', 10_000],
    ['250ms', 250],
    ['0', 0],
    [0, 0],
    [30, 30_000],
    ['-1', -1],
    [-1, -1],
    ['-5m', -1],
    ['', undefined],
    ['5 minutes', undefined],
    ['m', undefined],
    [Number.NaN, undefined],
  ];
  for (const [v, ms] of cases) assert.equal(parseKeepAlive(v), ms, JSON.stringify(v));
});

test('a failed load answers 503 with the cause, for requests and listings alike', async () => {
  const host = new ModelHost({ load: async () => Promise.reject(new Error('model.gguf: not a GGUF file')), keepAliveMs: -1 });
  await assert.rejects(host.load(), /not a GGUF file/);
  assert.equal(host.state, 'failed');
  const is503 = (e: unknown) => e instanceof ApiError && e.status === 503 && /failed to load: model.gguf: not a GGUF file/.test(e.message);
  await assert.rejects(host.acquire(), is503);
  assert.throws(() => host.loaded(), is503);
});
