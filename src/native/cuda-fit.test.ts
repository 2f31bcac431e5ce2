import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkGpuFit, kvCacheBytes } from './cuda-fit.ts';

const GIB = 2 ** 30;

test('kvCacheBytes: Qwen3-30B-A3B, 48 layers, 4 kv heads of 128, f16, 32K context, 1 slot', () => {
  assert.equal(kvCacheBytes({ layers: 48, slots: 1, contextLength: 32768, kvHeads: 4, headDim: 128, elementBytes: 2 }), 3 * GIB);
});

test('checkGpuFit: fits with spare', () => {
  const r = checkGpuFit({ weightsBytes: 4 * GIB, kvBytes: 3 * GIB, workspaceBytes: GIB, freeBytes: 79 * GIB, device: 'cuda:0 H100' });
  assert.equal(r.ok, true);
  if (r.ok) assert.ok(Math.abs(r.spareBytes - (79 * GIB * 0.95 - 8 * GIB)) < 1);
});

test('checkGpuFit: refuses with what, how much and which flag', () => {
  const kvPerToken = 48 * 2 * 4 * 128 * 2;
  const r = checkGpuFit({
    weightsBytes: 14 * GIB,
    kvBytes: kvPerToken * 131072,
    workspaceBytes: GIB,
    freeBytes: 23.5 * GIB,
    reserveBytes: 0.5 * GIB,
    device: 'cuda:0 RTX 4090',
    kv: { contextLength: 131072, slots: 1, bytesPerToken: kvPerToken },
  });
  assert.equal(r.ok, false);
  if (!r.ok) {
    assert.equal(r.shortBytes, 14 * GIB + 12 * GIB + GIB - 23 * GIB);
    assert.match(r.message, /^cuda:0 RTX 4090: the placement needs 27\.00 GiB \(weights 14\.00 GiB, KV cache 12\.00 GiB, workspace 1\.00 GiB\) but 23\.00 GiB are free/);
    assert.match(r.message, /4\.00 GiB short/);
    // 8 GiB of KV fit: 8 GiB / 96 KiB per token = 87381 tokens -> 87040 rounded down to 1024.
    assert.match(r.message, /--ctx-size \(131072 -> 87040 frees 4\.03 GiB\)/);
  }
});

test('checkGpuFit: bad input throws', () => {
  assert.throws(() => checkGpuFit({ weightsBytes: -1, kvBytes: 0, workspaceBytes: 0, freeBytes: GIB, device: 'x' }), RangeError);
});
