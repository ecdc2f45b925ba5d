/* The Pinecone vector store against tests/fakes/pinecone.mjs: upsert with metadata, query
   filtered by user and model (user isolation), delete by ids, forget-all by filter,
   headers, auth errors, retries, dimension errors, cancel. */
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

#define KEY "pc-test-key"

#define FAKE_SCRIPT "pinecone.mjs"
#include "memory/fake_child.h"

struct res {
  int calls;
  int status;
  size_t n;
  struct mem_hit hits[16];
};

static void on_done_cb(void *ud, int status) {
  struct res *r = ud;
  r->calls++;
  r->status = status;
}

static void on_query(void *ud, int status, const struct mem_hit *hits, size_t n) {
  struct res *r = ud;
  r->calls++;
  r->status = status;
  r->n = n;
  if (n > 16)
    n = 16;
  if (n > 0)
    memcpy(r->hits, hits, n * sizeof(*hits));
}

static void wait_res(struct res *r) {
  while (r->calls == 0)
    uv_run(&loop, UV_RUN_ONCE);
}

static void unit(float *v, int seed) {
  for (int i = 0; i < MEM_DIM; i++)
    v[i] = (float)((i * 31 + seed * 17) % 13) - 6.0f + (i == seed ? 20.0f : 0.0f);
  double s = 0;
  for (int i = 0; i < MEM_DIM; i++)
    s += (double)v[i] * v[i];
  for (int i = 0; i < MEM_DIM; i++)
    v[i] = (float)(v[i] / sqrt(s));
}

static struct mem_pinecone *open_pc(const char *key, int tries) {
  struct mem_pinecone *pc;
  struct mem_pinecone_config cfg = {.host = base, .api_key = key, .max_tries = tries};
  assert_int_equal(mem_pinecone_new(&loop, http, &cfg, &pc), 0);
  return pc;
}

#define ID(n) "0000000000000000000000" #n

static void test_upsert_query_delete(void **state) {
  (void)state;
  json_decref(ctl("POST", "/__reset", "{}"));
  struct mem_pinecone *pc = open_pc(KEY, 3);
  static float v[6][MEM_DIM];
  for (int i = 0; i < 6; i++)
    unit(v[i], i);
  struct mem_pc_record recs[] = {
      {ID(01), "alice", ID(90), "my dog is Biscuit", 1000, v[0]},
      {ID(02), "alice", ID(90), "flight on May 3", 2000, v[1]},
      {ID(03), "alice", NULL, "a note", 3000, v[2]},
      {ID(04), "bob", ID(91), "bob's secret", 4000, v[0]},
      {ID(05), "bob", ID(91), "bob again", 5000, v[1]},
  };
  struct res r = {0};
  assert_int_equal(mem_pinecone_upsert(pc, "m1", recs, 5, MEM_DIM, on_done_cb, &r), 0);
  assert_int_equal(r.calls, 0);
  wait_res(&r);
  assert_int_equal(r.status, 0);
  /* Alice's query with the vector Bob also has: only Alice's come back, best first. */
  struct res q = {0};
  assert_int_equal(mem_pinecone_query(pc, "alice", "m1", v[0], MEM_DIM, 10, on_query, &q), 0);
  wait_res(&q);
  assert_int_equal(q.status, 0);
  assert_int_equal(q.n, 3);
  assert_string_equal(q.hits[0].id, ID(01));
  assert_true(fabsf(q.hits[0].score - 1.0f) < 1e-4f);
  assert_int_equal(q.hits[0].created_at, 1000);
  for (size_t i = 0; i < q.n; i++) {
    assert_string_not_equal(q.hits[i].id, ID(04));
    assert_string_not_equal(q.hits[i].id, ID(05));
  }
  /* Another model's vectors are never compared. */
  struct res q2 = {0};
  assert_int_equal(mem_pinecone_query(pc, "alice", "m2", v[0], MEM_DIM, 10, on_query, &q2), 0);
  wait_res(&q2);
  assert_int_equal(q2.status, 0);
  assert_int_equal(q2.n, 0);
  /* The wire: headers, metadata, filter. */
  json_t *log = ctl("GET", "/__requests", NULL);
  json_t *up = json_array_get(log, 0);
  assert_string_equal(json_string_value(json_object_get(up, "path")), "/vectors/upsert");
  json_t *h = json_object_get(up, "headers");
  assert_string_equal(json_string_value(json_object_get(h, "api-key")), KEY);
  assert_non_null(json_string_value(json_object_get(h, "x-pinecone-api-version")));
  json_t *v0 = json_array_get(json_object_get(json_object_get(up, "body"), "vectors"), 0);
  json_t *md = json_object_get(v0, "metadata");
  assert_string_equal(json_string_value(json_object_get(md, "user")), "alice");
  assert_string_equal(json_string_value(json_object_get(md, "chat")), ID(90));
  assert_string_equal(json_string_value(json_object_get(md, "text")), "my dog is Biscuit");
  assert_string_equal(json_string_value(json_object_get(md, "model")), "m1");
  json_t *qr = json_object_get(json_array_get(log, 1), "body");
  assert_int_equal(json_integer_value(json_object_get(qr, "topK")), 10);
  json_t *and = json_object_get(json_object_get(qr, "filter"), "$and");
  assert_string_equal(json_string_value(json_object_get(
                          json_object_get(json_array_get(and, 0), "user"), "$eq")),
                      "alice");
  json_decref(log);
  /* Delete one by id, then forget-all of Bob. */
  const char *ids[] = {ID(01)};
  struct res d = {0};
  assert_int_equal(mem_pinecone_delete(pc, ids, 1, on_done_cb, &d), 0);
  wait_res(&d);
  assert_int_equal(d.status, 0);
  struct res d2 = {0};
  assert_int_equal(mem_pinecone_delete_user(pc, "bob", on_done_cb, &d2), 0);
  wait_res(&d2);
  assert_int_equal(d2.status, 0);
  struct res q3 = {0};
  assert_int_equal(mem_pinecone_query(pc, "alice", "m1", v[0], MEM_DIM, 10, on_query, &q3), 0);
  wait_res(&q3);
  assert_int_equal(q3.n, 2);
  struct res q4 = {0};
  assert_int_equal(mem_pinecone_query(pc, "bob", "m1", v[0], MEM_DIM, 10, on_query, &q4), 0);
  wait_res(&q4);
  assert_int_equal(q4.status, 0);
  assert_int_equal(q4.n, 0);
  mem_pinecone_free(pc);
}

