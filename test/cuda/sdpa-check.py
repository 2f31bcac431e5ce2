# Checks libmixtile-cuda's attention (prefill and decode) against PyTorch's
# torch.nn.functional.scaled_dot_product_attention on the GPU machine, through ctypes.
# Usage: python3 test/cuda/sdpa-check.py /tmp/mxc/lib/libmixtile-cuda.so
import ctypes as C
import math
import sys

import torch
import torch.nn.functional as F

lib = C.CDLL(sys.argv[1])
lib.mxc_last_error.restype = C.c_char_p
lib.mxc_attention_decode_workspace_bytes.restype = C.c_size_t
lib.mxc_attention_decode_workspace_bytes.argtypes = [C.c_int64, C.c_int, C.c_int, C.c_int64]
MXC_F16, MXC_BF16 = 1, 30


class KvLayer(C.Structure):
    _fields_ = [("k", C.c_void_p), ("v", C.c_void_p), ("type", C.c_int), ("n_seq", C.c_int),
                ("capacity", C.c_int64), ("kv_heads", C.c_int), ("head_dim", C.c_int)]


def check(st, what):
    if st != 0:
        raise RuntimeError(f"{what}: status {st}: {lib.mxc_last_error().decode()}")


def p(t):
    return C.c_void_p(t.data_ptr())


worst = 0.0
torch.manual_seed(0)
for (T, H, KVH, D, dt) in [(1000, 32, 4, 128, torch.bfloat16), (77, 16, 2, 64, torch.float16), (2048, 32, 4, 128, torch.float16)]:
    dev = "cuda"
    q = torch.randn(T, H, D, device=dev)
    k = torch.randn(T, KVH, D, device=dev)
    v = torch.randn(T, KVH, D, device=dev)
    kc = torch.full((1, T, KVH, D), float("nan"), device=dev, dtype=dt)
    vc = torch.full((1, T, KVH, D), float("nan"), device=dev, dtype=dt)
    kv = KvLayer(kc.data_ptr(), vc.data_ptr(), MXC_BF16 if dt == torch.bfloat16 else MXC_F16, 1, T, KVH, D)
    pos = torch.arange(T, device=dev, dtype=torch.int32)
    torch.cuda.synchronize()
    check(lib.mxc_kv_store(C.byref(kv), 0, p(k), p(v), p(pos), C.c_int64(T), None), "kv_store")
    out = torch.full_like(q, float("nan"))
    scale = 1.0 / math.sqrt(D)
    check(lib.mxc_attention_prefill(C.byref(kv), 0, p(q), C.c_int64(T), H, C.c_int64(0), C.c_float(scale), p(out), None),
          "prefill")
    torch.cuda.synchronize()
    G = H // KVH
    kr = kc[0].float().repeat_interleave(G, dim=1).transpose(0, 1)  # [H][T][D]
    vr = vc[0].float().repeat_interleave(G, dim=1).transpose(0, 1)
    ref = F.scaled_dot_product_attention(q.transpose(0, 1), kr, vr, is_causal=True, scale=scale).transpose(0, 1)
    err = ((out - ref).norm() / ref.norm()).item()
    worst = max(worst, err)
    print(f"prefill T={T} H={H}/{KVH} D={D} {dt}: rel_err vs SDPA {err:.2e}")

    # decode: the last position's query over all T keys
    qd = torch.randn(1, H, D, device=dev)
    outd = torch.full_like(qd, float("nan"))
    sid = torch.zeros(1, device=dev, dtype=torch.int32)
    lens = torch.full((1,), T, device=dev, dtype=torch.int32)
    wsb = lib.mxc_attention_decode_workspace_bytes(1, H, D, T)
    ws = torch.empty(wsb, device=dev, dtype=torch.uint8)
    check(lib.mxc_attention_decode(C.byref(kv), p(sid), p(lens), C.c_int64(T), p(qd), C.c_int64(1), H, C.c_float(scale),
                                   p(outd), p(ws), C.c_size_t(wsb), None), "decode")
    torch.cuda.synchronize()
    refd = F.scaled_dot_product_attention(qd.transpose(0, 1), kr, vr, scale=scale).transpose(0, 1)
    errd = ((outd - refd).norm() / refd.norm()).item()
    worst = max(worst, errd)
    print(f"decode  T={T} H={H}/{KVH} D={D} {dt}: rel_err vs SDPA {errd:.2e}")

ok = worst < 1.5e-2 and not math.isnan(worst)
print("SDPA check", "PASS" if ok else "FAIL", f"(worst {worst:.2e})")
sys.exit(0 if ok else 1)
