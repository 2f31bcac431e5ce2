// loadModel on small generated models: bad input gives errors naming the key or tensor; Qwen3
// dense and tied-output files match the float64 reference; rule presets place every operator on
// the CPU here; progress is reported per tensor.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { loadModel } from '../../src/model/load.ts';
import { QWEN3MOE } from '../../src/model/qwen3moe.ts';
import { readGguf } from '../../src/formats/gguf-read.ts';
import { ReferenceModel } from '../reference/qwen3moe-f64.ts';
import { writeSmallModel, type SmallModelOptions } from './small-model.ts';

const ADDON = process.env.MIXTILE_ADDON ?? fileURLToPath(new URL('../../native/build/Release/mixtile.node', import.meta.url));
const skip = existsSync(ADDON) ? false : `native addon not built (${ADDON})`;
const PROMPT = [3, 141, 59, 26, 5, 35];

let dir: string;
let nFiles = 0;
async function make(o: SmallModelOptions): Promise<string> {
  const path = join(dir, `m${nFiles++}.gguf`);
  await writeSmallModel(path, o);
  return path;
}

/** Prefill PROMPT; max |diff| / std against the reference with kernel-style rounding, worst position. */
async function worstVsReference(path: string, rules?: string): Promise<number> {
  const model = await loadModel(path, { ctxSize: 16, kvType: 'f32', rules });
  try {
    const n = PROMPT.length;
    const got = model.forward({ tokens: Int32Array.from(PROMPT), positions: Int32Array.from(PROMPT.keys()), seqIds: new Int32Array(n), logitsFor: Int32Array.from(PROMPT.keys()) });
    const want = (await ReferenceModel.load(path)).forward(PROMPT, { roundActivations: true });
    const V = model.config.vocab;
    let worst = 0;
    want.forEach((w, p) => {
      let d = 0;
      let sq = 0;
      for (let v = 0; v < V; v++) {
        d = Math.max(d, Math.abs(got[p * V + v]! - w[v]!));
        sq += w[v]! * w[v]!;
      }
      const std = Math.sqrt(sq / V);
      assert.ok(std > 1, `position ${p}: logits too close to uniform (rms ${std})`);
      worst = Math.max(worst, d / std);
    });
    return worst;
  } finally {
    model.dispose();
  }
}

