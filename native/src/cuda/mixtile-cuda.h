/* Mixtile CUDA operator library (libmixtile-cuda.so): the C ABI. Plain C, no CUDA headers, so the
 * addon's loader (native/src/cuda-loader-napi.cc, dlopen/dlsym) and test programs can include it.
 * Wiring these operators into the engine forward is left to operators/ (issue 9).
 *
 * Conventions
 * - Every function returns mxc_status; on failure mxc_last_error() (per thread) says what and where.
 *   Bad arguments give MXC_ERR_INVALID_ARG and never abort.
 * - Device and pinned memory are plain pointers. A stream argument of NULL is the legacy default stream.
 * - Kernels are asynchronous on the stream; launch errors are reported, device faults surface at the
 *   next synchronising call (mxc_stream_sync, mxc_event_sync).
 * - Row-major throughout; shapes are given outermost first: [tokens][heads][head_dim].
 * - Activations are f32 on the device; weights are BF16 (GEMM), norm weights f32; KV cache f16 or bf16.
 */
#ifndef MIXTILE_CUDA_H
#define MIXTILE_CUDA_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MXC_ABI_VERSION 1

typedef enum mxc_status {
  MXC_OK = 0,
  MXC_ERR_INVALID_ARG = 1, /* a null pointer, a size out of range, an unsupported combination */
  MXC_ERR_NO_DRIVER = 2,   /* no NVIDIA driver, or one too old for this library's CUDA runtime */
  MXC_ERR_NO_DEVICE = 3,   /* a driver but no usable device */
  MXC_ERR_OUT_OF_MEMORY = 4,
  MXC_ERR_UNSUPPORTED = 5, /* built without this feature (cuBLAS) or the device lacks it */
  MXC_ERR_CUDA = 6         /* any other CUDA runtime or cuBLAS error; the message has its name */
} mxc_status;

/* Element types: the values are ggml's type ids (native/src/tensor.h GgmlType). */
typedef enum mxc_dtype {
  MXC_F32 = 0,
  MXC_F16 = 1,
  MXC_Q8_0 = 8,
  MXC_Q4_K = 12,
  MXC_Q5_K = 13,
  MXC_Q6_K = 14,
  MXC_BF16 = 30
} mxc_dtype;

typedef struct mxc_stream mxc_stream; /* a cudaStream_t */
typedef struct mxc_event mxc_event;   /* a cudaEvent_t */
typedef struct mxc_blas mxc_blas;     /* a cuBLAS handle plus its workspace, bound to one device */

typedef struct mxc_device_info {
  char name[256];
  uint64_t vram_bytes;
  uint64_t free_bytes;
  int cc_major, cc_minor;
  int multiprocessors;
  uint64_t l2_bytes;
  int pci_bus_id;
} mxc_device_info;

/* ---- errors, probe, versions ---- */
const char* mxc_last_error(void);          /* message of this thread's last failure ("" if none) */
int mxc_abi_version(void);                 /* MXC_ABI_VERSION the library was built with */
int mxc_has_cublas(void);                  /* 1 if GEMM was built in (cuBLAS found at build time) */
/* Number of devices. With no driver or no device, returns MXC_ERR_NO_DRIVER / MXC_ERR_NO_DEVICE, *count = 0,
 * and the message says which. */
mxc_status mxc_device_count(int* count);
/* Driver and runtime versions as CUDA encodes them (1000*major + 10*minor); driver 0 = none. */
mxc_status mxc_versions(int* driver_version, int* runtime_version);
mxc_status mxc_device_info_get(int device, mxc_device_info* out);
mxc_status mxc_set_device(int device);     /* binds the calling thread to `device` */

/* ---- streams, events, memory ---- */
mxc_status mxc_stream_create(mxc_stream** out);
mxc_status mxc_stream_destroy(mxc_stream* s);
mxc_status mxc_stream_sync(mxc_stream* s);
mxc_status mxc_stream_wait_event(mxc_stream* s, mxc_event* e);
mxc_status mxc_event_create(mxc_event** out, int timing); /* timing = 0: a cheaper sync-only event */
mxc_status mxc_event_destroy(mxc_event* e);
mxc_status mxc_event_record(mxc_event* e, mxc_stream* s);
mxc_status mxc_event_sync(mxc_event* e);
mxc_status mxc_event_query(mxc_event* e, int* done); /* *done = 1 once the work before it finished */
mxc_status mxc_event_elapsed_ms(mxc_event* start, mxc_event* end, float* ms);

/* CUDA graphs: the work issued on stream `s` (a created stream, not NULL) between begin and end is
 * captured, not run, and replays with one launch. A decode step issues a dozen small kernels per layer,
 * so host launch overhead otherwise dominates. Device pointers and shapes are baked into the graph;
 * values behind them (positions, lengths) may change between launches. */
