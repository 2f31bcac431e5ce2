// The GPU + CPU hybrid forward (rules qwen3moe-hybrid: attention, norms, router, lm_head and the KV cache
// on the GPU, routed experts on the CPU) against the all-CPU forward of the same file: logits of every
// position agree within the rounding of BF16 weights on the GPU side, through prefill, decode, several
// interleaved sequences, KV slot copies (the prefix cache), ubatch chunking and a dense Qwen3 with every
// operator on the GPU. And the GPU path is really taken (the context's counters).
//
// Runs on a GPU (libmixtile-cuda.so) or, where there is none, on libmixtile-cuda-host.so, the CPU
// stand-in with the same C ABI (MIXTILE_CUDA_LIB picks either explicitly); skips when neither loads.
//
// Differences: position 0 attends only to itself and matches to float rounding; later positions differ
// by the GPU attention's rounding of q and the softmax weights to 16 bits, as llama.cpp's do (its test
// against us allows 0.06 x logit std at BF16; measured here: see LIMIT).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GgmlType } from '../../src/formats/ggml-types.ts';
import { cudaInfo } from '../../src/native/cuda.ts';
import { loadModel } from '../../src/model/load.ts';
import { synthModel } from '../../src/model/synth.ts';
import type { ForwardBatch, LoadedModel, LoadOptions } from '../../src/model/types.ts';
import { writeSmallModel } from './small-model.ts';

const ADDON = process.env.MIXTILE_ADDON ?? fileURLToPath(new URL('../../native/build/Release/mixtile.node', import.meta.url));
const STAND_IN = join(dirname(ADDON), 'libmixtile-cuda-host.so');

/** Why the test cannot run here, or false. The real library where a GPU driver exists, else the stand-in. */
function skipReason(): string | false {
  if (!existsSync(ADDON)) return `native addon not built (${ADDON})`;
  const lib = process.env.MIXTILE_CUDA_LIB ?? (existsSync('/dev/nvidiactl') ? undefined : STAND_IN);
  const info = cudaInfo(lib);
  return info.available ? false : `no GPU and no CUDA stand-in: ${info.reason}`;
}
const skip = skipReason();

/** max |diff| / std of the CPU logits, per row; also whether top-1 agrees unless the CPU's best two nearly tie. */
const LIMIT = 0.06;
const TIE = 0.01;
function compare(want: Float32Array, got: Float32Array, vocab: number, what: string): number {
  assert.equal(got.length, want.length, `${what}: logits length`);
  let worst = 0;
  for (let r = 0; r < want.length / vocab; r++) {
    let sq = 0;
    let d = 0;
    let best = 0;
    let second = -Infinity;
    let bestG = 0;
    for (let v = 0; v < vocab; v++) {
      const w = want[r * vocab + v]!;
      const g = got[r * vocab + v]!;
      sq += w * w;
      d = Math.max(d, Math.abs(w - g));
      if (w > want[r * vocab + best]!) {
        second = want[r * vocab + best]!;
        best = v;
      } else if (v !== best && w > second) second = w;
      if (g > got[r * vocab + bestG]!) bestG = v;
    }
    const std = Math.sqrt(sq / vocab);
    assert.ok(std > 1, `${what} row ${r}: logits too close to uniform (rms ${std})`);
    assert.ok(Number.isFinite(d) && d <= LIMIT * std, `${what} row ${r}: max |diff| ${d.toFixed(4)} > ${LIMIT} x std ${std.toFixed(3)}`);
    const gap = want[r * vocab + best]! - second;
    assert.ok(bestG === best || want[r * vocab + best]! - want[r * vocab + bestG]! <= TIE * std, `${what} row ${r}: top-1 ${bestG}, CPU ${best} (CPU gap ${gap.toFixed(4)})`);
    worst = Math.max(worst, d / std);
  }
  return worst;
}

const batch = (tokens: number[], positions: number[], seqIds: number[], logitsFor: number[]): ForwardBatch => ({
  tokens: Int32Array.from(tokens),
  positions: Int32Array.from(positions),
  seqIds: Int32Array.from(seqIds),
  logitsFor: Int32Array.from(logitsFor),
});
const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

