/* The hash embedder: determinism, normalisation, Unicode folding, stemming, pinned values,
   and the asynchronous wrapper on a libuv loop. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "memory/memory.h"

/* pinned:begin */
#define PIN0                                                                                   \
  {188, -0.145048f}, {216, 0.362619f}, {252, 0.181309f}, {257, -0.181309f}, {                  \
    287, -0.181309f                                                                            \
  }
#define PIN0_NNZ 14
#define PIN2                                                                                   \
  {186, -0.229416f}, {252, -0.229416f}, {284, 0.458831f}, {346, 0.458831f}, {                  \
    476, -0.458831f                                                                            \
  }
#define PIN2_NNZ 7
/* pinned:end */

static void embed(const char *s, float *v) {
  mem_hash_embed(s, strlen(s), v);
}

static float cosv(const float *a, const float *b) {
  return mem__dot_f32_scalar(a, b, MEM_DIM);
}

static size_t nnz(const float *v) {
  size_t n = 0;
  for (size_t i = 0; i < MEM_DIM; i++)
    n += v[i] != 0;
  return n;
}

static void test_deterministic_and_normalised(void **state) {
  (void)state;
  static float a[MEM_DIM], b[MEM_DIM];
  const char *texts[] = {"My sister Clara moved to Lisbon in 2019.", "hello",
                         "Ｃａｆé crème, s'il vous plaît!", "我喜欢猫", "a b c d e f g"};
  for (size_t t = 0; t < EG_ARRAY_LEN(texts); t++) {
    embed(texts[t], a);
    embed(texts[t], b);
    assert_memory_equal(a, b, sizeof(a));
    double n = 0;
    for (size_t i = 0; i < MEM_DIM; i++)
      n += (double)a[i] * a[i];
    assert_true(fabs(n - 1.0) < 1e-5);
  }
}

static void test_empty_and_garbage(void **state) {
  (void)state;
  static float v[MEM_DIM];
  embed("", v);
  assert_int_equal(nnz(v), 0);
  embed("?!... ,,, ---", v);
  assert_int_equal(nnz(v), 0);
  mem_hash_embed(NULL, 0, v);
  assert_int_equal(nnz(v), 0);
  /* Invalid UTF-8 is dropped, the valid words around it still count. */
  const char bad[] = "dog\xff\xfe\xc3 cat \xe2\x82";
  embed(bad, v);
  static float w[MEM_DIM];
  embed("dog cat", w);
  assert_true(cosv(v, w) > 0.999f);
  /* Embedded NUL bytes are skipped too. */
  const char nul[] = {'d', 'o', 'g', 0, ' ', 'c', 'a', 't'};
  mem_hash_embed(nul, sizeof(nul), v);
  assert_true(cosv(v, w) > 0.999f);
}

static void test_unicode_folding_and_stemming(void **state) {
  (void)state;
  static float a[MEM_DIM], b[MEM_DIM];
  embed("CAFÉ Crème", a);
  embed("café crème", b);
  assert_true(cosv(a, b) > 0.9999f);
  embed("ｃａｆé ｃｒèｍｅ", a); /* fullwidth letters: NFKC */
  assert_true(cosv(a, b) > 0.9999f);
  embed("Cafe\xcc\x81 cre\xcc\x80me", a); /* combining accents compose */
  assert_true(cosv(a, b) > 0.9999f);
  embed("dogs running", a);
  embed("dog runs", b);
  assert_true(cosv(a, b) > 0.999f);
  /* Stopwords count, but little. */
  embed("The dogs were running", a);
  assert_true(cosv(a, b) > 0.8f && cosv(a, b) < 0.99f);
  /* Prefixes join what the stemmer keeps apart. */
  embed("practising", a);
  embed("practice", b);
  assert_true(cosv(a, b) > 0.3f);
  embed("sister's wedding", a);
  embed("sister wedding", b);
  assert_true(cosv(a, b) > 0.95f);
  /* Pairs carry order: same words, other order, clearly less similar than identical. */
  embed("dog bites man", a);
  embed("man bites dog", b);
  assert_true(cosv(a, b) < 0.9f);
  assert_true(cosv(a, b) > 0.4f);
  /* Unrelated texts are nearly orthogonal. */
  embed("quarterly tax return deadline", a);
  embed("my cat loves tuna", b);
  assert_true(fabsf(cosv(a, b)) < 0.2f);
}

