// Shared fixtures for the rule tests: machines described by hand, and a tiny Qwen3-MoE module tree
// named and classed as src/model/qwen3moe.ts gives it to the rules engine.
import type { Hardware } from '../../src/optimize/hardware.ts';
import type { ModuleInfo } from '../../src/optimize/rules.ts';

export function fakeHardware(opts: { amx?: boolean; avx512?: boolean; gpus?: number; amxDenied?: boolean } = {}): Hardware {
  const { amx = false, avx512 = amx, gpus = 0 } = opts;
  return {
    cpu: {
      model: amx ? 'Intel(R) Xeon(R) Platinum 8480+' : 'AMD Ryzen 9 7950X',
      physicalCores: 16,
      logicalCores: 32,
      flags: {
        avx2: true,
        avx512f: avx512,
        avx512bw: avx512,
        avx512vl: avx512,
        avx512Vnni: avx512,
        avx512Bf16: avx512,
        amxTile: amx,
        amxBf16: amx,
        amxInt8: amx,
      },
      amxPermission: amx ? (opts.amxDenied ? 'denied' : 'granted') : 'not-needed',
    },
    memory: { totalBytes: 256 * 2 ** 30, availableBytes: 200 * 2 ** 30 },
    gpus: Array.from({ length: gpus }, (_, index) => ({ index, name: 'NVIDIA RTX 4090', memoryTotalBytes: 24 * 2 ** 30, memoryFreeBytes: 23 * 2 ** 30 })),
    ...(gpus ? { cudaDriver: '550.54' } : { gpuNote: 'nvidia-smi not found, so no NVIDIA driver is installed' }),
  };
}

const HF = 'ktransformers.models.modeling_qwen3_moe.Qwen3Moe';

/** Qwen3-MoE modules of `nLayers` layers, in the tree order the model gives them. */
export function qwen3MoeModules(nLayers = 2): ModuleInfo[] {
  const out: ModuleInfo[] = [
    { name: 'model', className: `${HF}Model` },
    { name: 'model.embed_tokens', className: 'torch.nn.Embedding' },
  ];
  for (let i = 0; i < nLayers; i++) {
    const l = `model.layers.${i}`;
    out.push(
      { name: l, className: `${HF}DecoderLayer` },
      { name: `${l}.input_layernorm`, className: `${HF}RMSNorm` },
      { name: `${l}.self_attn`, className: `${HF}Attention` },
      { name: `${l}.self_attn.q_proj`, className: 'torch.nn.Linear' },
      { name: `${l}.self_attn.o_proj`, className: 'torch.nn.Linear' },
      { name: `${l}.self_attn.q_norm`, className: `${HF}RMSNorm` },
      { name: `${l}.self_attn.rotary_emb`, className: `${HF}RotaryEmbedding` },
      { name: `${l}.post_attention_layernorm`, className: `${HF}RMSNorm` },
      { name: `${l}.mlp`, className: `${HF}SparseMoeBlock` },
      { name: `${l}.mlp.gate`, className: 'torch.nn.Linear' },
      { name: `${l}.mlp.experts`, className: 'torch.nn.ModuleList' },
      { name: `${l}.mlp.experts.0`, className: `${HF}MLP` },
      { name: `${l}.mlp.experts.0.gate_proj`, className: 'torch.nn.Linear' },
    );
  }
  out.push({ name: 'model.norm', className: `${HF}RMSNorm` }, { name: 'lm_head', className: 'torch.nn.Linear' });
  return out;
}
