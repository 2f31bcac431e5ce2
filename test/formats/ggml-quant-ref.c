// Runs ggml's own reference quantizers (libggml-base from node-llama-cpp's prebuilt llama.cpp)
// on a float32 file, writing one output file per type; quant.test.ts compares ours against them.
// usage: ggml-quant-ref IN.f32 N OUT_PREFIX   -> OUT_PREFIX.{F16,BF16,Q8_0,Q4_K,Q5_K,Q6_K}
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

void quantize_row_q4_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q5_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q6_K_ref(const float *x, void *y, int64_t k);
void quantize_row_q8_0_ref(const float *x, void *y, int64_t k);
void ggml_fp32_to_fp16_row(const float *x, uint16_t *y, int64_t k);
void ggml_fp32_to_bf16_row_ref(const float *x, uint16_t *y, int64_t k);

static void dump(const char *prefix, const char *type, const void *data, size_t n_bytes) {
  char path[4096];
  snprintf(path, sizeof path, "%s.%s", prefix, type);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, n_bytes, f) != n_bytes) { perror(path); exit(1); }
  fclose(f);
}

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: %s IN.f32 N OUT_PREFIX\n", argv[0]); return 2; }
  int64_t n = atoll(argv[2]);
  float *x = malloc(n * sizeof(float));
  uint8_t *y = malloc(n * sizeof(float));
  FILE *f = fopen(argv[1], "rb");
  if (!f || fread(x, sizeof(float), n, f) != (size_t)n) { perror(argv[1]); return 1; }
  fclose(f);
  quantize_row_q4_K_ref(x, y, n); dump(argv[3], "Q4_K", y, n / 256 * 144);
  quantize_row_q5_K_ref(x, y, n); dump(argv[3], "Q5_K", y, n / 256 * 176);
  quantize_row_q6_K_ref(x, y, n); dump(argv[3], "Q6_K", y, n / 256 * 210);
  quantize_row_q8_0_ref(x, y, n); dump(argv[3], "Q8_0", y, n / 32 * 34);
  ggml_fp32_to_fp16_row(x, (uint16_t *)y, n); dump(argv[3], "F16", y, n * 2);
  ggml_fp32_to_bf16_row_ref(x, (uint16_t *)y, n); dump(argv[3], "BF16", y, n * 2);
  return 0;
}