describe('loadModel', { skip }, () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mixtile-load-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('unsupported architecture names the supported ones', async () => {
    const path = await make({ meta: { 'general.architecture': 'llama' } });
    await assert.rejects(loadModel(path), /unsupported architecture "llama"; supported: qwen3moe \(Qwen3MoeForCausalLM\), qwen3 \(Qwen3ForCausalLM\)/);
  });

  test('missing tensor, wrong shape and missing key name what is wrong', async () => {
    await assert.rejects(loadModel(await make({ drop: ['blk.1.attn_k_norm.weight'] })), /tensor blk\.1\.attn_k_norm\.weight \(model\.layers\.1\.self_attn\.k_norm\) is missing/);
    await assert.rejects(
      loadModel(await make({ meta: { 'qwen3moe.attention.head_count': 8 } })),
      /tensor blk\.0\.attn_q\.weight \(model\.layers\.0\.self_attn\.q_proj\) has shape \[64, 128\], expected \[64, 256\]/,
    );
    await assert.rejects(loadModel(await make({ meta: { 'qwen3moe.expert_used_count': 9 } })), /expert_used_count 9 exceeds expert_count 6/);
  });

  test('bad options and batches are refused', async () => {
    const path = await make({});
    await assert.rejects(loadModel(path, { ctxSize: 0 }), /ctxSize must be a positive integer/);
    await assert.rejects(loadModel(path, { rules: 'no-such-preset.yaml' }));
    const model = await loadModel(path, { ctxSize: 4, nSeq: 2 });
    try {
      const one = (t: number, p: number, s: number) => ({ tokens: Int32Array.of(t), positions: Int32Array.of(p), seqIds: Int32Array.of(s), logitsFor: Int32Array.of(0) });
      assert.throws(() => model.forward(one(1, 0, 2)), /seqId 2, outside \[0, 2\)/);
      assert.throws(() => model.forward({ ...one(1, 0, 0), logitsFor: Int32Array.of(1) }), /logitsFor\[0\] = 1 outside the batch/);
      for (let p = 0; p < 4; p++) model.forward(one(1, p, 0));
      assert.throws(() => model.forward(one(1, 4, 0)), /would exceed the context of 4 tokens/);
      assert.equal(model.kv.length(0), 4);
      assert.throws(() => model.kv.copy(0, 1, 5), /nTokens 5 outside \[0, 4\]/);
    } finally {
      model.dispose();
    }
    assert.throws(() => model.forward({ tokens: Int32Array.of(1), positions: Int32Array.of(0), seqIds: Int32Array.of(1), logitsFor: Int32Array.of(0) }), /disposed/);
  });

  test('progress reaches every tensor once', async () => {
    const path = await make({});
    const seen: string[] = [];
    let total = 0;
    const model = await loadModel(path, {
      onProgress: (done, t, what) => {
        seen.push(what);
        total = t;
        assert.equal(done, seen.length);
      },
    });
    model.dispose();
    const g = await readGguf(path);
    assert.equal(total, g.tensors.size);
    assert.deepEqual([...seen].sort(), [...g.tensors.keys()].sort());
  });

  test('qwen3 dense, tied output, GQA group 4: logits match the reference', async () => {
    const dense = await worstVsReference(await make({ arch: 'qwen3', type: GgmlType.Q8_0 }));
    const tied = await worstVsReference(await make({ tied: true, nHeads: 8, nKvHeads: 2, type: GgmlType.BF16 }));
    console.log(`  qwen3 dense Q8_0 ${dense.toExponential(2)}, qwen3moe tied BF16 GQA 4 ${tied.toExponential(2)} (max |diff| / logit rms)`);
    assert.ok(dense < 1e-3 && tied < 1e-3);
  });

  test('rule presets: cpu and qwen3moe-hybrid (no GPU here: falls back to cpu) give the same logits', async () => {
    const path = await make({});
    const plain = await worstVsReference(path);
    assert.ok(plain < 1e-3);
    assert.equal(await worstVsReference(path, 'cpu'), plain);
    assert.equal(await worstVsReference(path, 'qwen3moe-hybrid'), plain);
    const warnings: string[] = [];
    const model = await loadModel(path, { rules: 'qwen3moe-hybrid', onWarning: (w) => warnings.push(w) });
    model.dispose();
    assert.ok(warnings.some((w) => /using cpu/.test(w)), 'the hybrid preset warns that it falls back to the CPU');
    console.log(`  qwen3moe-hybrid here: ${warnings.length} warnings, e.g. ${warnings[0] ?? '(none)'}`);
  });

  test('the module tree carries HF names for the rules', () => {
    const names = QWEN3MOE.modules({ ...baseConfig(), nLayers: 1 }).map((m) => m.name);
    for (const n of ['model.embed_tokens', 'model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.k_norm', 'model.layers.0.mlp.gate', 'model.layers.0.mlp.experts', 'model.norm', 'lm_head']) {
      assert.ok(names.includes(n), `module ${n} missing from the tree`);
    }
  });
});

function baseConfig() {
  return {
    architecture: 'qwen3moe',
    nLayers: 2,
    hidden: 64,
    nHeads: 4,
    nKvHeads: 2,
    headDim: 32,
    nExperts: 6,
    nExpertsUsed: 2,
    expertFfn: 96,
    ffn: 0,
    vocab: 320,
    ropeTheta: 1e6,
    rmsEps: 1e-6,
    contextLength: 4096,
    normTopKProb: true,
  };
}
