// Thread pool and ISA controls: results do not depend on the thread count, MIXTILE_ISA /
// MIXTILE_THREADS are honoured at start-up, bad settings are JS errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { isaInfo, poolKeepHot, poolRunCounts, poolSleepingWorkers, setIsa, setThreads } from '../../src/native/isa.ts';
import { linearForward, linearLoad } from '../../src/native/linear.ts';
import { randomF32, randomWeight } from './helpers.ts';

test('linear output is identical with 1, 2 and 3 threads', () => {
  const before = isaInfo().threads;
  const { w } = randomWeight(GgmlType.Q4_K, [512, 67], 9);
  const lin = linearLoad(w);
  const x = randomF32(19 * 512, 10);
  const outs = [1, 2, 3].map((n) => {
    assert.equal(setThreads(n), n);
    const y = new Float32Array(19 * 67);
    linearForward(lin, x, 19, y);
    return y;
  });
  setThreads(before);
  assert.deepEqual(outs[1], outs[0]);
  assert.deepEqual(outs[2], outs[0]);
  lin.dispose();
  w.dispose();
});

test('setIsa rejects unknown names and levels above the CPU', () => {
  assert.throws(() => setIsa('sse9' as never), /unknown ISA "sse9"/);
  if (isaInfo().detected !== 'amx') assert.throws(() => setIsa('amx'), /above what this CPU supports/);
  assert.throws(() => setThreads(-1), /setThreads/);
});

test('MIXTILE_ISA and MIXTILE_THREADS set the start-up level and pool size', () => {
  const code = "import { isaInfo } from './src/native/isa.ts'; const i = isaInfo(); console.log(JSON.stringify([i.active, i.threads]));";
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    env: { ...process.env, MIXTILE_ISA: 'scalar', MIXTILE_THREADS: '3' },
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.trim()), ['scalar', 3]);
});

test('a hot window keeps idle workers spinning until it closes, then they sleep', async () => {
  const before = isaInfo().threads;
  setThreads(2);
  try {
    poolRunCounts(64);
    poolKeepHot(400_000);
    // Without the window the worker sleeps after a short spin (4000 pauses and 200 yields: well under 150 ms).
    await sleep(150);
    assert.equal(poolSleepingWorkers(), 0, 'a worker slept inside the hot window');
    let asleep = 0;
    for (let i = 0; i < 100 && asleep < 1; i++) {
      await sleep(20);
      asleep = poolSleepingWorkers();
    }
    assert.equal(asleep, 1, 'the worker still spins 2 s after the window closed');
    assert.deepEqual(poolRunCounts(64).counts, new Int32Array(64).fill(1));
  } finally {
    setThreads(before);
  }
});
