// `mixtile doctor` reports the placement the engine loads without --optimize-config (defaultRules:
// qwen3moe-hybrid where the CUDA library finds a device, whatever the CPU; else the CPU only), the CUDA
// library's state, and what the experts' `auto` backend takes on this CPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { doctorReport } from '../../src/cli/doctor.ts';
import type { CudaInfo } from '../../src/native/cuda.ts';
import { fakeHardware } from '../optimize/fixtures.ts';

const H100: CudaInfo = {
  available: true,
  library: '/x/libmixtile-cuda.so',
  cublas: true,
  devices: [{ name: 'NVIDIA H100 80GB HBM3', vramBytes: 80 * 2 ** 30, freeBytes: 79 * 2 ** 30, cc: '9.0', multiprocessors: 132 }],
};
const NO_LIB: CudaInfo = { available: false, reason: 'libmixtile-cuda.so not found beside the addon', devices: [] };

test('AMX + CUDA: qwen3moe-hybrid (experts auto takes AMX), as generate and serve load it', () => {
  const d = doctorReport(fakeHardware({ amx: true, gpus: 1 }), H100);
  assert.equal(d.preset.name, 'qwen3moe-hybrid');
  assert.match(d.preset.path, /qwen3moe-hybrid\.yaml$/);
  assert.match(d.preset.reason, /^CUDA NVIDIA H100 80GB HBM3: experts on the CPU, the rest on the GPU; experts backend auto: AMX-INT8 for quantized weights/);
  assert.deepEqual(d.cuda, { available: true, summary: 'CUDA cuda:0 NVIDIA H100 80GB HBM3 (cc 9.0, 80.0 GiB, 79.0 GiB free)' });
  const c = d.checks.find((x) => x.id === 'cuda')!;
  assert.equal(c.ok, true);
  assert.equal(c.fix, undefined);
});

test('a GPU that the CUDA library cannot use: the CPU only, and how to fix it', () => {
  const d = doctorReport(fakeHardware({ amx: true, gpus: 1 }), NO_LIB);
  assert.equal(d.preset.name, 'cpu');
  assert.match(d.preset.reason, /^no usable CUDA device \(see the CUDA line\): everything on the CPU; experts backend auto: AMX-INT8/);
  const c = d.checks.find((x) => x.id === 'cuda')!;
  assert.equal(c.ok, false);
  assert.equal(c.found, 'CUDA unavailable: libmixtile-cuda.so not found beside the addon');
  assert.match(c.fix!, /build libmixtile-cuda\.so/);
});

test('no GPU, AVX-512: the CPU only with AVX-512 experts', () => {
  const d = doctorReport(fakeHardware({ avx512: true }), NO_LIB);
  assert.equal(d.preset.name, 'cpu');
  assert.match(d.preset.reason, /experts backend auto: AVX-512$/);
  assert.equal(d.checks.find((x) => x.id === 'cuda')!.fix, 'everything runs on the CPU');
});