/* Any change to the features changes these: bump MEM_HASH_MODEL when that is meant. */
static void test_pinned_values(void **state) {
  (void)state;
  static float v[MEM_DIM];
  struct pin {
    int dim;
    float val;
  };
  embed("My sister Clara moved to Lisbon in 2019.", v);
  const struct pin p0[] = {PIN0};
  for (size_t i = 0; i < EG_ARRAY_LEN(p0); i++)
    assert_float_equal(v[p0[i].dim], p0[i].val, 1e-5);
  assert_int_equal(nnz(v), PIN0_NNZ);
  embed("我喜欢猫", v);
  const struct pin p2[] = {PIN2};
  for (size_t i = 0; i < EG_ARRAY_LEN(p2); i++)
    assert_float_equal(v[p2[i].dim], p2[i].val, 1e-5);
  assert_int_equal(nnz(v), PIN2_NNZ);
  assert_string_equal(MEM_HASH_MODEL, "hash-v1/768");
}

struct ctx {
  int calls;
  int status;
  size_t n;
  float first[MEM_DIM];
};

static void on_embed(void *ud, int status, const float *vecs, size_t n, int dim) {
  struct ctx *c = ud;
  c->calls++;
  c->status = status;
  c->n = n;
  assert_int_equal(dim, MEM_DIM);
  if (status == 0)
    memcpy(c->first, vecs + MEM_DIM, sizeof(c->first)); /* row 1 */
}

static void test_async_embedder(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct mem_embedder *e = mem_embedder_hash_new(&loop);
  assert_string_equal(e->model, MEM_HASH_MODEL);
  assert_int_equal(e->dim, MEM_DIM);
  const char *texts[] = {"first text", "second text about dogs"};
  size_t lens[] = {strlen(texts[0]), strlen(texts[1])};
  struct ctx c = {0};
  assert_int_equal(mem_embed(e, texts, lens, 2, MEM_TASK_DOCUMENT, on_embed, &c), 0);
  assert_int_equal(c.calls, 0); /* never inside mem_embed */
  assert_int_equal(mem_embed(e, texts, lens, 0, MEM_TASK_QUERY, on_embed, &c), EG_EINVAL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.n, 2);
  static float want[MEM_DIM];
  embed(texts[1], want);
  assert_memory_equal(c.first, want, sizeof(want));
  /* Freed with a batch pending: the callback reports EG_ECANCELED, nothing leaks. */
  struct ctx c2 = {0};
  assert_int_equal(mem_embed(e, texts, lens, 2, MEM_TASK_QUERY, on_embed, &c2), 0);
  mem_embedder_free(e);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(c2.calls, 1);
  assert_int_equal(c2.status, EG_ECANCELED);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* The keyword terms: stemmed content words in order, stopwords left out, repeats kept. */
static void test_terms(void **state) {
  (void)state;
  const char *t = "Beatrice LIVES in Lisbon; Beatrice's lives!";
  uint64_t h[8];
  size_t n = mem_terms(t, strlen(t), h, 8);
  assert_int_equal(n, 5);
  assert_true(h[0] == mem_term_hash("beatric", 7));
  assert_true(h[1] == mem_term_hash("live", 4));
  assert_true(h[2] == mem_term_hash("lisbon", 6));
  assert_true(h[3] == h[0] && h[4] == h[1]);
  assert_int_equal(mem_terms(t, strlen(t), h, 2), 2); /* at most max */
  assert_int_equal(mem_terms("the and of", 10, h, 8), 0);
  assert_int_equal(mem_terms("", 0, h, 8), 0);
}

/* The ASCII path of the normalisation gives what utf8proc gives (every ASCII byte, NULs,
   controls, upper case), and non-ASCII texts still go through utf8proc. */
static void test_ascii_normalise(void **state) {
  (void)state;
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  char text[300];
  for (int it = 0; it < 3000; it++) {
    size_t n = (size_t)it % 300;
    for (size_t i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      text[i] = (char)(it % 3 ? (int)(x % 128) : " AbZ.,-'\t\n0x"[x % 12]);
    }
    size_t la = 0, lb = 0;
    uint8_t *a = mem__normalise(text, n, &la, true), *b = mem__normalise(text, n, &lb, false);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la + 1);
    free(a);
    free(b);
  }
  const char *u = "Stra\xc3\x9f"
                  "e \xef\xac\x81le"; /* sharp s, the fi ligature */
  size_t la = 0, lb = 0;
  uint8_t *a = mem__normalise(u, strlen(u), &la, true),
          *b = mem__normalise(u, strlen(u), &lb, false);
  assert_int_equal(la, lb);
  assert_memory_equal(a, b, la + 1);
  assert_string_equal((char *)a, "strasse file");
  free(a);
  free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_terms),
      cmocka_unit_test(test_ascii_normalise),
      cmocka_unit_test(test_deterministic_and_normalised),
      cmocka_unit_test(test_empty_and_garbage),
      cmocka_unit_test(test_unicode_folding_and_stemming),
      cmocka_unit_test(test_pinned_values),
      cmocka_unit_test(test_async_embedder),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
