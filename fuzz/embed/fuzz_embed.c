/*
 * libFuzzer target for the hash embedder's text pipeline (UTF-8 cleaning, NFKC + case
 * folding, tokenising, clitics, stemming, hashing). Checks, for any bytes: no crash, the
 * vector is finite, L2-normalised or all zero, deterministic, and the int8 quantisation
 * and index kernels agree (scalar vs AVX2) on it. The keyword terms (mem_terms) of the same
 * bytes: bounded by max, deterministic, and the text indexed as a memory of a one-row index
 * is found by its own words.
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
    int32_t c1[8] = {0}, c2[8] = {0};
    int8_t col[4 * 8];
    for (size_t r = 0; r < 8; r++)
      memcpy(col + 4 * r, q + 4 * r, 4);
    mem__quad_col_scalar(col, q, 8, c1);
    mem__quad_col_avx2(col, q, 8, c2);
    if (memcmp(c1, c2, sizeof c1) != 0)
      abort();
  }
  static uint64_t t1[64], t2[64];
  size_t n1 = mem_terms((const char *)data, size, t1, 64);
  size_t n2 = mem_terms((const char *)data, size, t2, 64);
  if (n1 > 64 || n1 != n2 || memcmp(t1, t2, n1 * sizeof t1[0]) != 0)
    abort();
  /* As a memory: a one-row index finds it by its own text (when it has terms). */
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = 0;
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  struct mem_row row = {.id = "0123456789abcdef01234567", .vec = a, .text = text};
  if (mem_index_load(ix, "u", "m", &row, 1) != 0)
    abort();
  struct mem_hit h[1];
  size_t nh = 0;
  if (mem_index_keyword(ix, "u", text, 1, NULL, 0, h, &nh) != 0)
    abort();
  if (strlen(text) == size && mem_terms(text, size, t1, 1) == 1 && nh != 1)
    abort();
  mem_index_free(ix);
  free(text);
  return 0;
}
