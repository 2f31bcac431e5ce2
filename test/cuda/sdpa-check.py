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


def worse(a, b):  # max() that keeps a NaN (max(0.1, nan) is 0.1)
    return b if math.isnan(b) or b > a else a


worst = 0.0
torch.manual_seed(0)
BF, HF = torch.bfloat16, torch.float16
# (L, start, H, KVH, D, dtype): the cache holds positions [0, L); prefill queries sit at [start, L) (start > 0 is
# a later chunk of a chunked prefill), decode's one query sees all L. Query counts off the kernels' 64-row tile
# and 16-row warp slices (1, 17, 77, 100, 1000), chunk starts off the 64-key tile (3001, 999).
CASES = [(1000, 0, 32, 4, 128, BF), (77, 0, 16, 2, 64, HF), (2048, 0, 32, 4, 128, HF), (1, 0, 32, 4, 128, BF),
         (17, 0, 32, 4, 128, BF), (100, 0, 32, 4, 128, HF), (4096, 3001, 32, 4, 128, HF), (1000, 999, 32, 4, 128, BF),
         (8192, 0, 32, 4, 128, BF), (16384, 14336, 32, 4, 128, BF)]
for (L, start, H, KVH, D, dt) in CASES:
    dev = "cuda"
    T = L - start
    q = torch.randn(T, H, D, device=dev)
    k = torch.randn(L, KVH, D, device=dev)
    v = torch.randn(L, KVH, D, device=dev)
    kc = torch.full((1, L, KVH, D), float("nan"), device=dev, dtype=dt)
    vc = torch.full((1, L, KVH, D), float("nan"), device=dev, dtype=dt)
    kv = KvLayer(kc.data_ptr(), vc.data_ptr(), MXC_BF16 if dt == torch.bfloat16 else MXC_F16, 1, L, KVH, D)
    pos = torch.arange(L, device=dev, dtype=torch.int32)
    torch.cuda.synchronize()
    check(lib.mxc_kv_store(C.byref(kv), 0, p(k), p(v), p(pos), C.c_int64(L), None), "kv_store")
    out = torch.full_like(q, float("nan"))
    scale = 1.0 / math.sqrt(D)
    check(lib.mxc_attention_prefill(C.byref(kv), 0, p(q), C.c_int64(T), H, C.c_int64(start), C.c_float(scale), p(out),
                                    None), "prefill")
    torch.cuda.synchronize()
    G = H // KVH
    kr = kc[0].float().repeat_interleave(G, dim=1).transpose(0, 1)  # [H][L][D]
    vr = vc[0].float().repeat_interleave(G, dim=1).transpose(0, 1)
    if start == 0:
        ref = F.scaled_dot_product_attention(q.transpose(0, 1), kr, vr, is_causal=True, scale=scale)
    else:
        visible = torch.arange(L, device=dev)[None, :] <= torch.arange(start, L, device=dev)[:, None]  # [T][L]
        ref = F.scaled_dot_product_attention(q.transpose(0, 1), kr, vr, attn_mask=visible, scale=scale)
    ref = ref.transpose(0, 1)
    err = ((out - ref).norm() / ref.norm()).item()
    worst = worse(worst, err)
    print(f"prefill L={L} start={start} H={H}/{KVH} D={D} {dt}: rel_err vs SDPA {err:.2e}")
    del ref

    # decode: one query over all L keys
    qd = torch.randn(1, H, D, device=dev)
    outd = torch.full_like(qd, float("nan"))
    sid = torch.zeros(1, device=dev, dtype=torch.int32)
    lens = torch.full((1,), L, device=dev, dtype=torch.int32)
    wsb = lib.mxc_attention_decode_workspace_bytes(1, H, D, L)
    ws = torch.empty(wsb, device=dev, dtype=torch.uint8)
    check(lib.mxc_attention_decode(C.byref(kv), p(sid), p(lens), C.c_int64(L), p(qd), C.c_int64(1), H, C.c_float(scale),
                                   p(outd), p(ws), C.c_size_t(wsb), None), "decode")
    torch.cuda.synchronize()
    refd = F.scaled_dot_product_attention(qd.transpose(0, 1), kr, vr, scale=scale).transpose(0, 1)
    errd = ((outd - refd).norm() / refd.norm()).item()
    worst = worse(worst, errd)
    print(f"decode  L={L} H={H}/{KVH} D={D} {dt}: rel_err vs SDPA {errd:.2e}")

ok = worst < 1.5e-2 and not math.isnan(worst)
print("SDPA check", "PASS" if ok else "FAIL", f"(worst {worst:.2e})")
sys.exit(0 if ok else 1)
