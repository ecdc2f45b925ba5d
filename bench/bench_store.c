/*
 * bench_store: durable message inserts per second through the storage interface, on
 * SQLite and PostgreSQL in the same run, printed as one table with ratios.
 *
 *   bench_store [--seconds S] [--inflight N] [--threads T] [--pg URL|none] [--dir DIR]
 *
 * Modes (every insert is a real message: the message row, its memory row with the
 * full-text index, the chat's last_activity, in one transaction, durable on return):
 *   per-row      one transaction per message, one writer thread (the plain baseline)
 *   per-row xT   one transaction per message, T threads calling store_message_insert
 *   group commit the store_async writer with N submitters always queued; every
 *                transaction takes what was queued while the previous one committed
 * "cpu us/i" is this process's CPU time (all threads) per insert: a figure that holds on
 * a loaded machine, unlike inserts/s (PostgreSQL's own CPU is not in it).
 * PostgreSQL comes from --pg, else ENGRAM_TEST_PG, else the file named by
 * ENGRAM_SERVICES_ENV (bench/store.sh starts a server and sets it); "none" skips it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "base/base.h"
#include "store/store.h"
#include "store/store_async.h"

static double g_seconds = 3;
static int g_inflight = 256;
static int g_threads = 8;

struct target {
  struct store *s;
  char user[ID_LEN + 1];
};

static void new_chat(struct target *t, char chat[ID_LEN + 1]) {
  struct store_chat c = {.title = "bench"};
  memcpy(c.user_id, t->user, sizeof(c.user_id));
  if (store_chat_create(t->s, &c) != 0) {
    fprintf(stderr, "chat create failed\n");
    exit(1);
  }
  memcpy(chat, c.id, ID_LEN + 1);
}

static void text_for(char *buf, size_t cap, uint64_t i) {
  snprintf(buf, cap,
           "message %llu: I walked my dog in the park this morning and thought about "
           "durable storage, group commit and fsync latency",
           (unsigned long long)i);
}

struct result {
  uint64_t n;
  double secs;
  double cpu; /* CPU seconds of this process (all threads) during the mode */
};

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- per-row ------------------------------------------------------------------------- */

struct rowthr {
  struct target *t;
  char chat[ID_LEN + 1];
  uint64_t deadline_ns;
  uint64_t n;
  int failures;
};

static void *rowthr_main(void *arg) {
  struct rowthr *r = arg;
  char text[256];
  while (clock_mono_ns() < r->deadline_ns) {
    text_for(text, sizeof(text), r->n);
    struct store_message_new m = {
        .chat_id = r->chat, .user_id = r->t->user, .role = "user", .content = text};
    if (store_message_insert(r->t->s, &m) != 0)
      r->failures++;
    r->n++;
  }
  return NULL;
}

static struct result per_row(struct target *t, int threads) {
  struct rowthr *r = xcalloc((size_t)threads, sizeof(*r));
  pthread_t *th = xcalloc((size_t)threads, sizeof(*th));
  uint64_t t0 = clock_mono_ns();
  for (int i = 0; i < threads; i++) {
    r[i].t = t;
    new_chat(t, r[i].chat);
    r[i].deadline_ns = t0 + (uint64_t)(g_seconds * 1e9);
  }
  t0 = clock_mono_ns();
  double c0 = cpu_now();
  for (int i = 0; i < threads; i++)
    pthread_create(&th[i], NULL, rowthr_main, &r[i]);
  struct result res = {0};
  for (int i = 0; i < threads; i++) {
    pthread_join(th[i], NULL);
    res.n += r[i].n;
    if (r[i].failures)
      fprintf(stderr, "per-row: %d failures\n", r[i].failures);
  }
  res.secs = (double)(clock_mono_ns() - t0) / 1e9;
  res.cpu = cpu_now() - c0;
  free(r);
  free(th);
  return res;
}

/* ---- group commit -------------------------------------------------------------------- */

struct gc {
  struct target *t;
  struct store_async *a;
  char chat[ID_LEN + 1];
  uint64_t deadline_ns;
  uint64_t submitted, done, failures;
  uint64_t last_ns;
};

struct gslot {
  struct gc *g;
  struct store_message_new m;
  char text[256];
};

static void gsubmit(struct gslot *sl);

static void gdone(void *arg, int status, struct store_message_new *m) {
  (void)m;
  struct gslot *sl = arg;
  struct gc *g = sl->g;
  g->done++;
  if (status != 0)
    g->failures++;
  g->last_ns = clock_mono_ns();
  if (g->last_ns < g->deadline_ns)
    gsubmit(sl);
}

static void gsubmit(struct gslot *sl) {
  struct gc *g = sl->g;
  text_for(sl->text, sizeof(sl->text), g->submitted++);
  sl->m = (struct store_message_new){
      .chat_id = g->chat, .user_id = g->t->user, .role = "user", .content = sl->text};
  if (store_async_insert(g->a, &sl->m, gdone, sl) != 0)
    exit(1);
}

