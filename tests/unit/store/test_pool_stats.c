/*
 * store_pool_stats: the connection pool gauges /metrics shows, on SQLite (always) and on
 * PostgreSQL (when the test services run). Threads hammer the store while the main thread
 * samples the gauges: they stay within the pool's bounds, show the pool in use, and drop
 * back to zero once the calls are done.
 * @needs-services (PostgreSQL; the PostgreSQL case is skipped without it.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_test_util.h"

static char g_base[512], g_url[768], g_schema[64];

#define THREADS 12

struct load {
  struct store *s;
  char user[ID_LEN + 1], chat[ID_LEN + 1];
  atomic_int running;
  atomic_int failures;
};

static void *worker(void *arg) {
  struct load *l = arg;
  for (int i = 0; i < 40; i++) {
    struct store_message_new m = {
        .chat_id = l->chat, .user_id = l->user, .role = "user", .content = "pool"};
    if (store_message_insert(l->s, &m) != 0)
      atomic_fetch_add(&l->failures, 1);
    struct store_messages ms;
    if (store_message_last(l->s, l->chat, 5, &ms) != 0)
      atomic_fetch_add(&l->failures, 1);
    else
      store_messages_free(&ms);
    if (store_ping(l->s) != 0)
      atomic_fetch_add(&l->failures, 1);
  }
  atomic_fetch_sub(&l->running, 1);
  return NULL;
}

static void check_pool(const char *url, unsigned size, unsigned writer_size) {
  struct store *s;
  assert_int_equal(store_open(url, NULL, &s), 0);
  struct store_pool_stats ps;
  store_pool_stats(s, &ps);
  assert_int_equal(ps.size, size);
  assert_int_equal(ps.writer_size, writer_size);
  assert_int_equal(ps.in_use, 0);
  assert_int_equal(ps.waiters, 0);
  assert_int_equal(ps.writer_in_use, 0);
  assert_int_equal(ps.reconnects, 0);

  struct load l = {.s = s};
  struct store_user_new u = {.email = "pool@example.test", .password_hash = "h"};
  assert_int_equal(store_user_create(s, &u), 0);
  struct store_chat c = {.title = "pool"};
  memcpy(c.user_id, u.id, sizeof(u.id));
  assert_int_equal(store_chat_create(s, &c), 0);
  memcpy(l.user, u.id, sizeof l.user);
  memcpy(l.chat, c.id, sizeof l.chat);

  pthread_t th[THREADS];
  atomic_store(&l.running, THREADS);
  for (int i = 0; i < THREADS; i++)
    pthread_create(&th[i], NULL, worker, &l);
  unsigned max_in_use = 0, max_busy_any = 0, max_open = 0;
  while (atomic_load(&l.running) > 0) {
    store_pool_stats(s, &ps);
    assert_true(ps.open <= ps.size);
    assert_true(ps.in_use <= ps.size);
    assert_true(ps.waiters <= THREADS);
    assert_true(ps.writer_in_use <= writer_size);
    assert_true(ps.writer_waiters <= THREADS);
    max_in_use = EG_MAX(max_in_use, ps.in_use);
    max_busy_any = EG_MAX(max_busy_any, ps.in_use + ps.writer_in_use);
    max_open = EG_MAX(max_open, ps.open);
  }
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&l.failures), 0);
  assert_true(max_busy_any >= 1); /* the sampler saw the pool at work */
  assert_true(max_open >= 1);

  store_pool_stats(s, &ps);
  assert_int_equal(ps.in_use, 0);
  assert_int_equal(ps.waiters, 0);
  assert_int_equal(ps.writer_in_use, 0);
  assert_int_equal(ps.writer_waiters, 0);
  assert_true(ps.open >= 1 && ps.open <= ps.size);
  fprintf(stderr, "%s: max in use %u of %u, max open %u, open after %u\n", store_backend(s),
          max_in_use, ps.size, max_open, ps.open);
  store_close(s);
}

static void t_sqlite(void **state) {
  (void)state;
  char dir[] = "/tmp/engram-pool-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof path, "%s/pool.db", dir);
  check_pool(path, 4, 1);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void t_postgres(void **state) {
  (void)state;
  if (!g_url[0])
    skip();
  check_pool(g_url, 8, 0);
}

int main(void) {
  log_init_from_env();
  if (svc_get("ENGRAM_TEST_PG", g_base, sizeof(g_base))) {
    char id[ID_LEN + 1];
    id_new(id);
    snprintf(g_schema, sizeof(g_schema), "store_pool_%s", id + 16);
    if (!pg_private_url(g_base, g_schema, g_url, sizeof(g_url)))
      g_url[0] = 0;
  }
  const struct CMUnitTest tests[] = {cmocka_unit_test(t_sqlite), cmocka_unit_test(t_postgres)};
  int fails = cmocka_run_group_tests_name("store/pool_stats", tests, NULL, NULL);
  if (g_schema[0])
    pg_drop_schema(g_base, g_schema);
  return fails;
}
