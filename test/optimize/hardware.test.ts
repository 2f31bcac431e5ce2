// Hardware probe parsers, backend support, the default preset and doctor's diagnosis.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCpuinfo, parseMeminfo, parseNvidiaSmi, backendSupport, bestBackend, defaultPreset, probeHardware } from '../../src/optimize/hardware.ts';
import { diagnose } from '../../src/optimize/diagnose.ts';
import { fakeHardware } from './fixtures.ts';

const SPR_FLAGS = 'fpu sse2 avx2 avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8';
const cpuinfo = (flags: string, cores: Array<[number, number]>) =>
  cores.map(([phys, core], i) => `processor\t: ${i}\nmodel name\t: Intel(R) Xeon(R) Gold 6430\nphysical id\t: ${phys}\ncore id\t\t: ${core}\nflags\t\t: ${flags}\n`).join('\n');

test('parseCpuinfo: model, flags, physical cores across sockets and hyper-threads', () => {
  const c = parseCpuinfo(cpuinfo(SPR_FLAGS, [[0, 0], [0, 1], [0, 0], [0, 1], [1, 0], [1, 1]]));
  assert.equal(c.model, 'Intel(R) Xeon(R) Gold 6430');
  assert.equal(c.logicalCores, 6);
  assert.equal(c.physicalCores, 4);
  assert.deepEqual(c.flags, { avx2: true, avx512f: true, avx512bw: true, avx512vl: true, avx512Vnni: true, avx512Bf16: true, amxTile: true, amxBf16: true, amxInt8: true });
  const vm = parseCpuinfo('processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: avx2\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: avx2\n');
  assert.equal(vm.physicalCores, 2, 'no core ids: every logical CPU counts');
  assert.equal(vm.flags.avx512f, false);
});

test('parseMeminfo and parseNvidiaSmi', () => {
  assert.deepEqual(parseMeminfo('MemTotal:       24684096 kB\nMemFree:  100 kB\nMemAvailable:   23000000 kB\n'), { totalBytes: 24684096 * 1024, availableBytes: 23000000 * 1024 });
  assert.equal(parseMeminfo('nothing'), undefined);
  const smi = parseNvidiaSmi('0, NVIDIA GeForce RTX 4090, 24564, 23000, 550.54.14\n1, NVIDIA H100 80GB HBM3, 81559, 81000, 550.54.14\n');
  assert.equal(smi.gpus.length, 2);
  assert.deepEqual(smi.gpus[1], { index: 1, name: 'NVIDIA H100 80GB HBM3', memoryTotalBytes: 81559 * 2 ** 20, memoryFreeBytes: 81000 * 2 ** 20 });
  assert.equal(smi.driver, '550.54.14');
  assert.deepEqual(parseNvidiaSmi('No devices were found\n').gpus, []);
});

test('backend support and the default preset follow the machine', () => {
  const ryzen = fakeHardware({ avx512: true });
  assert.deepEqual(backendSupport(ryzen, 'AMXInt8'), { ok: false, missing: 'AMX-INT8' });
  assert.deepEqual(backendSupport(ryzen, 'AVX512'), { ok: true });
  assert.equal(bestBackend(ryzen), 'AVX512');
  assert.equal(bestBackend(fakeHardware()), 'generic');
  assert.equal(bestBackend(fakeHardware({ amx: true })), 'AMXInt8');
  assert.match((backendSupport(fakeHardware({ amx: true, amxDenied: true }), 'AMXBF16') as { missing: string }).missing, /permission/);
  assert.equal(defaultPreset(ryzen).preset, 'cpu');
  assert.equal(defaultPreset(fakeHardware({ avx512: true, gpus: 1 })).preset, 'qwen3moe-hybrid');
  assert.equal(defaultPreset(fakeHardware({ amx: true, gpus: 1 })).preset, 'qwen3moe-hybrid-amx');
  assert.equal(defaultPreset(fakeHardware({ amx: true, gpus: 1, amxDenied: true })).preset, 'qwen3moe-hybrid');
});

test('diagnose: found / missing / fix per check', () => {
  const d = diagnose(fakeHardware({ avx512: true }));
  const byId = new Map(d.checks.map((c) => [c.id, c]));
  assert.equal(byId.get('cpu.avx512')!.ok, true);
  assert.equal(byId.get('cpu.avx512')!.fix, undefined);
  assert.equal(byId.get('cpu.amx')!.ok, false);
  assert.match(byId.get('cpu.amx')!.fix!, /Sapphire Rapids/);
  assert.equal(byId.has('cpu.amx-permission'), false, 'no AMX: nothing to ask the kernel');
  assert.equal(byId.get('gpu')!.ok, false);
  assert.deepEqual(d.backends.AMXInt8, { ok: false, missing: 'AMX-INT8' });
  assert.equal(d.preset.name, 'cpu');
  const denied = diagnose(fakeHardware({ amx: true, gpus: 1, amxDenied: true }));
  const perm = denied.checks.find((c) => c.id === 'cpu.amx-permission')!;
  assert.equal(perm.ok, false);
  assert.match(perm.fix!, /Linux 5\.16/);
});

test('probeHardware on this machine gives a complete, consistent report', () => {
  const hw = probeHardware();
  assert.ok(hw.cpu.logicalCores >= 1 && hw.cpu.physicalCores >= 1 && hw.cpu.physicalCores <= hw.cpu.logicalCores);
  assert.ok(hw.memory.totalBytes > 0);
  assert.ok(hw.gpus.length > 0 || typeof hw.gpuNote === 'string', 'no GPU must come with a reason');
  assert.ok(hw.cpu.nativeIsa !== undefined || typeof hw.cpu.nativeError === 'string', 'no native probe must come with a reason');
  if (!hw.cpu.flags.amxTile) assert.equal(hw.cpu.amxPermission, 'not-needed');
});
