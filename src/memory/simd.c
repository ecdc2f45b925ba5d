/*
 * Vector kernels: float dot products, int8 dot products and quantisation. Each kernel has
 * a portable scalar form and an AVX2+FMA form (compiled with a target attribute, no global
 * -m flags); the AVX2 form is chosen once at run time with __builtin_cpu_supports.
 */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory.h"

float mem__dot_f32_scalar(const float *a, const float *b, size_t n) {
  /* Four accumulators, like the SIMD form, so both round alike and the loop pipelines. */
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; i++)
    s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

int32_t mem__dot_i8_scalar(const int8_t *a, const int8_t *b, size_t n) {
  int32_t s = 0;
  for (size_t i = 0; i < n; i++)
    s += (int32_t)a[i] * (int32_t)b[i];
  return s;
}

float mem__dot_f32_i8_scalar(const float *a, const int8_t *b, size_t n) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * (float)b[i];
    s1 += a[i + 1] * (float)b[i + 1];
    s2 += a[i + 2] * (float)b[i + 2];
    s3 += a[i + 3] * (float)b[i + 3];
  }
  for (; i < n; i++)
    s0 += a[i] * (float)b[i];
  return (s0 + s1) + (s2 + s3);
}

__attribute__((target("avx2,fma"))) static float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  __m128 s = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, s);
  s = _mm_add_ss(s, sh);
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) float mem__dot_f32_avx2(const float *a, const float *b,
                                                            size_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8)
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float s = hsum256(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < n; i++)
    s += a[i] * b[i];
  return s;
}

__attribute__((target("avx2,fma"))) static int32_t hsum256_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

__attribute__((target("avx2,fma"))) int32_t mem__dot_i8_avx2(const int8_t *a, const int8_t *b,
                                                             size_t n) {
  /* Sign-extend 16 bytes to 16 int16 lanes, multiply-add pairs into int32 (no overflow:
     |a*b| <= 127*127, two per lane). */
  __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
    __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
    __m256i a1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i + 16)));
    __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i + 16)));
    acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, b0));
    acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, b1));
  }
  int32_t s = hsum256_epi32(_mm256_add_epi32(acc0, acc1));
  for (; i < n; i++)
    s += (int32_t)a[i] * (int32_t)b[i];
  return s;
}

__attribute__((target("avx2,fma"))) float mem__dot_f32_i8_avx2(const float *a, const int8_t *b,
                                                               size_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m128i q = _mm_loadu_si128((const __m128i *)(b + i));
    __m256 b0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    __m256 b1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), b0, acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), b1, acc1);
  }
  float s = hsum256(_mm256_add_ps(acc0, acc1));
  for (; i < n; i++)
    s += a[i] * (float)b[i];
  return s;
}

static int simd_state = -1; /* -1 unknown, 0 scalar, 1 avx2 */

bool mem_simd_avx2(void) {
  int st = __atomic_load_n(&simd_state, __ATOMIC_RELAXED);
  if (st < 0) {
    const char *off = getenv("ENGRAM_NO_AVX2");
    __builtin_cpu_init();
    st = (off == NULL || strcmp(off, "1") != 0) && __builtin_cpu_supports("avx2") &&
         __builtin_cpu_supports("fma");
    __atomic_store_n(&simd_state, st, __ATOMIC_RELAXED);
  }
  return st == 1;
}

float mem_dot_f32(const float *a, const float *b, size_t n) {
  return mem_simd_avx2() ? mem__dot_f32_avx2(a, b, n) : mem__dot_f32_scalar(a, b, n);
}

float mem__quantize_i8_scalar(const float *v, size_t n, int8_t *q) {
  float m = 0;
  for (size_t i = 0; i < n; i++) {
    float a = fabsf(v[i]);
    if (a > m)
      m = a;
  }
  if (!(m > 0) || !isfinite(m)) {
    memset(q, 0, n);
    return 0;
  }
  float scale = m / 127.0f;
  float inv = 127.0f / m;
  for (size_t i = 0; i < n; i++) {
    float x = v[i] * inv;
    if (!isfinite(x))
      x = 0;
    long r = lrintf(x);
    if (r > 127)
      r = 127;
    if (r < -127)
      r = -127;
    q[i] = (int8_t)r;
  }
  return scale;
}

/* The same values as the scalar form: the same products, cvtps rounds to nearest even as
   lrintf does (both in the default rounding mode), NaN products become 0. */
