// inspect's numbers on a synth model whose counts are known by construction.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthModel } from '../../src/model/synth.ts';
import { readGguf } from '../../src/formats/gguf-read.ts';
import { summarizeGguf } from '../../src/formats/gguf-summary.ts';

test('summary of synth tiny Q8_0: params, active params, types, memory by placement', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mixtile-summary-'));
  try {
    const out = join(dir, 'tiny.gguf');
    await synthModel({ preset: 'tiny', out, layers: 2, fileType: 'Q8_0' });
    const s = summarizeGguf(await readGguf(out), { ctx: 1000 });
    const embd = 256 * 151936;
    const expertsPerLayer = 3 * 256 * 256 * 8;
    const attnPerLayer = 256 * 256 * 2 + 256 * 128 * 2 + 64 * 2 + 256 * 2 + 256 * 8;
    assert.equal(s.nParams, 2 * embd + 256 + 2 * (attnPerLayer + expertsPerLayer));
    assert.equal(s.nExpertParams, 2 * expertsPerLayer);
    assert.equal(s.nActiveParams, s.nParams - 2 * expertsPerLayer + (2 * expertsPerLayer) / 4); // 2 of 8 experts
    assert.deepEqual(s.hparams, { nLayers: 2, hidden: 256, nHeads: 4, nKvHeads: 2, headDim: 64, nExperts: 8, nExpertsUsed: 2, expertFfn: 256, vocab: 151936, contextLength: 4096 });
    assert.equal(s.fileType, 'Q8_0');
    assert.deepEqual(s.types.map((t) => [t.type, t.nTensors]), [['Q8_0', 16], ['F32', 11]]);
    assert.equal(s.expertBytes, (2 * expertsPerLayer / 32) * 34);
    assert.equal(s.memory.kvBytes, 2 * 2 * 2 * 64 * 1000 * 2);
    assert.equal(s.memory.allCpu.ramBytes, s.tensorBytes + s.memory.kvBytes);
    assert.equal(s.memory.expertsCpu.ramBytes + s.memory.expertsCpu.vramBytes, s.memory.allCpu.ramBytes);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