typedef struct mxc_graph mxc_graph;
mxc_status mxc_graph_begin(mxc_stream* s);
mxc_status mxc_graph_end(mxc_stream* s, mxc_graph** out);
mxc_status mxc_graph_launch(mxc_graph* g, mxc_stream* s);
mxc_status mxc_graph_destroy(mxc_graph* g);

mxc_status mxc_malloc(void** ptr, size_t bytes);      /* device memory; MXC_ERR_OUT_OF_MEMORY says how much */
mxc_status mxc_free(void* ptr);
mxc_status mxc_host_alloc(void** ptr, size_t bytes);  /* pinned (page-locked) host memory */
mxc_status mxc_host_free(void* ptr);
/* Pins an existing host range (an mmapped weight file, say) for fast async copies; unregister before unmapping. */
mxc_status mxc_host_register(void* ptr, size_t bytes);
mxc_status mxc_host_unregister(void* ptr);
mxc_status mxc_mem_info(uint64_t* free_bytes, uint64_t* total_bytes); /* of the current device */
/* Device bytes this library has allocated (mxc_malloc and the cuBLAS workspaces), now and at their highest since
 * it was loaded: the process's own VRAM, without the CUDA context's driver overhead that nvidia-smi adds. */
mxc_status mxc_mem_usage(uint64_t* live_bytes, uint64_t* peak_bytes);
mxc_status mxc_memcpy_h2d(void* dst, const void* src, size_t bytes, mxc_stream* s); /* async when src is pinned */
mxc_status mxc_memcpy_d2h(void* dst, const void* src, size_t bytes, mxc_stream* s); /* async when dst is pinned */
mxc_status mxc_memcpy_d2d(void* dst, const void* src, size_t bytes, mxc_stream* s);
mxc_status mxc_memset(void* dst, int value, size_t bytes, mxc_stream* s);

/* ---- element-wise and small operators (f32 activations) ---- */
/* out[r][i] = x[r][i] * rsqrt(mean_i(x[r]^2) + eps) * w[i]; x, out [rows][n] (out may be x);
 * out_type MXC_F32 or MXC_BF16. Per-head q/k norm: rows = tokens*heads, n = head_dim. */
mxc_status mxc_rmsnorm(const float* x, const float* w, void* out, mxc_dtype out_type, int64_t rows, int n,
                       float eps, mxc_stream* s);
/* NeoX (rotate-half) RoPE in place on x [tokens][heads][head_dim]: for i < head_dim/2, with
 * a = pos[t] * theta^(-2i/head_dim): (x[i], x[i+h/2]) <- (x[i] cos a - x[i+h/2] sin a, x[i+h/2] cos a + x[i] sin a).
 * pos: device int32 [tokens]. head_dim even, <= 1024. */
mxc_status mxc_rope_neox(float* x, const int32_t* pos, int64_t tokens, int heads, int head_dim, float theta,
                         mxc_stream* s);
/* out[r][i] = silu(gate[r][i]) * up[r][i]; gate/up rows are `in_stride` elements apart (a fused
 * [rows][2n] gate_up output: gate = p, up = p + n, in_stride = 2n). out [rows][n], f32 or bf16. */
mxc_status mxc_silu_mul(const float* gate, const float* up, int64_t in_stride, void* out, mxc_dtype out_type,
                        int64_t rows, int n, mxc_stream* s);
/* y[i] = a[i] + b[i] for i < n (y may alias a or b). */
mxc_status mxc_add(const float* a, const float* b, float* y, int64_t n, mxc_stream* s);
/* Type conversion of n elements between f32, f16 and bf16 (any pair; round to nearest even). */
mxc_status mxc_convert(const void* x, mxc_dtype x_type, void* y, mxc_dtype y_type, int64_t n, mxc_stream* s);
/* Router: softmax over n_experts logits per token, top-k (ties: lower id), weights renormalised to sum 1
 * when `renormalize`, else the softmax probabilities. logits [tokens][n_experts] f32;
 * ids int32 [tokens][k] and weights f32 [tokens][k], in descending weight order. n_experts <= 1024, k <= 32. */
mxc_status mxc_router_topk(const float* logits, int64_t tokens, int n_experts, int k, int renormalize,
                           int32_t* ids, float* weights, mxc_stream* s);
/* Embedding gather: out[t][:] = table[ids[t]][:] as f32. table [n_rows][dim] of F32, F16, BF16 or Q8_0
 * (dim a multiple of 32 for Q8_0). ids: device int32 [tokens]; an id outside [0, n_rows) gives a zero row. */
mxc_status mxc_embed_gather(const void* table, mxc_dtype table_type, int64_t n_rows, int dim, const int32_t* ids,
                            int64_t tokens, float* out, mxc_stream* s);

