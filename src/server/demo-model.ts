// The built-in demo model for `mixtile serve` with no --model: a tiny random-weight Qwen3-MoE made
// once by synth and cached in the user's cache folder. Its output is noise; it shows the plumbing.
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { synthModel } from '../model/synth.ts';
import { VERSION } from './app.ts';

/** ($XDG_CACHE_HOME or ~/.cache)/mixtile/demo-qwen3moe-tiny-<version>.gguf */
export function demoModelPath(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cache, 'mixtile', `demo-qwen3moe-tiny-${VERSION}.gguf`);
}

/**
 * The demo model's path, writing it first when it is not cached. It is written under a temporary
 * name and renamed, so an interrupted run or a second server never sees half a file.
 */
export async function ensureDemoModel(opts: { onProgress?: (done: number, total: number) => void; log?: (line: string) => void } = {}): Promise<string> {
  const path = demoModelPath();
  if (existsSync(path)) return path;
  await mkdir(join(path, '..'), { recursive: true });
  opts.log?.(`making the demo model (random weights, about 170 MB) at ${path}`);
  const tmp = `${path}.${process.pid}.partial`;
  try {
    // Fixed seed: every install gets the same demo model.
    await synthModel({ preset: 'tiny', out: tmp, seed: 0, onProgress: opts.onProgress });
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
    await rm(`${tmp}.tmp`, { force: true });
  }
  return path;
}
