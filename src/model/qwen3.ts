// Qwen3 dense (GGUF "qwen3", HF Qwen3ForCausalLM): Qwen3-MoE with a SwiGLU MLP in place of the
// MoE block; config, module tree, tensors and forward are shared with qwen3moe.ts.
import type { Architecture } from './architecture.ts';
import { buildQwen3, qwen3Modules, qwen3Tensors, readQwen3Config } from './qwen3moe.ts';

export const QWEN3: Architecture = {
  ggufName: 'qwen3',
  hfClass: 'Qwen3ForCausalLM',
  readConfig: (gguf) => readQwen3Config(gguf, false),
  modules: (c) => qwen3Modules(c, false),
  tensors: (c) => qwen3Tensors(c, false),
  build: (c, w, kw, gpu) => buildQwen3(c, false, w, kw, gpu),
};