__attribute__((target("avx2,fma"))) float mem__quantize_i8_avx2(const float *v, size_t n,
                                                                int8_t *q) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 mx = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) /* max(x, mx) is mx when x is NaN: NaNs are skipped */
    mx = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(v + i), absmask), mx);
  float lanes[8];
  _mm256_storeu_ps(lanes, mx);
  float m = 0;
  for (int l = 0; l < 8; l++)
    if (lanes[l] > m)
      m = lanes[l];
  for (; i < n; i++)
    if (fabsf(v[i]) > m)
      m = fabsf(v[i]);
  if (!(m > 0) || !isfinite(m)) {
    memset(q, 0, n);
    return 0;
  }
  float scale = m / 127.0f;
  float inv = 127.0f / m;
  if (!isfinite(inv))
    return mem__quantize_i8_scalar(v, n, q);
  const __m256 iv = _mm256_set1_ps(inv);
  const __m256i hi = _mm256_set1_epi32(127), lo = _mm256_set1_epi32(-127);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i r[4];
    for (int b = 0; b < 4; b++) {
      __m256 x = _mm256_mul_ps(_mm256_loadu_ps(v + i + 8 * b), iv);
      x = _mm256_and_ps(x, _mm256_cmp_ps(x, x, _CMP_ORD_Q));
      r[b] = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(x), hi), lo);
    }
    __m256i p =
        _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
    _mm256_storeu_si256((__m256i *)(q + i), _mm256_permutevar8x32_epi32(p, perm));
  }
  for (; i < n; i++) {
    float x = v[i] * inv;
    if (!isfinite(x))
      x = 0;
    long r = lrintf(x);
    q[i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
  }
  return scale;
}

float mem_quantize_i8(const float *v, size_t n, int8_t *q) {
  return mem_simd_avx2() ? mem__quantize_i8_avx2(v, n, q) : mem__quantize_i8_scalar(v, n, q);
}

/* ---- block scan: int8 query against many int8 rows --------------------------------------- */

void mem__scan_i8_scalar(const int8_t *q, const int8_t *rows, size_t nrows, size_t dim,
                         int32_t *out) {
  for (size_t r = 0; r < nrows; r++)
    out[r] = mem__dot_i8_scalar(q, rows + r * dim, dim);
}

/* The sign trick: |q| (unsigned) times sign(q)*row (signed) with maddubs gives q*row in
   pairs of int16 (no saturation: |q|,|row| <= 127, so a pair is at most 32258), which
   madd with ones widens to int32. Four rows per pass share the query loads. */
__attribute__((target("avx2,fma"))) void
mem__scan_i8_avx2(const int8_t *q, const int8_t *rows, size_t nrows, size_t dim, int32_t *out) {
  const __m256i ones = _mm256_set1_epi16(1);
  size_t vd = dim & ~(size_t)31;
  size_t r = 0;
  for (; r + 4 <= nrows; r += 4) {
    const int8_t *r0 = rows + r * dim, *r1 = r0 + dim, *r2 = r1 + dim, *r3 = r2 + dim;
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    __m256i a2 = _mm256_setzero_si256(), a3 = _mm256_setzero_si256();
    for (size_t i = 0; i < vd; i += 32) {
      __m256i qv = _mm256_loadu_si256((const __m256i *)(q + i));
      __m256i qa = _mm256_abs_epi8(qv);
      __m256i x0 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(r0 + i)), qv);
      __m256i x1 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(r1 + i)), qv);
      __m256i x2 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(r2 + i)), qv);
      __m256i x3 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(r3 + i)), qv);
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, x0), ones));
      a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, x1), ones));
      a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, x2), ones));
      a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, x3), ones));
    }
    int32_t s0 = hsum256_epi32(a0), s1 = hsum256_epi32(a1);
    int32_t s2 = hsum256_epi32(a2), s3 = hsum256_epi32(a3);
    for (size_t i = vd; i < dim; i++) {
      s0 += (int32_t)q[i] * r0[i];
      s1 += (int32_t)q[i] * r1[i];
      s2 += (int32_t)q[i] * r2[i];
      s3 += (int32_t)q[i] * r3[i];
    }
    out[r] = s0;
    out[r + 1] = s1;
    out[r + 2] = s2;
    out[r + 3] = s3;
  }
  for (; r < nrows; r++) {
    const int8_t *rr = rows + r * dim;
    __m256i a0 = _mm256_setzero_si256();
    for (size_t i = 0; i < vd; i += 32) {
      __m256i qv = _mm256_loadu_si256((const __m256i *)(q + i));
      __m256i x0 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(rr + i)), qv);
      a0 = _mm256_add_epi32(
          a0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(qv), x0), ones));
    }
    int32_t s0 = hsum256_epi32(a0);
    for (size_t i = vd; i < dim; i++)
      s0 += (int32_t)q[i] * rr[i];
    out[r] = s0;
  }
}

/* ---- quad columns (the index's layout) ---- */

