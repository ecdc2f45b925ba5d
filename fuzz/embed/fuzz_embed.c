/*
 * libFuzzer target for the hash embedder's text pipeline (UTF-8 cleaning, NFKC + case
 * folding, tokenising, clitics, stemming, hashing). Checks, for any bytes: no crash, the
 * vector is finite, L2-normalised or all zero, deterministic, and the int8 quantisation
 * and index kernels agree (scalar vs AVX2) on it.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static float a[MEM_DIM], b[MEM_DIM];
  static int8_t q[MEM_DIM];
  mem_hash_embed((const char *)data, size, a);
  double n = 0;
  for (size_t i = 0; i < MEM_DIM; i++) {
    if (!isfinite(a[i]))
      abort();
    n += (double)a[i] * a[i];
  }
  if (n != 0 && fabs(n - 1.0) > 1e-4)
    abort();
  mem_hash_embed((const char *)data, size, b);
  if (memcmp(a, b, sizeof(a)) != 0)
    abort();
  float scale = mem_quantize_i8(a, MEM_DIM, q);
  if (n != 0 && !(scale > 0))
    abort();
  if (mem_simd_avx2()) {
    int32_t s1 = mem__dot_i8_scalar(q, q, MEM_DIM), s2 = mem__dot_i8_avx2(q, q, MEM_DIM);
    int32_t s3;
    mem__scan_i8_avx2(q, q, 1, MEM_DIM, &s3);
    if (s1 != s2 || s1 != s3)
      abort();
  }
  return 0;
}
