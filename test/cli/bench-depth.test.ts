// `mixtile bench -d` from the command line: llama-bench's test names and n_depth in -o json and in the
// table, the TTFT and peak VRAM figures, the depth list parsed as -p/-n are, and a clear error (exit 2,
// before the model loads) for a depth + test past the model's context. Runs the hybrid placement on the
// CPU stand-in of the CUDA library, as bench-backend.test.ts does.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { synthModel } from '../../src/model/synth.ts';
import { ADDON, STAND_IN, standInSkip } from '../cuda/target.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const skip = standInSkip;

describe('mixtile bench -d', { skip }, () => {
  let dir: string;
  let model: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mixtile-bench-depth-cli-'));
    model = join(dir, 'tiny.gguf');
    await synthModel({ preset: 'tiny', out: model, fileType: 'BF16', seed: 3 }); // context length 4096
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function bench(...args: string[]) {
    return spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'bench', '-m', model, '-r', '1', '-t', '1', ...args], {
      cwd: ROOT,
      env: { ...process.env, MIXTILE_ADDON: ADDON, MIXTILE_CUDA_LIB: STAND_IN },
      encoding: 'utf8',
      timeout: 120_000,
    });
  }

  test('-o json: llama-bench names and n_depth, ns samples, TTFT for pp, peak VRAM and RSS', () => {
    const r = bench('-p', '8', '-n', '2', '-d', '0,40', '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /depth 40 prefilled in [\d.]+ ms/);
    const rows = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(rows.map((x) => [x.test, x.n_prompt, x.n_gen, x.n_depth]), [
      ['pp8', 8, 0, 0],
      ['tg2', 0, 2, 0],
      ['pp8 @ d40', 8, 0, 40],
      ['tg2 @ d40', 0, 2, 40],
    ]);
    for (const x of rows) {
      assert.equal((x.samples_ns as number[]).length, 1);
      assert.ok(Number(x.avg_ns) > 0 && Number(x.peak_rss_bytes) > 0);
      // The stand-in counts its "device" allocations: weights, KV and buffers of the tiny model, well under its 8 GiB.
      assert.ok(Number(x.vram_peak_bytes) > 1e6 && Number(x.vram_peak_bytes) < 2 ** 33, `vram_peak_bytes ${x.vram_peak_bytes}`);
      assert.equal(x.nvidia_smi_bytes, null, 'no nvidia-smi figure for the stand-in');
      if (x.n_prompt) assert.ok(Number(x.ttft_ms) > 0 && Number(x.ttft_ms) >= Number(x.avg_ns) / 1e6 - 1e-6, `ttft ${x.ttft_ms} avg_ns ${x.avg_ns}`);
      else assert.equal(x.ttft_ms, null);
    }
  });

  test('table: the depth rows, TTFT and VRAM columns', () => {
    const r = bench('-p', '8', '-n', '0', '-d', '16');
    assert.equal(r.status, 0, r.stderr);
    const header = r.stdout.split('\n')[0]!;
    assert.match(header, /\| test \| t\/s \| TTFT ms \| peak RSS \| peak VRAM \| smi VRAM \|$/);
    assert.match(r.stdout, /\| pp8 @ d16 \| [\d.]+ ± [\d.]+ \| [\d.]+ \| \d+ MiB \| \d+ MiB \| - \|/);
  });

  test('bad depth lists and depths past the context fail with a message', () => {
    const bad = bench('-p', '8', '-n', '0', '-d', '0,x');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /expected comma-separated integers >= 0, got "0,x"/);
    const deep = bench('-p', '16', '-n', '4', '-d', '0,4090');
    assert.equal(deep.status, 2, deep.stderr);
    assert.match(deep.stderr, /mixtile bench: pp16 @ d4090 needs 4107 positions of context \(depth 4090 \+ 16 tokens \+ 1\) but the model's context length is 4096; lower -d, -p or -n/);
    assert.doesNotMatch(deep.stderr, /at .*\.ts:\d+/, 'no stack trace');
  });
});