static void test_errors_retries_cancel(void **state) {
  (void)state;
  json_decref(ctl("POST", "/__reset", "{}"));
  static float v[MEM_DIM];
  unit(v, 3);
  /* Wrong key: 401 "Unauthorized" -> EG_EAUTH. */
  struct mem_pinecone *bad = open_pc("wrong", 3);
  struct res r = {0};
  assert_int_equal(mem_pinecone_query(bad, "alice", "m1", v, MEM_DIM, 3, on_query, &r), 0);
  wait_res(&r);
  assert_int_equal(r.status, EG_EAUTH);
  mem_pinecone_free(bad);
  /* 429 then fine: retried. */
  struct mem_pinecone *pc = open_pc(KEY, 3);
  json_decref(ctl("POST", "/__script", "{\"queue\":[{\"status\":429,\"match\":\"query\"}]}"));
  struct res r2 = {0};
  assert_int_equal(mem_pinecone_query(pc, "alice", "m1", v, MEM_DIM, 3, on_query, &r2), 0);
  wait_res(&r2);
  assert_int_equal(r2.status, 0);
  /* 500 on every try -> EG_EUPSTREAM. */
  json_decref(ctl("POST", "/__script",
                  "{\"queue\":[{\"status\":500},{\"status\":500},{\"status\":500}]}"));
  struct res r3 = {0};
  assert_int_equal(mem_pinecone_query(pc, "alice", "m1", v, MEM_DIM, 3, on_query, &r3), 0);
  wait_res(&r3);
  assert_int_equal(r3.status, EG_EUPSTREAM);
  /* Dimension mismatch: 400 -> EG_EINVAL. */
  struct mem_pc_record rec = {ID(07), "alice", NULL, "x", 1, v};
  struct res r4 = {0};
  assert_int_equal(mem_pinecone_upsert(pc, "m1", &rec, 1, 10, on_done_cb, &r4), 0);
  wait_res(&r4);
  assert_int_equal(r4.status, EG_EINVAL);
  /* Bad arguments: no callback. */
  struct mem_pc_record badrec = {"nope", "alice", NULL, "x", 1, v};
  assert_int_equal(mem_pinecone_upsert(pc, "m1", &badrec, 1, MEM_DIM, on_done_cb, &r4),
                   EG_EINVAL);
  assert_int_equal(mem_pinecone_query(pc, "alice", "m1", v, MEM_DIM, 0, on_query, &r4),
                   EG_EINVAL);
  /* Free with a request in flight: its callback gets EG_ECANCELED. */
  struct res r5 = {0};
  assert_int_equal(mem_pinecone_delete_user(pc, "alice", on_done_cb, &r5), 0);
  mem_pinecone_free(pc);
  wait_res(&r5);
  assert_int_equal(r5.status, EG_ECANCELED);
  struct mem_pinecone *none;
  struct mem_pinecone_config c = {.host = base};
  assert_int_equal(mem_pinecone_new(&loop, http, &c, &none), EG_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_upsert_query_delete),
      cmocka_unit_test(test_errors_retries_cancel),
  };
  return cmocka_run_group_tests(tests, start_fake, stop_fake);
}
