/* Unit tests for src/eio without sockets: the shared timer queue (timerq) that drives
   every session's heartbeat, and the Engine.IO query-string parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "eio/eio.h"
#include "eio/timerq.h"

/* ---- timerq -------------------------------------------------------------------------------- */

struct rec {
  struct tq_node n;
  int id;
};

static int fired[64];
static int nfired;
static struct tq *readd_q;
static struct rec *readd_target;

static void fire(struct tq *q, struct tq_node *n) {
  (void)q;
  struct rec *r = (struct rec *)n;
  fired[nfired++] = r->id;
  assert_false(tq_queued(n)); /* unqueued before the callback */
  if (readd_target == r) {
    readd_target = NULL;
    tq_add(readd_q, 0, n, 1000); /* re-adding from the callback is allowed */
  }
}

static void test_timerq_order(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct tq q;
  tq_init(&q, &loop, fire, NULL);
  struct rec r[6];
  for (int i = 0; i < 6; i++) {
    tq_node_init(&r[i].n);
    r[i].id = i;
  }
  uint64_t now = uv_now(&loop);
  /* Lane 0 fixed duration (FIFO), lane 1 out-of-order insertions (sorted from the tail). */
  tq_add(&q, 0, &r[0].n, 100);
  tq_add(&q, 0, &r[1].n, 100);
  tq_add(&q, 1, &r[2].n, 300);
  tq_add(&q, 1, &r[3].n, 50);
  tq_add(&q, 1, &r[4].n, 200);
  tq_add(&q, 1, &r[5].n, 250);
  assert_true(tq_queued(&r[3].n));
  tq_del(&q, &r[5].n);
  assert_false(tq_queued(&r[5].n));
  tq_del(&q, &r[5].n); /* twice is a no-op */
  nfired = 0;
  tq_run(&q, now + 49);
  assert_int_equal(nfired, 0);
  tq_run(&q, now + 100);
  assert_int_equal(nfired, 3);
  assert_int_equal(fired[0], 3);
  assert_int_equal(fired[1], 0);
  assert_int_equal(fired[2], 1);
  /* Re-adding moves a node: r[4] (200) becomes +1000 relative to uv_now. */
  tq_add(&q, 1, &r[4].n, 1000);
  readd_q = &q;
  readd_target = &r[2];
  tq_run(&q, now + 300);
  assert_int_equal(nfired, 4);
  assert_int_equal(fired[3], 2);
  assert_true(tq_queued(&r[2].n)); /* re-added by its callback */
  tq_run(&q, now + 5000);
  assert_int_equal(nfired, 6);
  assert_false(tq_queued(&r[2].n));
  assert_false(tq_queued(&r[4].n));
  tq_close(&q, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void stop_loop(struct tq *q, struct tq_node *n) {
  (void)n;
  fired[nfired++] = 99;
  tq_close(q, NULL);
}

static void keep_cb(uv_timer_t *t) { (void)t; }

static void test_timerq_real_timer(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct tq q;
  tq_init(&q, &loop, stop_loop, NULL);
  struct tq_node n;
  tq_node_init(&n);
  nfired = 0;
  tq_add(&q, 2, &n, 20);
  /* The queue's timer is unref'd: keep the loop alive with a ref'd one. */
  uv_timer_t keep;
  uv_timer_init(&loop, &keep);
  uv_timer_start(&keep, keep_cb, 200, 0);
  uint64_t t0 = uv_hrtime();
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(nfired, 1);
  assert_true(uv_hrtime() - t0 >= 15 * 1000000ull);
  uv_close((uv_handle_t *)&keep, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_timerq_many(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct tq q;
  tq_init(&q, &loop, fire, NULL);
  enum { N = 20000 };
  struct rec *r = calloc(N, sizeof(*r));
  for (int i = 0; i < N; i++) {
    tq_node_init(&r[i].n);
    r[i].id = i & 63;
    tq_add(&q, 0, &r[i].n, 25000);
  }
  /* Delete every other one: O(1) each. */
  for (int i = 0; i < N; i += 2)
    tq_del(&q, &r[i].n);
  nfired = 0;
  uint64_t now = uv_now(&loop);
  tq_run(&q, now + 24999);
  assert_int_equal(nfired, 0);
  for (int i = 1; i < N; i += 2)
    assert_true(tq_queued(&r[i].n));
  tq_close(&q, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  free(r);
}

/* ---- query -------------------------------------------------------------------------------------- */

static void check_query(const char *qs, const char *eio, const char *transport,
                        const char *sid) {
  struct eio_query q;
  eio_query_parse(slice_from_cstr(qs), &q);
  assert_int_equal(q.has_eio, eio != NULL);
  assert_int_equal(q.has_transport, transport != NULL);
  assert_int_equal(q.has_sid, sid != NULL);
  if (eio)
    assert_true(slice_eq_cstr(q.eio, eio));
  if (transport)
    assert_true(slice_eq_cstr(q.transport, transport));
  if (sid)
    assert_true(slice_eq_cstr(q.sid, sid));
}

static void test_query(void **state) {
  (void)state;
  check_query("EIO=4&transport=polling", "4", "polling", NULL);
  check_query("EIO=4&transport=polling&t=Nabc&sid=abcdefghijklmnopqrst", "4", "polling",
              "abcdefghijklmnopqrst");
  check_query("", NULL, NULL, NULL);
  check_query("&&&", NULL, NULL, NULL);
  check_query("EIO", "", NULL, NULL);
  check_query("EIO=&transport=", "", "", NULL);
  check_query("EIO=3&EIO=4", "3", NULL, NULL); /* the first one counts */
  check_query("eio=4&Transport=websocket", NULL, NULL, NULL); /* case matters */
  check_query("sid=a=b&x", NULL, NULL, "a=b");
  check_query("transport=websocket&EIO=4&b64=1", "4", "websocket", NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_timerq_order),
      cmocka_unit_test(test_timerq_real_timer),
      cmocka_unit_test(test_timerq_many),
      cmocka_unit_test(test_query),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
