"""Builds random-weight Qwen3MoeForCausalLM models with HF transformers, saves each as a checkpoint
folder (config.json, model.safetensors in the classic per-expert layout, the real Qwen3 tokenizer
files) and writes transformers' own logits for a fixed token sequence beside it.

Weights are rescaled from HF's N(0, 0.02) init so logits are far from uniform (std of a few units):
projections N(0, 1/fan_in), norms 1 + N(0, 0.1), embeddings N(0, 1), router N(0, 4/hidden), lm_head
N(0, 9/hidden). The forward runs in float32 on the bf16-rounded weights the checkpoint holds, so a
converter that keeps bf16 (or widens to f32) sees exactly the weights transformers used.

usage: python3 hf_reference.py OUT_DIR TOKENIZER_DIR
"""
import json, math, os, shutil, sys
import torch
from safetensors.torch import save_file
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
import transformers

CONFIGS = {
    # CI-sized: same dims as `mixtile synth --preset tiny`.
    "tiny": dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                 num_experts=8, num_experts_per_tok=2, moe_intermediate_size=256, intermediate_size=512),
    # Qwen3-30B-A3B layer shapes, 2 layers.
    "a3b-2l": dict(hidden_size=2048, num_hidden_layers=2, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                   num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768, intermediate_size=6144),
}


def rescale(model, hidden):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.normal_(0, 1.0)
            elif "lm_head" in name:
                p.normal_(0, 3 / math.sqrt(hidden))
            elif name.endswith("mlp.gate.weight"):
                p.normal_(0, 2 / math.sqrt(hidden))
            else:
                p.normal_(0, 1 / math.sqrt(p.shape[-1]))


def classic_state_dict(model, cfg):
    """Per-expert keys (model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight) whatever layout this
    transformers version keeps in memory (newer versions fuse experts into 3-D gate_up_proj/down_proj)."""
    out = {}
    for k, v in model.state_dict().items():
        v = v.to(torch.bfloat16).contiguous()
        if k.endswith("mlp.experts.gate_up_proj"):
            pre = k[: -len("gate_up_proj")]
            inter = cfg.moe_intermediate_size
            # [E, 2*I, H] (gate rows first) or [E, H, 2*I] depending on version: normalise to [E, 2*I, H].
            if v.shape[1] != 2 * inter:
                v = v.transpose(1, 2)
            for e in range(v.shape[0]):
                out[f"{pre}{e}.gate_proj.weight"] = v[e, :inter].contiguous()
                out[f"{pre}{e}.up_proj.weight"] = v[e, inter:].contiguous()
        elif k.endswith("mlp.experts.down_proj"):
            pre = k[: -len("down_proj")]
            if v.shape[1] != cfg.hidden_size:
                v = v.transpose(1, 2)
            for e in range(v.shape[0]):
                out[f"{pre}{e}.down_proj.weight"] = v[e].contiguous()
        else:
            out[k] = v
    return out


def main():
    out_root, tok_dir = sys.argv[1], sys.argv[2]
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for name, dims in CONFIGS.items():
        torch.manual_seed(1234)
        cfg = Qwen3MoeConfig(vocab_size=151936, rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=4096,
                             tie_word_embeddings=False, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                             attention_bias=False, **dims)
        model = Qwen3MoeForCausalLM(cfg)
        rescale(model, cfg.hidden_size)
        model = model.to(torch.bfloat16).float().eval()  # the exact bf16 weights, computed in float32
        d = os.path.join(out_root, name)
        os.makedirs(d, exist_ok=True)
        cfg.architectures = ["Qwen3MoeForCausalLM"]
        cfg.to_json_file(os.path.join(d, "config.json"))
        # Newer transformers write some keys under new names (e.g. rope_parameters); published Qwen3
        # checkpoints carry the classic ones, so make sure they are there too.
        cj = json.load(open(os.path.join(d, "config.json")))
        cj.setdefault("num_experts", dims["num_experts"])
        cj.setdefault("rope_theta", 1e6)
        cj.setdefault("norm_topk_prob", True)
        print(f"{name}: config keys {sorted(cj)}")
        json.dump(cj, open(os.path.join(d, "config.json"), "w"), indent=2)
        save_file(classic_state_dict(model, cfg), os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tok_dir, f), d)
        g = torch.Generator().manual_seed(7)
        tokens = torch.randint(0, 151643, (1, 40), generator=g)
        with torch.no_grad():
            logits = model(tokens).logits[0].float().contiguous()
        logits.numpy().tofile(os.path.join(d, "hf-logits.f32"))
        json.dump({"tokens": tokens[0].tolist(), "vocab": cfg.vocab_size}, open(os.path.join(d, "hf-tokens.json"), "w"))
        print(f"{name}: saved {d}; logits std {logits.std().item():.3f}, top-1 of last {logits[-1].argmax().item()}")


if __name__ == "__main__":
    main()