/* ---- weights: dequantize / convert once at load ---- */
/* out BF16 [n] from ggml blocks (Q8_0, Q4_K, Q5_K, Q6_K) or F16/F32/BF16; n a multiple of the block size. */
mxc_status mxc_dequant_bf16(const void* src, mxc_dtype src_type, int64_t n, uint16_t* out, mxc_stream* s);
/* Bytes of n elements of `type` (0 if n is not a whole number of blocks or the type is unknown). */
size_t mxc_dtype_bytes(mxc_dtype type, int64_t n);

/* ---- GEMM ----
 * m = 1 (decode) runs our own bandwidth-bound kernel, larger m cuBLAS where it was built in (mxc_has_cublas).
 * Without cuBLAS our kernel serves every m (slow for large m) and needs k % 8 == 0 and 16-byte aligned
 * x, w; otherwise MXC_ERR_UNSUPPORTED. Environment, read at mxc_blas_create: MIXTILE_CUDA_GEMV_MAX_M
 * (default 1; 0 = always cuBLAS), MIXTILE_CUDA_NO_CUBLAS=1 (never cuBLAS). */
mxc_status mxc_blas_create(mxc_blas** out, mxc_stream* s);
mxc_status mxc_blas_destroy(mxc_blas* b);
mxc_status mxc_blas_set_stream(mxc_blas* b, mxc_stream* s);
/* y[m][n] = x[m][k] . w[n][k]^T (+ beta*y): x, w BF16 row-major (a Linear's weight as stored),
 * y of y_type MXC_F32 or MXC_BF16; f32 accumulation. */
mxc_status mxc_gemm_bf16(mxc_blas* b, int64_t m, int64_t n, int64_t k, const uint16_t* x, const uint16_t* w,
                         void* y, mxc_dtype y_type, float beta);
/* Quantized GEMV (decode projections, the lm_head's few rows; native/src/cuda/gemv-quant.cu): for i < m, r < n,
 * y[i * ldy + r] = x[i][:] . dequant(w[r][:]) (+ beta * y[i * ldy + r]); w n rows of k elements in their GGUF blocks
 * (Q8_0, Q4_K, Q5_K, Q6_K; k a whole number of blocks; Q4_K / Q5_K 16-byte aligned, Q8_0 / Q6_K 2-byte aligned),
 * dequantized as ggml's dequantize_row_* does; x BF16 [m][k], 16-byte aligned; y MXC_F32 or MXC_BF16, ldy >= n;
 * f32 accumulation. w is read once per 8 rows of x: meant for m up to ~16 (larger batches: mxc_dequant_bf16 into a
 * scratch, then mxc_gemm_bf16). Graph-capturable. */
mxc_status mxc_gemv_quant(int64_t m, int64_t n, int64_t k, const uint16_t* x, const void* w, mxc_dtype w_type, void* y,
                          mxc_dtype y_type, int64_t ldy, float beta, mxc_stream* s);
/* Several quantized GEMVs that share x, k, m, y_type and beta (q/k/v of one token) in one launch: job j is
 * mxc_gemv_quant(m, n, k, x, w, w_type, y, y_type, ldy, beta) with its own weight, type and output. */
#define MXC_GEMV_MAX_JOBS 4
typedef struct mxc_gemv_job {
  const void* w;
  mxc_dtype w_type;
  int64_t n;
  void* y;
  int64_t ldy;
} mxc_gemv_job;
mxc_status mxc_gemv_quant_multi(int64_t m, int64_t k, const uint16_t* x, const mxc_gemv_job* jobs, int n_jobs,
                                mxc_dtype y_type, float beta, mxc_stream* s);
/* y[m][n] = x[m][k] . w[n][k]^T, all f32 (no cuBLAS): small products whose rounding matters, such as the
 * MoE router, whose logits choose discrete experts. Bandwidth-bound; meant for n * k up to a few million. */
mxc_status mxc_gemm_f32(int64_t m, int64_t n, int64_t k, const float* x, const float* w, float* y, mxc_stream* s);

/* ---- KV cache and attention ----
 * A KV cache of one layer: k, v [n_seq][capacity][kv_heads][head_dim] of MXC_F16 or MXC_BF16.
 * Queries q [tokens][heads][head_dim] f32, already normed and rotated; out the same shape.
 * heads must be a multiple of kv_heads (GQA); head_dim 64 or 128; scale usually 1/sqrt(head_dim). */
typedef struct mxc_kv_layer {
  void* k;
  void* v;
  mxc_dtype type;       /* MXC_F16 or MXC_BF16 */
  int n_seq;            /* sequences (cache slots) */
  int64_t capacity;     /* positions per sequence */
  int kv_heads;
  int head_dim;
} mxc_kv_layer;
/* Writes k_new/v_new [tokens][kv_heads][head_dim] f32 into sequence `seq` at positions pos[t] (device int32). */
mxc_status mxc_kv_store(const mxc_kv_layer* kv, int seq, const float* k_new, const float* v_new,
                        const int32_t* pos, int64_t tokens, mxc_stream* s);
