/*
 * PostgreSQL reconnect: the store keeps working across a server restart without being
 * reopened (every pooled connection is revived), and reports EG_ECLOSED, without hanging,
 * while the server is down.
 * @needs-services @serial (restarts the shared PostgreSQL server.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>

#include "store/store.h"
#include "store/store_test_util.h"

static char g_base[512], g_ctl[1024], g_url[768], g_schema[64];

static int pg_ctl(const char *action) {
  char cmd[1200];
  snprintf(cmd, sizeof(cmd), "%s %s >/dev/null 2>&1", g_ctl, action);
  return system(cmd);
}

struct worker {
  struct store *s;
  const char *user, *chat;
  int failures;
};

static void *worker_main(void *arg) {
  struct worker *w = arg;
  for (int i = 0; i < 20; i++) {
    struct store_message_new m = {
        .chat_id = w->chat, .user_id = w->user, .role = "user", .content = "parallel"};
    if (store_message_insert(w->s, &m) != 0)
      w->failures++;
    struct store_messages l;
    if (store_message_last(w->s, w->chat, 3, &l) != 0)
      w->failures++;
    store_messages_free(&l);
  }
  return NULL;
}

/* Runs 6 threads at once so that several pooled connections are in use. */
static int parallel(struct store *s, const char *user, const char *chat) {
  pthread_t th[6];
  struct worker w[6];
  int failures = 0;
  for (int i = 0; i < 6; i++) {
    w[i] = (struct worker){s, user, chat, 0};
    pthread_create(&th[i], NULL, worker_main, &w[i]);
  }
  for (int i = 0; i < 6; i++) {
    pthread_join(th[i], NULL);
    failures += w[i].failures;
  }
  return failures;
}

static void t_restart(void **state) {
  (void)state;
  if (!g_url[0] || !g_ctl[0])
    skip();
  struct store *s;
  assert_int_equal(store_open(g_url, NULL, &s), 0);
  struct store_user_new u = {.email = "restart@example.test", .password_hash = "h"};
  assert_int_equal(store_user_create(s, &u), 0);
  struct store_chat c = {.title = "restart"};
  memcpy(c.user_id, u.id, sizeof(u.id));
  assert_int_equal(store_chat_create(s, &c), 0);
  assert_int_equal(parallel(s, u.id, c.id), 0);

  /* Restart: every pooled connection is now dead; calls still succeed. */
  assert_int_equal(pg_ctl("restart -m fast"), 0);
  assert_int_equal(store_ping(s), 0);
  struct store_pool_stats ps; /* the revived connection counts as a reconnect */
  store_pool_stats(s, &ps);
  assert_true(ps.reconnects >= 1);
  assert_int_equal(ps.in_use, 0);
  struct store_message_new m = {
      .chat_id = c.id, .user_id = u.id, .role = "user", .content = "after restart"};
  assert_int_equal(store_message_insert(s, &m), 0);
  assert_int_equal(parallel(s, u.id, c.id), 0);
  struct store_messages l;
  assert_int_equal(store_message_last(s, c.id, 1000, &l), 0);
  assert_int_equal(l.n, 6 * 20 * 2 + 1);
  store_messages_free(&l);

  /* Down: a clear error, quickly; up again: back to normal. */
  assert_int_equal(pg_ctl("stop -m fast"), 0);
  uint64_t t0 = clock_mono_ms();
  int down_rc = store_message_insert(s, &m);
  int down_ping = store_ping(s);
  uint64_t took = clock_mono_ms() - t0;
  int up = pg_ctl("start");
  assert_int_equal(up, 0);
  assert_int_equal(down_rc, EG_ECLOSED);
  assert_int_equal(down_ping, EG_ECLOSED);
  assert_true(took < 30000);
  struct store_message_new m2 = {
      .chat_id = c.id, .user_id = u.id, .role = "user", .content = "after start"};
  assert_int_equal(store_message_insert(s, &m2), 0);
  assert_int_equal(parallel(s, u.id, c.id), 0);
  store_close(s);
}

int main(void) {
  log_init_from_env();
  if (svc_get("ENGRAM_TEST_PG", g_base, sizeof(g_base)) &&
      svc_get("ENGRAM_TEST_PG_CTL", g_ctl, sizeof(g_ctl))) {
    char id[ID_LEN + 1];
    id_new(id);
    snprintf(g_schema, sizeof(g_schema), "store_restart_%s", id + 16);
    if (!pg_private_url(g_base, g_schema, g_url, sizeof(g_url)))
      g_url[0] = 0;
  }
  const struct CMUnitTest tests[] = {cmocka_unit_test(t_restart)};
  int fails = cmocka_run_group_tests_name("store/pg_restart", tests, NULL, NULL);
  if (g_schema[0]) {
    if (pg_ctl("status") != 0)
      (void)pg_ctl("start"); /* never leave the shared server down */
    pg_drop_schema(g_base, g_schema);
  }
  return fails ? 1 : 0;
}