static struct result group_commit(struct target *t, struct store_async_stats *st) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct gc g = {.t = t};
  new_chat(t, g.chat);
  if (store_async_new(&loop, t->s, &g.a) != 0)
    exit(1);
  struct gslot *slots = xcalloc((size_t)g_inflight, sizeof(*slots));
  uint64_t t0 = clock_mono_ns();
  double c0 = cpu_now();
  g.deadline_ns = t0 + (uint64_t)(g_seconds * 1e9);
  for (int i = 0; i < g_inflight; i++) {
    slots[i].g = &g;
    gsubmit(&slots[i]);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  double cpu = cpu_now() - c0;
  store_async_stats(g.a, st);
  store_async_close(g.a, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  free(slots);
  if (g.failures)
    fprintf(stderr, "group commit: %llu failures\n", (unsigned long long)g.failures);
  return (struct result){g.done, (double)(g.last_ns - t0) / 1e9, cpu};
}

/* ---- driver -------------------------------------------------------------------------- */

static void row(const char *backend, const char *mode, struct result r, double base,
                const char *extra) {
  double rate = r.secs > 0 ? (double)r.n / r.secs : 0;
  double us = r.n ? r.cpu * 1e6 / (double)r.n : 0;
  printf("| %-8s | %-26s | %9llu | %6.2f | %10.0f | %6.1fx | %8.1f | %s\n", backend, mode,
         (unsigned long long)r.n, r.secs, rate, base > 0 ? rate / base : 1.0, us, extra);
  fflush(stdout);
}

static void run_backend(const char *name, const char *url) {
  struct target t = {0};
  if (store_open(url, NULL, &t.s) != 0) {
    fprintf(stderr, "%s: cannot open %s\n", name, url);
    return;
  }
  struct store_user_new u = {.password_hash = "x"};
  char email[64], rnd[ID_LEN + 1];
  id_new(rnd);
  snprintf(email, sizeof(email), "bench-%s@example.test", rnd);
  u.email = email;
  if (store_user_create(t.s, &u) != 0)
    exit(1);
  memcpy(t.user, u.id, sizeof(t.user));

  struct result base = per_row(&t, 1);
  double base_rate = (double)base.n / base.secs;
  row(name, "per-row txn, 1 writer", base, base_rate, "");
  char mode[64];
  snprintf(mode, sizeof(mode), "per-row txn, %d threads", g_threads);
  row(name, mode, per_row(&t, g_threads), base_rate, "");
  struct store_async_stats st;
  struct result g = group_commit(&t, &st);
  char extra[128];
  snprintf(extra, sizeof(extra), "%llu txns, avg batch %.1f, max %llu, %llu fsyncs apart",
           (unsigned long long)st.transactions,
           st.transactions ? (double)st.inserts / (double)st.transactions : 0.0,
           (unsigned long long)st.max_batch, (unsigned long long)st.syncs);
  snprintf(mode, sizeof(mode), "group commit, %d queued", g_inflight);
  row(name, mode, g, base_rate, extra);
  store_close(t.s);
}

static bool svc_pg(char *out, size_t cap) {
  const char *file = getenv("ENGRAM_SERVICES_ENV");
  FILE *f = file ? fopen(file, "r") : NULL;
  bool found = false;
  char line[1024];
  while (f && !found && fgets(line, sizeof(line), f)) {
    if (strncmp(line, "ENGRAM_TEST_PG=", 15) != 0)
      continue;
    line[strcspn(line, "\r\n")] = 0;
    snprintf(out, cap, "%.*s", (int)(cap - 1), line + 15);
    found = true;
  }
  if (f)
    fclose(f);
  return found;
}

int main(int argc, char **argv) {
  log_init_from_env();
  const char *pg = getenv("ENGRAM_TEST_PG");
  const char *dir = NULL;
  char pgbuf[1024];
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
      g_seconds = atof(argv[++i]);
    else if (strcmp(argv[i], "--inflight") == 0 && i + 1 < argc)
      g_inflight = atoi(argv[++i]);
    else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
      g_threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--pg") == 0 && i + 1 < argc)
      pg = argv[++i];
    else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
      dir = argv[++i];
    else {
      fprintf(stderr, "usage: bench_store [--seconds S] [--inflight N] [--threads T]"
                      " [--pg URL|none] [--dir DIR]\n");
      return 2;
    }
  }
  if (!pg && svc_pg(pgbuf, sizeof(pgbuf)))
    pg = pgbuf;
  if (g_seconds <= 0 || g_inflight < 1 || g_threads < 1)
    return 2;

  char tmpl[] = "/tmp/engram-bench-XXXXXX";
  if (!dir) {
    dir = mkdtemp(tmpl);
    if (!dir)
      return 1;
  }
  char path[512];
  snprintf(path, sizeof(path), "%s/bench.db", dir);
  unlink(path);

  printf("durable message inserts (message + memory + FTS + chat update per row), %.1f s per"
         " mode\n\n",
         g_seconds);
  printf("| backend  | mode                       |   inserts |   secs |  inserts/s | vs row  |"
         " cpu us/i | notes\n");
  printf("|----------|----------------------------|-----------|--------|------------|---------|"
         "----------|------\n");
  run_backend("sqlite", path);
  if (pg && strcmp(pg, "none") != 0)
    run_backend("postgres", pg);
  else
    printf("| postgres | (skipped: no --pg / ENGRAM_TEST_PG)\n");

  char cmd[2048];
  snprintf(cmd, sizeof(cmd), "rm -f '%s' '%s-wal' '%s-shm'", path, path, path);
  if (system(cmd) != 0)
    return 1;
  if (dir == tmpl)
    rmdir(dir);
  return 0;
}
