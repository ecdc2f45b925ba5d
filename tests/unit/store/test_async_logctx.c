/*
 * store_async keeps the caller's log context (request id, socket id): the work function
 * runs with it on the pool thread, and the callback (of a closure and of a group-committed
 * insert) runs with it on the loop thread, while the loop's own context is left as it
 * was. So a store error logged for a request carries that request's id.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "store/store.h"
#include "store/store_async.h"

struct seen {
  struct log_ctx work, done, ins;
  int done_calls, ins_calls;
};

static int work_fn(struct store *s, void *arg) {
  struct seen *w = arg;
  log_ctx_get(&w->work);
  return store_ping(s);
}

static void done_fn(void *arg, int status) {
  struct seen *w = arg;
  assert_int_equal(status, 0);
  log_ctx_get(&w->done);
  w->done_calls++;
}

static void ins_fn(void *arg, int status, struct store_message_new *m) {
  (void)m;
  struct seen *w = arg;
  assert_int_equal(status, 0);
  log_ctx_get(&w->ins);
  w->ins_calls++;
}

static void on_closed(void *arg) {
  *(bool *)arg = true;
}

static void t_context_travels(void **state) {
  (void)state;
  char dir[] = "/tmp/engram-salog-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof path, "%s/a.db", dir);
  struct store *s;
  assert_int_equal(store_open(path, NULL, &s), 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct store_async *a;
  assert_int_equal(store_async_new(&loop, s, &a), 0);

  struct store_user_new u = {.email = "ctx@example.test", .password_hash = "h"};
  assert_int_equal(store_user_create(s, &u), 0);
  struct store_chat c = {.title = "ctx"};
  memcpy(c.user_id, u.id, sizeof u.id);
  assert_int_equal(store_chat_create(s, &c), 0);

  struct seen w1 = {0}, w2 = {0};
  log_ctx_set_request_id("req-one", 7);
  assert_int_equal(store_async_run(a, work_fn, done_fn, &w1), 0);
  log_ctx_set_request_id(NULL, 0);
  log_ctx_set_sid("sidsidsidsidsidsid01");
  assert_int_equal(store_async_run(a, work_fn, done_fn, &w2), 0);
  struct store_message_new m = {
      .chat_id = c.id, .user_id = u.id, .role = "user", .content = "hello"};
  assert_int_equal(store_async_insert(a, &m, ins_fn, &w2), 0);
  /* The loop runs with a context of its own, which the callbacks must not leave changed. */
  log_ctx_set_sid(NULL);
  log_ctx_set_request_id("loop", 4);
  while (w1.done_calls + w2.done_calls + w2.ins_calls < 3)
    uv_run(&loop, UV_RUN_ONCE);

  assert_string_equal(w1.work.request_id, "req-one");
  assert_string_equal(w1.work.sid, "");
  assert_string_equal(w1.done.request_id, "req-one");
  assert_string_equal(w2.work.request_id, "");
  assert_string_equal(w2.work.sid, "sidsidsidsidsidsid01");
  assert_string_equal(w2.done.sid, "sidsidsidsidsidsid01");
  assert_string_equal(w2.ins.sid, "sidsidsidsidsidsid01");
  assert_string_equal(w2.ins.request_id, "");
  struct log_ctx now;
  log_ctx_get(&now);
  assert_string_equal(now.request_id, "loop");
  assert_string_equal(now.sid, "");

  bool closed = false;
  store_async_close(a, on_closed, &closed);
  while (!closed)
    uv_run(&loop, UV_RUN_ONCE);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  store_close(s);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  log_init_from_env();
  const struct CMUnitTest tests[] = {cmocka_unit_test(t_context_travels)};
  return cmocka_run_group_tests_name("store/async_logctx", tests, NULL, NULL);
}
