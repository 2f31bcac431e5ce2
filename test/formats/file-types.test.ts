// llama-quantize's per-tensor choices for Qwen3-MoE, checked against the layouts of published
// Qwen3-30B-A3B GGUFs (48 layers, 128 experts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tensorTypeFor, parseFileType, fileTypeName, LlamaFileType } from '../../src/formats/file-types.ts';
import { GgmlType } from '../../src/formats/ggml-types.ts';

const A3B = { nLayers: 48, nExperts: 128 };
const dims: Record<string, number[]> = {
  'token_embd.weight': [2048, 151936],
  'output.weight': [2048, 151936],
  'output_norm.weight': [2048],
  'blk.0.attn_norm.weight': [2048],
  'blk.0.attn_q_norm.weight': [128],
  'blk.0.ffn_gate_inp.weight': [2048, 128],
  'blk.0.attn_q.weight': [2048, 4096],
  'blk.0.attn_k.weight': [2048, 512],
  'blk.0.attn_output.weight': [4096, 2048],
  'blk.0.ffn_gate_exps.weight': [2048, 768, 128],
  'blk.0.ffn_up_exps.weight': [2048, 768, 128],
};
const at = (ft: LlamaFileType, name: string, ctx = A3B) =>
  GgmlType[tensorTypeFor(ft, name, { ...ctx, dims: dims[name] ?? (name.includes('down') ? [768, 2048, 128] : [2048, 512]) })];

test('Q4_K_M: Q6_K for attn_v and ffn_down_exps in the use_more_bits layers, Q6_K output', () => {
  const q6 = [];
  for (let i = 0; i < 48; i++) {
    const v = at(LlamaFileType.MOSTLY_Q4_K_M, `blk.${i}.attn_v.weight`);
    assert.equal(at(LlamaFileType.MOSTLY_Q4_K_M, `blk.${i}.ffn_down_exps.weight`), v, `layer ${i}`);
    if (v === 'Q6_K') q6.push(i);
    else assert.equal(v, 'Q4_K');
  }
  // first and last eighth (6 layers each) plus every third layer in between starting at 8
  assert.deepEqual(q6, [0, 1, 2, 3, 4, 5, 8, 11, 14, 17, 20, 23, 26, 29, 32, 35, 38, 41, 42, 43, 44, 45, 46, 47]);
  assert.equal(at(LlamaFileType.MOSTLY_Q4_K_M, 'output.weight'), 'Q6_K');
  assert.equal(at(LlamaFileType.MOSTLY_Q4_K_M, 'token_embd.weight'), 'Q4_K');
  for (const n of ['blk.0.attn_q.weight', 'blk.0.attn_k.weight', 'blk.0.attn_output.weight', 'blk.0.ffn_gate_exps.weight', 'blk.0.ffn_up_exps.weight']) {
    assert.equal(at(LlamaFileType.MOSTLY_Q4_K_M, n), 'Q4_K', n);
  }
});

test('norms, 1-D tensors and the router stay F32 in every mix', () => {
  for (const ft of [LlamaFileType.MOSTLY_BF16, LlamaFileType.MOSTLY_Q8_0, LlamaFileType.MOSTLY_Q4_K_M, LlamaFileType.MOSTLY_F16]) {
    for (const n of ['output_norm.weight', 'blk.0.attn_norm.weight', 'blk.0.attn_q_norm.weight', 'blk.0.ffn_gate_inp.weight']) {
      assert.equal(at(ft, n), 'F32', `${fileTypeName(ft)} ${n}`);
    }
  }
  assert.equal(at(LlamaFileType.MOSTLY_BF16, 'blk.3.ffn_down_exps.weight'), 'BF16');
  assert.equal(at(LlamaFileType.MOSTLY_BF16, 'output.weight'), 'BF16');
});

