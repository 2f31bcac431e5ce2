// `mixtile bench` says what ran, as llama-bench's backend column does: CUDA+CPU with the GPU's name and
// the experts' backend for a hybrid run (the default where CUDA is usable), CPU with --rules cpu. Runs on
// the CPU stand-in of the CUDA library (libmixtile-cuda-host.so beside the addon), as the hybrid test does.
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

describe('mixtile bench: the backend column', { skip }, () => {
  let dir: string;
  let model: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mixtile-bench-backend-'));
    model = join(dir, 'tiny.gguf');
    // synth tiny: the real tokenizer (bench needs one) at 2 layers.
    await synthModel({ preset: 'tiny', out: model, fileType: 'BF16', seed: 3 });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function bench(...args: string[]): { stdout: string; stderr: string } {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/index.ts', 'bench', '-m', model, '-p', '8', '-n', '2', '-r', '1', '-t', '1', ...args], {
      cwd: ROOT,
      env: { ...process.env, MIXTILE_ADDON: ADDON, MIXTILE_CUDA_LIB: STAND_IN },
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(r.status, 0, `bench failed: ${r.stderr}`);
    return r;
  }

  test('default placement on the stand-in: CUDA+CPU, the GPU name and the experts backend in -o json', () => {
    const { stdout, stderr } = bench('-o', 'json');
    assert.match(stderr, /using preset qwen3moe-hybrid/);
    const rows = JSON.parse(stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(rows.map((r) => r.test), ['pp8', 'tg2']);
    for (const r of rows) {
      assert.equal(r.backends, 'CUDA+CPU');
      assert.equal(r.gpu_info, 'Mixtile host stand-in (CPU)');
      // The hybrid preset gives the experts backend auto and prefill_device cuda (split by the cost model).
      assert.match(String(r.experts_backend), /^auto: (AMX\w+|AVX\w+|SCALAR)[^,]*, prefill split with the GPU$/);
    }
  });

  test('-v on the hybrid: the GPU side per forward, and the prefill experts split with the cost model in use', () => {
    const { stdout } = bench('-v');
    assert.match(stdout, /^tg2, GPU side per forward \(\d+ forwards\): wait for the GPU before the CPU experts [\d.]+ ms, CPU experts [\d.]+ ms/m);
    const split = /^pp8, prefill experts split per forward \(([\d.]+) layer calls\): CPU (\d+) experts [\d.]+ ms \(predicted [\d.]+\), GPU (\d+) experts [\d.]+ ms \(predicted [\d.]+\); cost model (\S+)$/m.exec(stdout);
    assert.ok(split, stdout);
    assert.equal(Number(split[1]), 2, 'one planned call per layer of the 2-layer model');
    assert.ok(Number(split[2]) + Number(split[3]) > 0, 'the experts with tokens went somewhere');
    // The constants print in MIXTILE_EXPERT_COST's syntax, so a run can be repeated with them fixed.
    assert.match(split[4], /^pcie_gbps=[\d.]+,gpu_base_us=[\d.]+,gpu_row_us=[\d.]+,gpu_call_us=[\d.]+,cpu_base_us=[\d.]+,cpu_row_us=[\d.]+,split_cpu_x=[\d.]+,split_gpu_x=[\d.]+$/);
  });

  test('--rules cpu: CPU in the markdown table', () => {
    const { stdout } = bench('--rules', 'cpu');
    const rows = stdout.split('\n').filter((l) => /\| (pp8|tg2) \|/.test(l));
    assert.equal(rows.length, 2, stdout);
    for (const row of rows) assert.match(row, /^\| qwen3moe 2L BF16 \| [\d.]+ GiB \| [\d.]+ M \| CPU \(experts auto: [\w ()]+\) \| 1 \|/);
  });
});
