// Fixture for the real-engine server tests: a tiny synthetic Qwen3-MoE written under os.tmpdir()
// and `startServer` with `loadEngine` on 127.0.0.1, port 0.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadEngine } from '../../src/engine/index.ts';
import { synthModel } from '../../src/model/synth.ts';
import { startServer, type RunningServer } from '../../src/server/app.ts';

/** A stuck worker fails the test instead of hanging the suite (the shared 2-core box is slow). */
export const TEST_TIMEOUT_MS = 240_000;

export interface TinyModel {
  path: string;
  remove(): void;
}

export async function tinyModel(): Promise<TinyModel> {
  const dir = mkdtempSync(join(tmpdir(), 'mixtile-server-'));
  const path = join(dir, 'tiny.gguf');
  await synthModel({ preset: 'tiny', out: path, seed: 7 });
  return { path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function realServer(modelPath: string, o: { parallel?: number; ctxSize?: number; ubatch?: number; maxQueue?: number; apiKey?: string } = {}): Promise<RunningServer> {
  const s = await startServer({
    host: '127.0.0.1',
    port: 0,
    apiKey: o.apiKey,
    load: () => loadEngine({ modelPath, threads: 1, ctxSize: o.ctxSize ?? 512, parallel: o.parallel ?? 4, ubatch: o.ubatch, maxQueue: o.maxQueue }),
  });
  await s.ready;
  return s;
}

/** Reads an SSE body into its `data:` payloads (the last is "[DONE]"). */
export async function sseEvents(r: Response): Promise<string[]> {
  const text = await r.text();
  assert(text.endsWith('\n\n'), 'SSE body ends with a blank line');
  return text
    .split('\n\n')
    .filter((e) => e.length > 0)
    .map((e) => {
      assert(e.startsWith('data: '), `SSE event ${JSON.stringify(e.slice(0, 40))} starts with "data: "`);
      return e.slice(6);
    });
}

function assert(ok: boolean, what: string): void {
  if (!ok) throw new Error(`expected: ${what}`);
}