/* Prefill (flash-style, causal, online softmax, tensor cores) for one sequence: query t sits at position
 * pos0 + t and sees cache positions [0, pos0 + t]; the cache must already hold them (mxc_kv_store). */
mxc_status mxc_attention_prefill(const mxc_kv_layer* kv, int seq, const float* q, int64_t tokens, int heads,
                                 int64_t pos0, float scale, float* out, mxc_stream* s);
/* Decode (split-K): one query per sequence, q/out [n_seq][heads][head_dim]; sequence i is cache sequence
 * seq_ids[i] and sees positions [0, lens[i]) (device int32 arrays). max_len bounds every lens[i] and sizes
 * the split; workspace: mxc_attention_decode_workspace_bytes(...) device bytes. */
size_t mxc_attention_decode_workspace_bytes(int64_t n_seq, int heads, int head_dim, int64_t max_len);
/* seq_ids[i] outside [0, n_seq) gives a zero output row; lens[i] is clamped to [0, capacity]. heads/kv_heads <= 16;
 * max_len <= 786432 (12288 splits). */
mxc_status mxc_attention_decode(const mxc_kv_layer* kv, const int32_t* seq_ids, const int32_t* lens,
                                int64_t max_len, const float* q, int64_t n_seq, int heads, float scale, float* out,
                                void* workspace, size_t workspace_bytes, mxc_stream* s);

/* ---- MoE routing of a decode step (native/src/cuda/moe.cu) ----
 * xn = rmsnorm(x, norm_w, eps) [n][hidden]; logits = xn . router^T [n][n_experts] (router f32 [n_experts][hidden]);
 * ids, weights [n][k] = softmax top-k of the logits (renormalised over the k when renormalize). One launch, the
 * same results bit for bit as mxc_rmsnorm (f32 out) + mxc_gemm_f32 + mxc_router_topk. xn, ids and weights may be
 * pinned host memory (mapped: the kernel writes them there, no copy); logits is device scratch. counter: a
 * device uint32 that is 0 before the first call (the kernel leaves it 0); one per stream that runs this.
 * hidden <= 8192, n_experts <= 1024, k <= min(32, n_experts). */
mxc_status mxc_moe_route(const float* x, const float* norm_w, float eps, const float* router, int64_t n, int hidden,
                         int n_experts, int k, int renormalize, float* xn, float* logits, int32_t* ids, float* weights,
                         uint32_t* counter, mxc_stream* s);
/* x[i] += sum[i] for i < n once the host has set *flag to 1; then *flag = 0. Queued before the host computes
 * the sum: the GPU polls flag (pinned host memory) and reads sum (pinned host memory) over the bus, so the add
 * starts the moment the host's sum is ready, with no launch or copy after it. The host writes sum, then sets
 * *flag = 1 (a release store), and must not synchronise with this stream in between (it would wait forever).
 * After ~10 s without the flag the kernel gives up: *flag = 2, x untouched. */
mxc_status mxc_add_when_ready(float* x, const float* sum, int64_t n, uint32_t* flag, mxc_stream* s);

/* ---- routed experts on the GPU (prefill; native/src/cuda/moe.cu) ----
 * The addon's GpuExperts streams each selected expert's raw weight bytes from pinned host memory,
 * dequantizes them (mxc_dequant_bf16) and runs mxc_gemm_bf16 / mxc_silu_mul on the rows routed to it;
 * these two kernels move the token rows in and the expert outputs back. */
/* out[r][:] = bf16(x[rows[r]][:]) for r < n_rows (round to nearest even); x f32 [n_x][hidden]; a row index
 * outside [0, n_x) gives a zero row. rows: device int32. */
mxc_status mxc_gather_rows_bf16(const float* x, int64_t n_x, int64_t hidden, const int32_t* rows, int64_t n_rows,
                                uint16_t* out, mxc_stream* s);
/* y[t][:] = (accumulate ? y[t][:] : 0) + sum over j < top_k, in slot order, of w[t][j] * o[pos[t][j]][:], for
 * t < n. o f32 [n_o][hidden] (expert outputs, one row per routed (token, slot) pair); pos int32 and w f32
 * [n][top_k] on the device; a pos outside [0, n_o) (-1: the slot is computed elsewhere) adds nothing.
 * top_k <= 64. Deterministic: no atomics. */
mxc_status mxc_moe_combine(const float* o, int64_t n_o, int64_t hidden, const int32_t* pos, const float* w, int64_t n,
                           int top_k, float* y, int accumulate, mxc_stream* s);

#ifdef __cplusplus
}
#endif
#endif
