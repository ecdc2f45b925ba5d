/* Remote embedders (gemini, openai) against the fake model server tests/fakes/fake-llm.mjs:
   request shapes, task types, auth headers, batching, ordering by index, normalisation,
   retries on 429 with Retry-After, failure after the last try, empty texts, cancel. */
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "httpc/httpc.h"
#include "memory/memory.h"

#define FAKE_SCRIPT "fake-llm.mjs"
#include "memory/fake_child.h"

/* ---- embedding calls ---- */
struct res {
  int calls;
  int status;
  size_t n;
  float *vecs;
};

static void on_vecs(void *ud, int status, const float *vecs, size_t n, int dim) {
  struct res *r = ud;
  r->calls++;
  r->status = status;
  r->n = n;
  if (status == 0) {
    r->vecs = malloc(n * (size_t)dim * sizeof(float));
    memcpy(r->vecs, vecs, n * (size_t)dim * sizeof(float));
  }
}

static struct res embed_wait(struct mem_embedder *e, const char *const *t, size_t n,
                             enum mem_task task) {
  size_t lens[16];
  for (size_t i = 0; i < n; i++)
    lens[i] = strlen(t[i]);
  struct res r = {0};
  assert_int_equal(mem_embed(e, t, lens, n, task, on_vecs, &r), 0);
  assert_int_equal(r.calls, 0);
  while (r.calls == 0)
    uv_run(&loop, UV_RUN_ONCE);
  return r;
}

static double norm(const float *v) {
  double s = 0;
  for (int i = 0; i < MEM_DIM; i++)
    s += (double)v[i] * v[i];
  return sqrt(s);
}

static json_t *embed_requests(void) {
  json_t *all = ctl("GET", "/__requests", NULL);
  json_t *out = json_array();
  size_t i;
  json_t *r;
  json_array_foreach(all, i, r) {
    const char *p = json_string_value(json_object_get(r, "path"));
    if (p && (strstr(p, "mbed") != NULL))
      json_array_append(out, r);
  }
  json_decref(all);
  return out;
}

static void test_gemini(void **state) {
  (void)state;
  json_decref(ctl("POST", "/__reset", "{}"));
  struct mem_embedder *e;
  struct mem_remote_config cfg = {.kind = "gemini", .base_url = base, .api_key = "k1"};
  assert_int_equal(mem_embedder_remote_new(&loop, http, &cfg, &e), 0);
  assert_string_equal(e->model, "gemini:gemini-embedding-001/768");
  assert_int_equal(e->dim, 768);
  const char *t[] = {"my dog Biscuit", "flight to Lisbon", "my dog Biscuit", ""};
  struct res r = embed_wait(e, t, 4, MEM_TASK_DOCUMENT);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.n, 4);
  for (int i = 0; i < 3; i++)
    assert_true(fabs(norm(r.vecs + i * MEM_DIM) - 1.0) < 1e-4);
  assert_memory_equal(r.vecs, r.vecs + 2 * MEM_DIM, MEM_DIM * sizeof(float));
  assert_true(norm(r.vecs + 3 * MEM_DIM) == 0); /* the empty text: not sent, zero */
  /* One text as a query: embedContent with RETRIEVAL_QUERY; same text, same vector. */
  const char *q[] = {"flight to Lisbon"};
  struct res r1 = embed_wait(e, q, 1, MEM_TASK_QUERY);
  assert_int_equal(r1.status, 0);
  assert_memory_equal(r1.vecs, r.vecs + MEM_DIM, MEM_DIM * sizeof(float));
  json_t *reqs = embed_requests();
  assert_int_equal(json_array_size(reqs), 2);
  json_t *b = json_array_get(reqs, 0);
  assert_non_null(strstr(json_string_value(json_object_get(b, "path")),
                         "/v1beta/models/gemini-embedding-001:batchEmbedContents"));
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(b, "headers"), "x-goog-api-key")),
      "k1");
  json_t *rq = json_object_get(json_object_get(b, "body"), "requests");
  assert_int_equal(json_array_size(rq), 3);
  json_t *r0 = json_array_get(rq, 0);
  assert_string_equal(json_string_value(json_object_get(r0, "taskType")), "RETRIEVAL_DOCUMENT");
  assert_string_equal(json_string_value(json_object_get(r0, "model")),
                      "models/gemini-embedding-001");
  assert_int_equal(json_integer_value(json_object_get(r0, "outputDimensionality")), 768);
  json_t *one = json_array_get(reqs, 1);
  assert_non_null(strstr(json_string_value(json_object_get(one, "path")), ":embedContent"));
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(one, "body"), "taskType")),
      "RETRIEVAL_QUERY");
  json_decref(reqs);
  free(r.vecs);
  free(r1.vecs);

  /* 429 with Retry-After: 1 -> retried, then fine. */
  json_decref(ctl("POST", "/__reset", "{}"));
  json_decref(
      ctl("POST", "/__script",
          "{\"queue\":[{\"match\":\"embed\",\"type\":\"rate_limit\",\"retryAfter\":\"1\"}]}"));
  uint64_t t0 = clock_mono_ms();
  struct res r2 = embed_wait(e, q, 1, MEM_TASK_QUERY);
  assert_int_equal(r2.status, 0);
  assert_true(clock_mono_ms() - t0 >= 900);
  reqs = embed_requests();
  assert_int_equal(json_array_size(reqs), 2);
  json_decref(reqs);
  free(r2.vecs);
  mem_embedder_free(e);
}