void mem__quad_col_scalar(const int8_t *col, const int8_t q[4], size_t n, int32_t *acc) {
  for (size_t r = 0; r < n; r++, col += 4)
    acc[r] += (int32_t)q[0] * col[0] + (int32_t)q[1] * col[1] + (int32_t)q[2] * col[2] +
              (int32_t)q[3] * col[3];
}

/* The same sign trick as mem__scan_i8_avx2, 8 rows per register: the quad's 4 query bytes
   are broadcast to every 32-bit lane, maddubs + madd give one int32 per row. */
__attribute__((target("avx2,fma"))) void
mem__quad_col_avx2(const int8_t *col, const int8_t q[4], size_t n, int32_t *acc) {
  const __m256i ones = _mm256_set1_epi16(1);
  int32_t word;
  memcpy(&word, q, 4);
  __m256i qv = _mm256_set1_epi32(word);
  __m256i qa = _mm256_abs_epi8(qv);
  size_t r = 0;
  for (; r + 8 <= n; r += 8) {
    __m256i x = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(col + 4 * r)), qv);
    __m256i a = _mm256_loadu_si256((const __m256i *)(acc + r));
    a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, x), ones));
    _mm256_storeu_si256((__m256i *)(acc + r), a);
  }
  mem__quad_col_scalar(col + 4 * r, q, n - r, acc + r);
}

uint32_t mem__quads32_scalar(const int8_t *const *cols, const int32_t *qw, size_t nq, size_t r0,
                             size_t n, const float *scale, float thr, int32_t dots[32]) {
  for (size_t i = 0; i < nq; i++) {
    int8_t q[4];
    memcpy(q, &qw[i], 4);
    mem__quad_col_scalar(cols[i] + 4 * r0, q, n, dots);
  }
  uint32_t m = 0;
  for (size_t j = 0; j < n; j++)
    if ((float)dots[j] * scale[r0 + j] > thr)
      m |= 1u << j;
  return m;
}

/* 32 rows in four registers of 8 int32 sums; per quad four column loads (the 32 rows'
   quads are 128 contiguous bytes), the sign trick as mem__quad_col_avx2. */
__attribute__((target("avx2,fma"))) uint32_t
mem__quads32_avx2(const int8_t *const *cols, const int32_t *qw, size_t nq, size_t r0, size_t n,
                  const float *scale, float thr, int32_t dots[32]) {
  if (n < 32)
    return mem__quads32_scalar(cols, qw, nq, r0, n, scale, thr, dots);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i a0 = _mm256_loadu_si256((const __m256i *)dots);
  __m256i a1 = _mm256_loadu_si256((const __m256i *)(dots + 8));
  __m256i a2 = _mm256_loadu_si256((const __m256i *)(dots + 16));
  __m256i a3 = _mm256_loadu_si256((const __m256i *)(dots + 24));
  for (size_t i = 0; i < nq; i++) {
    const __m256i *c = (const __m256i *)(cols[i] + 4 * r0);
    __m256i qv = _mm256_set1_epi32(qw[i]);
    __m256i qa = _mm256_abs_epi8(qv);
    __m256i x0 = _mm256_sign_epi8(_mm256_loadu_si256(c), qv);
    __m256i x1 = _mm256_sign_epi8(_mm256_loadu_si256(c + 1), qv);
    __m256i x2 = _mm256_sign_epi8(_mm256_loadu_si256(c + 2), qv);
    __m256i x3 = _mm256_sign_epi8(_mm256_loadu_si256(c + 3), qv);
    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, x0), ones));
    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, x1), ones));
    a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, x2), ones));
    a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, x3), ones));
  }
  _mm256_storeu_si256((__m256i *)dots, a0);
  _mm256_storeu_si256((__m256i *)(dots + 8), a1);
  _mm256_storeu_si256((__m256i *)(dots + 16), a2);
  _mm256_storeu_si256((__m256i *)(dots + 24), a3);
  /* The same single-precision products as the scalar form (no FMA contraction). */
  const __m256 t = _mm256_set1_ps(thr);
  const float *sc = scale + r0;
  uint32_t m0 = (uint32_t)_mm256_movemask_ps(
      _mm256_cmp_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(a0), _mm256_loadu_ps(sc)), t, _CMP_GT_OQ));
  uint32_t m1 = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(
      _mm256_mul_ps(_mm256_cvtepi32_ps(a1), _mm256_loadu_ps(sc + 8)), t, _CMP_GT_OQ));
  uint32_t m2 = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(
      _mm256_mul_ps(_mm256_cvtepi32_ps(a2), _mm256_loadu_ps(sc + 16)), t, _CMP_GT_OQ));
  uint32_t m3 = (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(
      _mm256_mul_ps(_mm256_cvtepi32_ps(a3), _mm256_loadu_ps(sc + 24)), t, _CMP_GT_OQ));
  return m0 | m1 << 8 | m2 << 16 | m3 << 24;
}
