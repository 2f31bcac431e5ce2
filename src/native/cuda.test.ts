import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cudaInfo, describeCuda } from './cuda.ts';

// Runs everywhere: on a machine without a GPU (CI, the dev box) it must say why, never throw.
test('cudaInfo: answers available or a reason, never throws', () => {
  const info = cudaInfo();
  assert.equal(typeof info.available, 'boolean');
  assert.ok(Array.isArray(info.devices));
  if (info.available) {
    assert.ok(info.devices.length > 0);
    for (const d of info.devices) {
      assert.ok(d.vramBytes > 0 && d.freeBytes <= d.vramBytes);
      assert.match(d.cc, /^\d+\.\d+$/);
    }
  } else {
    assert.equal(typeof info.reason, 'string');
    assert.ok((info.reason ?? '').length > 10, `reason too short: ${info.reason}`);
  }
  console.log(describeCuda(info));
});
