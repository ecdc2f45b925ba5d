/*
 * Deterministic benchmark vectors shared by bench/memory_bench.c and bench/faiss_flat.cc
 * (C and C++), so both search the same data. Rows are clustered like real embeddings:
 * 512 random centres, each row = its centre * 0.6 + uniform noise, L2-normalised. Query qi
 * is row (qi * 7919 % n) plus small noise, normalised.
 */
#ifndef ENGRAM_MEMORY_BENCH_VEC_H
#define ENGRAM_MEMORY_BENCH_VEC_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define BV_DIM 768
#define BV_CENTRES 512

static inline uint64_t bv_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [-1, 1). */
static inline float bv_unif(uint64_t *s) {
  return (float)((double)(bv_next(s) >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static inline void bv_norm(float *v) {
  double t = 0;
  for (int d = 0; d < BV_DIM; d++)
    t += (double)v[d] * v[d];
  float inv = t > 0 ? (float)(1.0 / sqrt(t)) : 0.0f;
  for (int d = 0; d < BV_DIM; d++)
    v[d] *= inv;
}

/* Fills out[n * BV_DIM]. */
static inline void bv_fill(float *out, size_t n) {
  float *c = (float *)malloc(sizeof(float) * BV_CENTRES * BV_DIM);
  uint64_t s = 0x9E3779B97F4A7C15ULL;
  for (size_t i = 0; i < (size_t)BV_CENTRES; i++) {
    for (int d = 0; d < BV_DIM; d++)
      c[i * BV_DIM + d] = bv_unif(&s);
    bv_norm(c + i * BV_DIM);
  }
  for (size_t i = 0; i < n; i++) {
    const float *ce = c + (bv_next(&s) % BV_CENTRES) * BV_DIM;
    float *v = out + i * BV_DIM;
    for (int d = 0; d < BV_DIM; d++)
      v[d] = ce[d] * 0.6f + bv_unif(&s) * 0.03f;
    bv_norm(v);
  }
  free(c);
}

static inline void bv_query(float *q, const float *rows, size_t n, size_t qi) {
  uint64_t s = 0xD1B54A32D192ED03ULL ^ (uint64_t)(qi + 1) * 0x9E3779B97F4A7C15ULL;
  const float *r = rows + ((qi * 7919u) % n) * BV_DIM;
  for (int d = 0; d < BV_DIM; d++)
    q[d] = r[d] + bv_unif(&s) * 0.02f;
  bv_norm(q);
}

#endif
