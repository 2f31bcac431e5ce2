import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ggufGlobal, ggufLayer, hfName } from './names.ts';

test('GGUF <-> HF names both ways', () => {
  assert.equal(ggufLayer(3, 'self_attn.q_proj'), 'blk.3.attn_q.weight');
  assert.equal(ggufLayer(0, 'mlp.experts.down_proj'), 'blk.0.ffn_down_exps.weight');
  assert.equal(ggufLayer(7, 'post_attention_layernorm'), 'blk.7.ffn_norm.weight');
  assert.equal(ggufGlobal('lm_head'), 'output.weight');
  assert.equal(ggufGlobal('model.embed_tokens'), 'token_embd.weight');
  assert.equal(hfName('blk.12.ffn_gate_inp.weight'), 'model.layers.12.mlp.gate.weight');
  assert.equal(hfName('blk.1.attn_k_norm.weight'), 'model.layers.1.self_attn.k_norm.weight');
  assert.equal(hfName('output_norm.weight'), 'model.norm.weight');
  assert.equal(hfName('blk.1.some_new_thing.weight'), undefined);
  assert.throws(() => ggufLayer(0, 'mlp.shared_expert'), /no GGUF name for module model\.layers\.0\.mlp\.shared_expert/);
});