test('other mixes: Q8_0, Q6_K, Q5_K_M, Q4_K_S', () => {
  assert.equal(at(LlamaFileType.MOSTLY_Q8_0, 'output.weight'), 'Q8_0');
  assert.equal(at(LlamaFileType.MOSTLY_Q8_0, 'blk.0.attn_v.weight'), 'Q8_0');
  assert.equal(at(LlamaFileType.MOSTLY_Q6_K, 'blk.9.ffn_down_exps.weight'), 'Q6_K');
  assert.equal(at(LlamaFileType.MOSTLY_Q5_K_M, 'blk.8.ffn_down_exps.weight'), 'Q6_K');
  assert.equal(at(LlamaFileType.MOSTLY_Q5_K_M, 'blk.9.ffn_down_exps.weight'), 'Q5_K');
  assert.equal(at(LlamaFileType.MOSTLY_Q4_K_S, 'blk.3.attn_v.weight'), 'Q5_K');
  assert.equal(at(LlamaFileType.MOSTLY_Q4_K_S, 'blk.4.attn_v.weight'), 'Q4_K');
  assert.equal(at(LlamaFileType.MOSTLY_Q4_K_S, 'blk.5.ffn_down_exps.weight'), 'Q5_K');
  assert.equal(at(LlamaFileType.MOSTLY_Q4_K_S, 'blk.6.ffn_down_exps.weight'), 'Q4_K');
});

test('8-expert models get Q8_0 attn_v/attn_k and Q5_K attn_output (llama.cpp Mixtral rule)', () => {
  const tiny = { nLayers: 2, nExperts: 8 };
  assert.equal(at(LlamaFileType.MOSTLY_Q4_K_M, 'blk.1.attn_v.weight', tiny), 'Q8_0');
  assert.equal(at(LlamaFileType.MOSTLY_Q4_K_M, 'blk.1.attn_k.weight', tiny), 'Q8_0');
  assert.equal(at(LlamaFileType.MOSTLY_Q4_K_M, 'blk.0.attn_output.weight', tiny), 'Q5_K');
});

test('rows not a multiple of 256 fall back like llama.cpp', () => {
  const ctx = { ...A3B, dims: [100 * 32, 64] };
  assert.equal(tensorTypeFor(LlamaFileType.MOSTLY_Q4_K_M, 'blk.1.attn_q.weight', { ...ctx, dims: [96, 64] }), GgmlType.Q5_0);
  assert.equal(tensorTypeFor(LlamaFileType.MOSTLY_Q4_K_M, 'blk.0.ffn_down_exps.weight', { ...ctx, dims: [96, 64, 8] }), GgmlType.Q8_0);
  assert.equal(tensorTypeFor(LlamaFileType.MOSTLY_Q5_K_S, 'blk.1.attn_q.weight', { ...ctx, dims: [96, 64] }), GgmlType.Q5_1);
  assert.equal(tensorTypeFor(LlamaFileType.MOSTLY_Q4_K_M, 'blk.1.attn_q.weight', { ...ctx, dims: [100, 64] }), GgmlType.F16);
  assert.equal(tensorTypeFor(LlamaFileType.MOSTLY_Q4_K_M, 'output.weight', { ...ctx, dims: [96, 64] }), GgmlType.Q8_0);
});

test('tied embeddings: token_embd takes the output head rule', () => {
  const ctx = { ...A3B, dims: [2048, 151936], tiedEmbeddings: true };
  assert.equal(tensorTypeFor(LlamaFileType.MOSTLY_Q4_K_M, 'token_embd.weight', ctx), GgmlType.Q6_K);
  assert.equal(tensorTypeFor(LlamaFileType.MOSTLY_Q4_K_M, 'token_embd.weight', { ...ctx, tiedEmbeddings: false }), GgmlType.Q4_K);
});

test('file type names', () => {
  assert.equal(parseFileType('q4_k_m'), LlamaFileType.MOSTLY_Q4_K_M);
  assert.equal(fileTypeName(32), 'BF16');
  assert.throws(() => parseFileType('Q3_K'), /unknown file type "Q3_K" \(known: F32, F16, BF16/);
});