describe('hybrid forward (GPU + CPU) vs the CPU forward', { skip }, () => {
  let dir: string;
  let tiny: string;
  let worst = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mixtile-hybrid-'));
    tiny = join(dir, 'tiny-bf16.gguf');
    await synthModel({ preset: 'tiny', out: tiny, fileType: 'BF16', seed: 7 });
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    console.log(`  worst max|diff|/std over every comparison: ${worst.toExponential(2)} (limit ${LIMIT})`);
  });

  /** Runs the same batches through both models, comparing each step's logits. */
  async function both(path: string, opts: LoadOptions, rules: string, steps: (run: (b: ForwardBatch, what: string) => void, kv: (f: (m: LoadedModel) => void) => void) => void): Promise<LoadedModel['gpu']> {
    const cpu = await loadModel(path, opts);
    const hyb = await loadModel(path, { ...opts, rules });
    try {
      assert.ok(hyb.gpu, 'the hybrid model has a GPU context');
      const V = cpu.config.vocab;
      steps(
        (b, what) => {
          worst = Math.max(worst, compare(cpu.forward(b), hyb.forward(b), V, what));
        },
        (f) => {
          f(cpu);
          f(hyb);
        },
      );
      const stats = hyb.gpu.stats();
      return { ...hyb.gpu, stats: () => stats };
    } finally {
      cpu.dispose();
      hyb.dispose();
    }
  }

  test('prefill then decode of one sequence; the GPU path is taken', async () => {
    const prompt = [9707, 11, 1879, 0, 151643, 33, 77091, 3838, 374];
    const gpu = await both(tiny, { ctxSize: 64, nSeq: 1 }, 'qwen3moe-hybrid', (run) => {
      run(batch(prompt, range(0, prompt.length), prompt.map(() => 0), range(0, prompt.length)), 'prefill');
      for (let p = prompt.length, t = 42; p < prompt.length + 6; p++, t = (t * 7919 + 13) % 151000) run(batch([t], [p], [0], [0]), `decode at ${p}`);
    });
    const s = gpu!.stats();
    // 2 layers: attention and MoE router on the GPU every step, experts on the CPU for every token.
    assert.equal(s.forwards, 7);
    assert.equal(s.attention, 14);
    assert.equal(s.moe, 14);
    assert.equal(s.expertsCpuTokens, 2 * (9 + 6));
    assert.equal(s.lmHeadRows, 9 + 6);
    assert.ok(s.kvBytes > 0);
    // The preset also gives each layer's experts the GPU for prefill (split with the CPU by the cost model).
    assert.equal(gpu!.operators, 3 * 2 + 1, 'attention, MoE block and experts per layer, and lm_head');
    if (process.env.MIXTILE_GPU_GRAPHS !== '0') {
      // Each one-token step replays two graphs per layer (attention; norm + router), captured once each.
      assert.equal(s.graphLaunches, 6 * 2 * 2);
      assert.equal(s.graphsCaptured, 2 * 2);
      assert.equal(s.graphCaptureFailures, 0);
    }
  });

  test('decode graphs: one-token steps of two slots, across a context-length bucket (256)', async () => {
    const gpu = await both(tiny, { ctxSize: 300, nSeq: 2 }, 'qwen3moe-hybrid', (run) => {
      const prompt = range(1000, 1254);
      run(batch(prompt, range(0, 254), prompt.map(() => 0), [253]), 'long prompt in slot 0');
      run(batch([5, 6], [0, 1], [1, 1], [1]), 'short prompt in slot 1');
      for (let p = 254, q = 2; p < 260; p++, q++) {
        run(batch([p % 97], [p], [0], [0]), `slot 0 decode at ${p}`);
        run(batch([q * 3], [q], [1], [0]), `slot 1 decode at ${q}`);
      }
    });
    const s = gpu!.stats();
    if (process.env.MIXTILE_GPU_GRAPHS !== '0') {
      // Attention graphs: slot 0 at bounds 256 and 300 (the context), slot 1 at 256; the router graph is shared.
      assert.equal(s.graphsCaptured, 2 * (3 + 1));
      assert.equal(s.graphLaunches, 12 * 2 * 2);
    }
  });

  test('interleaved sequences: one-token runs, a prefill run beside decodes, a sequence twice in a batch', async () => {
    const gpu = await both(tiny, { ctxSize: 64, nSeq: 3 }, 'qwen3moe-hybrid', (run) => {
      // Alternating tokens of slots 0 and 1: every run is one token (decode groups), yet slot 0's second
      // token must see its first, stored in the same batch.
      run(batch([11, 500, 12, 501, 13, 502], [0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], range(0, 6)), 'alternating');
      // Slot 2 prefills 5 tokens while slots 0 and 1 decode, in one batch.
      run(batch([7, 900, 901, 902, 903, 904, 8], [3, 0, 1, 2, 3, 4, 3], [0, 2, 2, 2, 2, 2, 1], [0, 5, 6]), 'prefill beside decodes');
      run(batch([20, 21, 22], [4, 5, 4], [0, 2, 1], [0, 1, 2]), 'three decodes');
    });
    if (process.env.MIXTILE_GPU_GRAPHS !== '0') {
      // Batches with one token per sequence run as graphs (keyed by their slots), the mixed one does not.
      const st = gpu!.stats();
      assert.equal(st.graphLaunches, 2 * 2 * 2);
      assert.equal(st.graphCaptureFailures, 0);
    }
  });

  test('KV slot copy (prefix cache) and truncate, then each slot continues differently', async () => {
    await both(tiny, { ctxSize: 64, nSeq: 2 }, 'qwen3moe-hybrid', (run, kv) => {
      const prompt = range(100, 112);
      run(batch(prompt, range(0, 12), prompt.map(() => 0), [11]), 'prompt');
      kv((m) => m.kv.copy(0, 1, 8));
      run(batch([300, 301, 302], [8, 9, 10], [1, 1, 1], [0, 1, 2]), 'slot 1 after copying 8 positions');
      kv((m) => m.kv.truncate(0, 5));
      run(batch([400, 401], [5, 6], [0, 0], [0, 1]), 'slot 0 after truncating to 5');
      run(batch([410, 303], [7, 11], [0, 1], [0, 1]), 'both decode');
    });
  });

  test('ubatch chunking: a long prompt runs through every layer in chunks of 4', async () => {
    await both(tiny, { ctxSize: 64, nSeq: 1, ubatch: 4 }, 'qwen3moe-hybrid', (run) => {
      const prompt = range(2000, 2014);
      run(batch(prompt, range(0, 14), prompt.map(() => 0), [13, 0, 5, 9]), 'chunked prefill, rows out of order');
      run(batch([77], [14], [0], [0]), 'decode after chunks');
    });
  });

  test('dense Qwen3 with every operator on the GPU, embedding gathered there too', async () => {
    const path = join(dir, 'dense.gguf');
    await writeSmallModel(path, { arch: 'qwen3', type: GgmlType.BF16, hidden: 128, nHeads: 4, nKvHeads: 2, headDim: 64, ffn: 192, vocab: 320, nLayers: 2, seed: 3 });
    const rules = join(dir, 'all-gpu.yaml');
    writeFileSync(rules, '- match:\n    name: "^"\n  replace:\n    class: Default\n    kwargs: { prefill_device: cuda, generate_device: cuda }\n');
    const gpu = await both(path, { ctxSize: 32, nSeq: 2 }, rules, (run) => {
      run(batch([3, 141, 59, 26, 5, 35], range(0, 6), [0, 0, 0, 0, 0, 0], range(0, 6)), 'prefill');
      run(batch([7, 300], [6, 0], [0, 1], [0, 1]), 'decode beside a new sequence');
    });
    const s = gpu!.stats();
    assert.equal(s.mlp, 4);
    assert.equal(s.embedTokens, 8);
    assert.equal(s.expertsCpuTokens, 0);
  });

  test('mixed placement: layer 1 attention and lm_head on the CPU, the rest on the GPU (x crosses over mid-model)', async () => {
    const rules = join(dir, 'mixed.yaml');
    writeFileSync(
      rules,
      [
        '- match:\n    name: "^model\\\\.layers\\\\.1\\\\.self_attn$"\n  replace:\n    class: Attention\n    kwargs: { prefill_device: cpu, generate_device: cpu }',
        '- match:\n    name: "^lm_head$"\n  replace:\n    class: LMHead\n    kwargs: { prefill_device: cpu, generate_device: cpu }',
        '- match:\n    name: "^model\\\\.layers\\\\.\\\\d+\\\\.mlp\\\\.experts$"\n  replace:\n    class: Experts\n    kwargs: { prefill_device: cpu, generate_device: cpu }\n  recursive: false',
        '- match:\n    name: "^"\n  replace:\n    class: Default\n    kwargs: { prefill_device: cuda, generate_device: cuda }',
      ].join('\n') + '\n',
    );
    const gpu = await both(tiny, { ctxSize: 32, nSeq: 2 }, rules, (run, kv) => {
      run(batch([9707, 11, 1879, 0, 33], range(0, 5), [0, 0, 0, 0, 0], range(0, 5)), 'prefill');
      kv((m) => m.kv.copy(0, 1, 3));
      run(batch([77, 78], [5, 3], [0, 1], [0, 1]), 'decode in both slots after a copy');
      run(batch([79], [6], [0], [0]), 'one-token step');
    });
    const s = gpu!.stats();
    assert.equal(s.attention, 3, 'only layer 0 attention on the GPU');
    assert.equal(s.moe, 6);
    assert.equal(s.lmHeadRows, 0);
    assert.equal(gpu!.operators, 1 + 2 + 1, 'layer 0 attention, both MoE blocks, the embedding (Default rule)');
  });

  test('K-quant weights are dequantized on the GPU at load (Q4_K_M mix)', async () => {
    const path = join(dir, 'tiny-q4km.gguf');
    await synthModel({ preset: 'tiny', out: path, fileType: 'Q4_K_M', seed: 9 });
    const cpu = await loadModel(path, { ctxSize: 32 });
    const hyb = await loadModel(path, { ctxSize: 32, rules: 'qwen3moe-hybrid' });
    try {
      const b = batch([9707, 11, 1879, 0, 33], range(0, 5), [0, 0, 0, 0, 0], [0, 4]);
      const want = cpu.forward(b);
      const got = hyb.forward(b);
      // The CPU path quantizes activations to 8 bits for K-quant dot products; the GPU uses BF16 activations
      // on the dequantized weights. Position 0 (no attention rounding) shows the weights agree.
      const V = cpu.config.vocab;
      let d = 0;
      let sq = 0;
      for (let v = 0; v < V; v++) {
        d = Math.max(d, Math.abs(want[v]! - got[v]!));
        sq += want[v]! ** 2;
      }
      assert.ok(d <= 0.1 * Math.sqrt(sq / V), `position 0: max |diff| ${d} > 0.1 x std ${Math.sqrt(sq / V)}`);
    } finally {
      cpu.dispose();
      hyb.dispose();
    }
  });

  /** The same file loaded twice under `rules`, with MIXTILE_GPU_WEIGHTS=bf16 and =quantized; each batch's logits compared. */
  async function quantizedVsBf16(path: string, opts: LoadOptions, rules: string, batches: Array<[ForwardBatch, string]>) {
    const prev = process.env.MIXTILE_GPU_WEIGHTS;
    const load = async (mode: string): Promise<LoadedModel> => {
      process.env.MIXTILE_GPU_WEIGHTS = mode;
      try {
        return await loadModel(path, { ...opts, rules });
      } finally {
        if (prev === undefined) delete process.env.MIXTILE_GPU_WEIGHTS;
        else process.env.MIXTILE_GPU_WEIGHTS = prev;
      }
    };
    const bf = await load('bf16');
    // Device bytes this process holds (the library's count): with only the bf16 model, then with both.
    const liveBf = bf.gpu!.stats().vramAllocatedBytes;
    const q = await load('quantized');
    const liveBoth = q.gpu!.stats().vramAllocatedBytes;
    try {
      for (const [b, what] of batches) worst = Math.max(worst, compare(bf.forward(b), q.forward(b), bf.config.vocab, `quantized vs bf16: ${what}`));
      const own = liveBf !== undefined && liveBoth !== undefined ? { bf16: liveBf, quantized: liveBoth - liveBf } : undefined;
      return { bf16: bf.gpu!.stats(), quantized: q.gpu!.stats(), own };
    } finally {
      bf.dispose();
      q.dispose();
    }
  }

  test('MIXTILE_GPU_WEIGHTS=quantized: Q4_K / Q6_K attention and lm_head read as stored (GEMV for one token and the logit rows, BF16 scratch for a prefill) match the BF16 copies, in less VRAM', async () => {
    const path = join(dir, 'tiny-q4km-quantized.gguf');
    await synthModel({ preset: 'tiny', out: path, fileType: 'Q4_K_M', seed: 11 });
    const prompt = [9707, 11, 1879, 0, 151643, 33, 77091, 3838, 374, 42];
    const s = await quantizedVsBf16(path, { ctxSize: 64, nSeq: 1 }, 'qwen3moe-hybrid', [
      // 10 logit rows: the lm_head GEMV's two passes of 8 rows of x.
      [batch(prompt, range(0, 10), prompt.map(() => 0), range(0, 10)), 'prefill, every row'],
      [batch([500], [10], [0], [0]), 'decode at 10'],
      [batch([77], [11], [0], [0]), 'decode at 11'],
    ]);
    // The tiny model's lm_head is Q6_K in the file: 0.82 bytes a weight instead of BF16's 2 (the cuBLAS workspace,
    // KV and ubatch buffers are the same in both; measured on the stand-in: 113 vs 159 MB).
    assert.ok(s.own, 'the library reports the device bytes it allocated');
    assert.ok(s.own.quantized < 0.8 * s.own.bf16, `device bytes quantized ${s.own.quantized} vs bf16 ${s.own.bf16}`);
  });

  test('MIXTILE_GPU_WEIGHTS=quantized: a dense Q8_0 Qwen3 all on the GPU (two-part gate/up, down with K = 192, a partial tile) matches the BF16 copies', async () => {
    const path = join(dir, 'dense-q8.gguf');
    await writeSmallModel(path, { arch: 'qwen3', type: GgmlType.Q8_0, hidden: 128, nHeads: 4, nKvHeads: 2, headDim: 64, ffn: 192, vocab: 320, nLayers: 2, seed: 5 });
    const rules = join(dir, 'all-gpu-q8.yaml');
    writeFileSync(rules, '- match:\n    name: "^"\n  replace:\n    class: Default\n    kwargs: { prefill_device: cuda, generate_device: cuda }\n');
    const s = await quantizedVsBf16(path, { ctxSize: 32, nSeq: 2 }, rules, [
      [batch([3, 141, 59, 26, 5, 35], range(0, 6), [0, 0, 0, 0, 0, 0], range(0, 6)), 'prefill'],
      [batch([7], [6], [0], [0]), 'decode'],
      [batch([7, 300], [7, 0], [0, 1], [0, 1]), 'decode beside a new sequence'],
    ]);
    assert.equal(s.quantized.mlp, 6);
  });

  test('a placement that does not fit the GPU is refused before loading, saying what to lower', async () => {
    // K and V x 2 layers x 1024 slots x 400000 positions x 2 kv heads x 64 x 2 bytes = 391 GiB of KV cache:
    // more than any GPU has (and the stand-in offers 8 GiB).
    await assert.rejects(
      loadModel(tiny, { ctxSize: 400_000, nSeq: 1024, rules: 'qwen3moe-hybrid' }),
      (e: Error) => /the placement needs .*KV cache 390\.63 GiB.* short\. To fit: lower --ctx-size/.test(e.message) || assert.fail(e.message),
    );
  });

  test('rules that split an operator across devices are refused with the module named', async () => {
    const rules = join(dir, 'split.yaml');
    writeFileSync(rules, '- match:\n    name: "^model\\\\.layers\\\\.0\\\\.self_attn$"\n  replace:\n    class: Attention\n    kwargs: { prefill_device: cuda, generate_device: cpu }\n');
    await assert.rejects(loadModel(tiny, { ctxSize: 16, rules }), /model\.layers\.0\.self_attn: prefill_device cuda:0 and generate_device cpu differ/);
    const experts = join(dir, 'experts-gpu.yaml');
    writeFileSync(experts, '- match:\n    name: "^model\\\\.layers\\\\.\\\\d+\\\\.mlp\\\\.experts$"\n  replace:\n    class: Experts\n    kwargs: { generate_device: cuda }\n  recursive: false\n');
    await assert.rejects(loadModel(tiny, { ctxSize: 16, rules: experts }), /mlp\.experts: generate_device cuda:0: the routed experts stay in RAM/);
  });
});
