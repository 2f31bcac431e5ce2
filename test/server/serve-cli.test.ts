// `mixtile serve` as a user runs it: with no model it writes the demo model into the cache folder
// ($XDG_CACHE_HOME here, a temp dir), listens at once (/health 503 while loading), says it is a
// random-weight demo, honours --api-key, and exits cleanly on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { demoModelPath } from '../../src/server/demo-model.ts';
import { TEST_TIMEOUT_MS } from './real-server.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test('mixtile serve with no model serves the cached demo model', { timeout: TEST_TIMEOUT_MS }, async () => {
  const cache = mkdtempSync(join(tmpdir(), 'mixtile-cache-'));
  const env = { ...process.env, XDG_CACHE_HOME: cache };
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'serve', '--port', '0', '--threads', '1', '--ctx-size', '256', '--api-key', 'k'], { cwd: ROOT, env });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const t0 = performance.now();
    while (!/listening on (http:\S+) /.test(stderr)) {
      assert.ok(performance.now() - t0 < 120_000, `no "listening" line; stderr: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const url = /listening on (http:\S+) /.exec(stderr)![1]!;
    // Listening comes before the model (it is still being written or loaded).
    const h1 = await fetch(`${url}/health`);
    assert.equal(h1.status, 503);
    while ((await fetch(`${url}/health`)).status !== 200) {
      assert.ok(performance.now() - t0 < 200_000, `never became healthy; stderr: ${stderr}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(existsSync(demoModelPath(env)), 'demo model cached');
    assert.equal((await fetch(`${url}/v1/models`)).status, 401);
    const models = await fetch(`${url}/v1/models`, { headers: { authorization: 'Bearer k' } }).then((r) => r.json());
    assert.equal(models.data[0].id, 'mixtile-demo');
    assert.equal(models.data[0].meta.is_demo, true);
    assert.match(models.data[0].meta.description, /RANDOM weights/);
    assert.match(stderr, /DEMO model has random weights/);
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    child.kill('SIGKILL');
    rmSync(cache, { recursive: true, force: true });
  }
});
