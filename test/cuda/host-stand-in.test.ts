// libmixtile-cuda-host, the CPU stand-in for the CUDA library (native/src/cuda-host/), on every machine:
// 1. mixtile-cuda-host-test: test/cuda/cuda-kernels-test.cc (the checks the real kernels pass on the
//    GPU) and host-stand-in-checks.cc (what only the stand-in does), both linked against the stand-in;
// 2. the addon's loader accepts it (every symbol, the ABI version) and cudaInfo reports its device,
//    its size set by MIXTILE_CUDA_HOST_VRAM.
// npm run build:native builds the library beside mixtile.node; this file builds the two programs in the
// same CMake build folder (targets outside the addon's default build), so a stand-in that lacks a
// function a check calls fails here with the linker's message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cudaInfo } from '../../src/native/cuda.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const addonDir = dirname(process.env.MIXTILE_ADDON ?? join(root, 'native/build/Release/mixtile.node'));
const standIn = join(addonDir, 'libmixtile-cuda-host.so');
const notBuilt = (p: string): string | false =>
  existsSync(p) ? false : `${p} not built (npm run build:native builds it with the addon)`;
// cmake-js layout: <build folder>/CMakeCache.txt, <build folder>/Release/mixtile.node.
const buildDir = dirname(addonDir);
const noBuildFolder = notBuilt(standIn) || notBuilt(join(buildDir, 'CMakeCache.txt'));

function buildProgram(target: string): string {
  const r = spawnSync('cmake', ['--build', buildDir, '--target', target], { encoding: 'utf8' });
  assert.equal(r.status, 0, `cmake --build ${buildDir} --target ${target} failed (a mxc_ function missing from native/src/cuda-host?):\n${r.stdout}${r.stderr}`);
  return join(addonDir, target);
}

// The checks of deferred execution assume its default (not MIXTILE_CUDA_HOST_SYNC=1).
const { MIXTILE_CUDA_HOST_SYNC: _sync, ...deferredEnv } = process.env;

test('stand-in passes the CUDA kernel checks (cuda-kernels-test.cc)', { skip: noBuildFolder }, () => {
  const r = spawnSync(buildProgram('mixtile-cuda-host-test'), { encoding: 'utf8', timeout: 600_000, env: deferredEnv });
  const out = `${r.stdout}${r.stderr}`;
  const failed = out.split('\n').filter((l) => !l.startsWith('PASS'));
  assert.equal(r.status, 0, `exit ${r.status} ${r.signal ?? ''}:\n${failed.join('\n')}`);
  const m = /(\d+) passed, 0 failed/.exec(out);
  assert.ok(m && Number(m[1]) >= 200, `expected >= 200 passed checks:\n${failed.join('\n')}`);
  assert.match(out, /device 0: Mixtile host stand-in \(CPU\)/);
});

test('stand-in: deferred execution, graphs, capture rules, VRAM capacity, range checks (host-stand-in-checks.cc)', { skip: noBuildFolder }, () => {
  const r = spawnSync(buildProgram('mixtile-cuda-host-checks'), {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...deferredEnv, MIXTILE_CUDA_HOST_VRAM: String(128 * 2 ** 20), MIXTILE_CUDA_HOST_REPORT: '1' },
  });
  const out = `${r.stdout}${r.stderr}`;
  assert.equal(r.status, 0, out.split('\n').filter((l) => !l.startsWith('PASS')).join('\n'));
  assert.match(out, /\d+ passed, 0 failed/);
  // The peak: the lm_head GEMV's 74 MiB of weights plus the 32 MiB cuBLAS workspace, within the 128 MiB.
  const peak = /peak device memory (\d+) bytes \([\d.]+ MiB\) of 128\.0 MiB/.exec(r.stderr);
  assert.ok(peak && Number(peak[1]) >= 106 * 2 ** 20 && Number(peak[1]) <= 128 * 2 ** 20, r.stderr);
});

test('cudaInfo(stand-in): the loader accepts the ABI and reports the stand-in device', { skip: notBuilt(standIn) }, () => {
  const info = cudaInfo(standIn);
  assert.equal(info.available, true, info.reason);
  assert.equal(info.library, standIn);
  assert.equal(info.cublas, true);
  assert.equal(info.devices.length, 1);
  const [d] = info.devices;
  assert.equal(d!.name, 'Mixtile host stand-in (CPU)');
  assert.equal(d!.cc, '9.0');
  const vram = Number(process.env.MIXTILE_CUDA_HOST_VRAM ?? 8 * 2 ** 30);
  assert.equal(d!.vramBytes, vram);
  assert.ok(d!.freeBytes <= vram && d!.freeBytes > 0);
});

test('MIXTILE_CUDA_LIB selects the stand-in, MIXTILE_CUDA_HOST_VRAM sets its size', { skip: notBuilt(standIn) }, () => {
  const src = `import { cudaInfo } from ${JSON.stringify(join(root, 'src/native/cuda.ts'))};
console.log(JSON.stringify(cudaInfo()));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', src], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, MIXTILE_CUDA_LIB: standIn, MIXTILE_CUDA_HOST_VRAM: String(3 * 2 ** 30) },
  });
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  assert.equal(info.available, true, info.reason);
  assert.equal(info.library, standIn);
  assert.equal(info.devices[0].vramBytes, 3 * 2 ** 30);
  assert.equal(info.devices[0].freeBytes, 3 * 2 ** 30);
});