static void test_failures_and_cancel(void **state) {
  (void)state;
  json_decref(ctl("POST", "/__reset", "{}"));
  struct mem_embedder *e;
  struct mem_remote_config cfg = {
      .kind = "gemini", .base_url = base, .api_key = "k1", .max_tries = 2};
  assert_int_equal(mem_embedder_remote_new(&loop, http, &cfg, &e), 0);
  json_decref(ctl("POST", "/__script",
                  "{\"queue\":[{\"match\":\"embed\",\"type\":\"status\",\"status\":503},"
                  "{\"match\":\"embed\",\"type\":\"status\",\"status\":503}]}"));
  const char *q[] = {"hello"};
  struct res r = embed_wait(e, q, 1, MEM_TASK_QUERY);
  assert_int_equal(r.status, EG_EUPSTREAM);
  json_t *reqs = embed_requests();
  assert_int_equal(json_array_size(reqs), 2);
  json_decref(reqs);
  /* A bad key is not retried. */
  mem_embedder_free(e);
  struct mem_remote_config bad = {.kind = "gemini", .base_url = base, .api_key = "invalid-key"};
  assert_int_equal(mem_embedder_remote_new(&loop, http, &bad, &e), 0);
  r = embed_wait(e, q, 1, MEM_TASK_QUERY);
  assert_int_equal(r.status, EG_EINVAL);
  /* A hung request is cancelled by freeing the embedder. */
  mem_embedder_free(e);
  assert_int_equal(mem_embedder_remote_new(&loop, http, &cfg, &e), 0);
  json_decref(
      ctl("POST", "/__script", "{\"queue\":[{\"match\":\"embed\",\"type\":\"hang\"}]}"));
  size_t len = 5;
  struct res rc = {0};
  assert_int_equal(mem_embed(e, q, &len, 1, MEM_TASK_QUERY, on_vecs, &rc), 0);
  for (int i = 0; i < 20; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  mem_embedder_free(e);
  while (rc.calls == 0)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(rc.status, EG_ECANCELED);
  /* Bad configs. */
  struct mem_remote_config k = {.kind = "nope"};
  assert_int_equal(mem_embedder_remote_new(&loop, http, &k, &e), EG_EINVAL);
  struct mem_remote_config u = {.kind = "openai", .base_url = "ftp://x"};
  assert_int_equal(mem_embedder_remote_new(&loop, http, &u, &e), EG_EINVAL);
}

static void test_openai(void **state) {
  (void)state;
  json_decref(ctl("POST", "/__reset", "{}"));
  char b[128];
  snprintf(b, sizeof(b), "%s/v1/", base);
  struct mem_embedder *e;
  struct mem_remote_config cfg = {.kind = "openai",
                                  .base_url = b,
                                  .api_key = "sk-test",
                                  .model = "text-embedding-3-small",
                                  .batch = 2};
  assert_int_equal(mem_embedder_remote_new(&loop, http, &cfg, &e), 0);
  assert_string_equal(e->model, "openai:text-embedding-3-small/768");
  /* Reversed data order: vectors still land by index. Batches of 2 -> 2 requests. */
  json_decref(ctl("POST", "/__script", "{\"queue\":[{\"match\":\"embed\",\"shuffle\":true}]}"));
  const char *t[] = {"alpha beta", "gamma delta", "alpha beta"};
  struct res r = embed_wait(e, t, 3, MEM_TASK_DOCUMENT);
  assert_int_equal(r.status, 0);
  assert_memory_equal(r.vecs, r.vecs + 2 * MEM_DIM, MEM_DIM * sizeof(float));
  assert_memory_not_equal(r.vecs, r.vecs + MEM_DIM, MEM_DIM * sizeof(float));
  /* Same text through gemini gives the same (fake) vector: dialects agree. */
  struct mem_embedder *g;
  struct mem_remote_config gc = {.kind = "gemini", .base_url = base, .api_key = "k"};
  assert_int_equal(mem_embedder_remote_new(&loop, http, &gc, &g), 0);
  const char *one[] = {"gamma delta"};
  struct res rg = embed_wait(g, one, 1, MEM_TASK_DOCUMENT);
  assert_int_equal(rg.status, 0);
  for (int i = 0; i < MEM_DIM; i++)
    assert_true(fabsf(rg.vecs[i] - r.vecs[MEM_DIM + i]) < 1e-5f);
  json_t *reqs = embed_requests();
  assert_int_equal(json_array_size(reqs), 3);
  json_t *q0 = json_array_get(reqs, 0);
  assert_non_null(strstr(json_string_value(json_object_get(q0, "path")), "/v1/embeddings"));
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(q0, "headers"), "authorization")),
      "Bearer sk-test");
  json_t *body = json_object_get(q0, "body");
  assert_string_equal(json_string_value(json_object_get(body, "model")),
                      "text-embedding-3-small");
  assert_int_equal(json_integer_value(json_object_get(body, "dimensions")), 768);
  assert_int_equal(json_array_size(json_object_get(body, "input")), 2);
  json_decref(reqs);
  free(r.vecs);
  free(rg.vecs);
  mem_embedder_free(e);
  mem_embedder_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gemini),
      cmocka_unit_test(test_failures_and_cancel),
      cmocka_unit_test(test_openai),
  };
  return cmocka_run_group_tests(tests, start_fake, stop_fake);
}
