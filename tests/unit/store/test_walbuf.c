/*
 * The WAL-buffering VFS of the SQLite writers (src/store/sqlite_walbuf.c), on raw SQLite
 * connections (no sockets, no store):
 *
 *   - same bytes: a seeded random mix of transactions (small commits, large ones that
 *     spill the page cache and rewrite spilled frames in place, which makes SQLite rewrite
 *     the frames' checksums at commit, rollbacks after a spill, deletes, checkpoints of
 *     every kind, WAL restarts) run once through the plain unix VFS and once through the
 *     buffering one, with SQLite's PRNG seeded alike (the WAL salts): after every step the
 *     -wal file and the database file hold the same bytes on both sides, and a reader
 *     connection (plain VFS) sees every committed row;
 *   - coalescing: a commit of many frames reaches the file in a handful of writes;
 *   - readers in other threads (plain VFS) read consistent snapshots while the writer
 *     commits;
 *   - rollback after a spill, then another connection commits, then the first one again:
 *     no frame of the rolled-back transaction lands on the other connection's frames;
 *   - crash: a child process commits and reports each commit once COMMIT has returned;
 *     killed with SIGKILL at random points, every reported row is in the reopened file and
 *     the file passes integrity_check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "store/store_int.h"

struct tmp {
  char dir[64];
};

static int setup(void **state) {
  struct tmp *t = calloc(1, sizeof(*t));
  snprintf(t->dir, sizeof(t->dir), "/tmp/engram-walbuf-XXXXXX");
  if (!mkdtemp(t->dir))
    return -1;
  *state = t;
  return 0;
}

static int teardown(void **state) {
  struct tmp *t = *state;
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
  int rc = system(cmd);
  free(t);
  return rc == 0 ? 0 : -1;
}

static sqlite3 *open_db(const char *path, const char *vfs, const char *pragmas) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
  assert_int_equal(rc, SQLITE_OK);
  char *msg = NULL;
  rc = sqlite3_exec(db, pragmas, NULL, NULL, &msg);
  if (rc != SQLITE_OK)
    fail_msg("pragmas: %s", msg);
  return db;
}

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK)
    fail_msg("%s: %s", sql, msg);
}

static int64_t query_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static void check_integrity(sqlite3 *db) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
  sqlite3_finalize(st);
}

/* FNV-1a over the 64-bit words of a whole file (0 for a missing one), and its size. */
static uint64_t file_hash(const char *path, long *size) {
  FILE *f = fopen(path, "rb");
  *size = -1;
  if (!f)
    return 0;
  uint64_t h = 1469598103934665603ull;
  uint64_t b[8192];
  size_t n;
  long total = 0;
  while ((n = fread(b, 1, sizeof(b), f)) > 0) {
    memset((char *)b + n, 0, sizeof(b) - n);
    for (size_t i = 0; i < (n + 7) / 8; i++)
      h = (h ^ b[i]) * 1099511628211ull;
    total += (long)n;
  }
  fclose(f);
  *size = total;
  return h;
}

static uint64_t rnd(uint64_t *s) { /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

/* ---- same bytes ---------------------------------------------------------------------- */

#define MIX_STEPS 120

struct snap {
  uint64_t wal, db;
  long wal_size, db_size;
  int64_t rows;
};

static void insert_rows(sqlite3 *db, uint64_t *s, int n, int64_t *next_id, int blob_max) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(
      sqlite3_prepare_v2(db, "INSERT INTO t(id, k, v) VALUES (?1, ?2, ?3)", -1, &st, NULL),
      SQLITE_OK);
  unsigned char blob[6000];
  for (int i = 0; i < n; i++) {
    int len = (int)(rnd(s) % (uint64_t)blob_max);
    for (int j = 0; j < len; j++)
      blob[j] = (unsigned char)rnd(s);
    sqlite3_bind_int64(st, 1, (*next_id)++);
    sqlite3_bind_int64(st, 2, (int64_t)(rnd(s) % 100000));
    sqlite3_bind_blob(st, 3, blob, len, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
}

/* Runs the mix on a fresh database through `vfs`, recording the files after each step. */
static void run_mix(const char *dir, const char *name, const char *vfs, uint64_t seed,
                    bool small_cache, struct snap *out) {
  char path[128], wal[140];
  snprintf(path, sizeof(path), "%s/%s.db", dir, name);
  snprintf(wal, sizeof(wal), "%s-wal", path);
  /* A small page cache (spills inside large transactions), frequent checkpoints (WAL
     restarts: a new header at offset 0). */
  const char *pragmas = small_cache
                            ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                              " PRAGMA cache_size=12; PRAGMA wal_autocheckpoint=300;"
                              " PRAGMA temp_store=MEMORY;"
                            : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                              " PRAGMA cache_size=-16384; PRAGMA wal_autocheckpoint=300;"
                              " PRAGMA temp_store=MEMORY;";
  sqlite3_test_control(SQLITE_TESTCTRL_PRNG_SEED, 20261126, NULL);
  sqlite3 *w = open_db(path, vfs, pragmas);
  exec(w, "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v BLOB);"
          " CREATE INDEX t_k ON t(k);");
  sqlite3 *r = open_db(path, "unix", "PRAGMA query_only=ON;");
  uint64_t s = seed;
  int64_t next_id = 1, rows = 0;
  for (int step = 0; step < MIX_STEPS; step++) {
    unsigned kind = (unsigned)(rnd(&s) % 10);
    if (kind <= 3) { /* a small commit, like a batch */
      int n = 1 + (int)(rnd(&s) % 20);
      exec(w, "BEGIN IMMEDIATE");
      insert_rows(w, &s, n, &next_id, 300);
      exec(w, "COMMIT");
      rows += n;
    } else if (kind <= 5) { /* large: spills, then rewrites early pages in place */
      int n = 40 + (int)(rnd(&s) % 80);
      int64_t first = next_id;
      exec(w, "BEGIN IMMEDIATE");
      insert_rows(w, &s, n, &next_id, 6000);
      char sql[160];
      snprintf(sql, sizeof(sql), "UPDATE t SET k = k + 1 WHERE id BETWEEN %lld AND %lld",
               (long long)first, (long long)first + 5);
      exec(w, sql);
      insert_rows(w, &s, 3, &next_id, 100);
      exec(w, "COMMIT");
      rows += n + 3;
    } else if (kind == 6) { /* a rollback after a spill */
      int64_t id0 = next_id;
      exec(w, "BEGIN IMMEDIATE");
      insert_rows(w, &s, 60, &next_id, 6000);
      exec(w, "ROLLBACK");
      next_id = id0;
    } else if (kind == 7) { /* deletes */
      char sql[128];
      snprintf(sql, sizeof(sql), "DELETE FROM t WHERE id %% 7 = %u", (unsigned)(rnd(&s) % 7));
      exec(w, sql);
      rows = query_int(w, "SELECT count(*) FROM t");
    } else if (kind == 8) { /* updates of random rows in one transaction */
      char sql[128];
      snprintf(sql, sizeof(sql), "UPDATE t SET k = k * 3 + 1 WHERE id %% 11 = %u",
               (unsigned)(rnd(&s) % 11));
      exec(w, sql);
    } else { /* a checkpoint of a random kind */
      static const int modes[] = {SQLITE_CHECKPOINT_PASSIVE, SQLITE_CHECKPOINT_FULL,
                                  SQLITE_CHECKPOINT_RESTART, SQLITE_CHECKPOINT_TRUNCATE};
      int mode = modes[rnd(&s) % 4];
      assert_int_equal(sqlite3_wal_checkpoint_v2(w, NULL, mode, NULL, NULL), SQLITE_OK);
    }
    /* The other connection sees every committed row. */
    assert_int_equal(query_int(r, "SELECT count(*) FROM t"), rows);
    out[step].rows = rows;
    out[step].wal = file_hash(wal, &out[step].wal_size);
    out[step].db = file_hash(path, &out[step].db_size);
  }
  check_integrity(r);
  sqlite3_close(r);
  sqlite3_close(w);
}

/* Seeds 1-3 with a page cache of 12 pages (spills, in-place rewrites, checksum rewrites),
   seed 4 with the store's 16 MiB (no spills: every transaction's frames in one flush). */
static void t_same_bytes_as_unix(void **state) {
  struct tmp *t = *state;
  const char *vfs = store__walbuf_vfs();
  assert_non_null(vfs);
  for (uint64_t seed = 1; seed <= 4; seed++) {
    bool small = seed <= 3;
    struct snap a[MIX_STEPS], b[MIX_STEPS];
    char na[16], nb[16];
    snprintf(na, sizeof(na), "plain%llu", (unsigned long long)seed);
    snprintf(nb, sizeof(nb), "buf%llu", (unsigned long long)seed);
    struct store_walbuf_stats s0, s1;
    store__walbuf_stats(&s0);
    run_mix(t->dir, na, "unix", seed * 0x9e3779b97f4a7c15ull, small, a);
    run_mix(t->dir, nb, vfs, seed * 0x9e3779b97f4a7c15ull, small, b);
    store__walbuf_stats(&s1);
    for (int i = 0; i < MIX_STEPS; i++) {
      if (a[i].wal != b[i].wal || a[i].wal_size != b[i].wal_size || a[i].db != b[i].db ||
          a[i].db_size != b[i].db_size)
        fail_msg("seed %llu step %d: wal %ld/%ld bytes %s, db %ld/%ld bytes %s",
                 (unsigned long long)seed, i, a[i].wal_size, b[i].wal_size,
                 a[i].wal == b[i].wal ? "same" : "differ", a[i].db_size, b[i].db_size,
                 a[i].db == b[i].db ? "same" : "differ");
      assert_int_equal(a[i].rows, b[i].rows);
    }
    uint64_t writes = s1.writes - s0.writes, pwrites = s1.pwrites - s0.pwrites;
    print_message("seed %llu: %llu commit frames, %llu xWrite calls, %llu writes to the file\n",
                  (unsigned long long)seed, (unsigned long long)(s1.commits - s0.commits),
                  (unsigned long long)writes, (unsigned long long)pwrites);
    /* The run went through the buffer. */
    assert_true(s1.commits - s0.commits > 50);
    assert_true(pwrites < writes);
    if (!small)
      assert_true(pwrites * 20 < writes);
  }
}

/* ---- coalescing ---------------------------------------------------------------------- */

static void t_commit_in_few_writes(void **state) {
  struct tmp *t = *state;
  char path[128];
  snprintf(path, sizeof(path), "%s/few.db", t->dir);
  sqlite3 *w = open_db(path, store__walbuf_vfs(),
                       "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                       " PRAGMA wal_autocheckpoint=0;");
  exec(w, "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v BLOB);"
          " CREATE INDEX t_k ON t(k);");
  uint64_t s = 42;
  int64_t next_id = 1;
  for (int c = 0; c < 20; c++) {
    struct store_walbuf_stats s0, s1;
    store__walbuf_stats(&s0);
    exec(w, "BEGIN IMMEDIATE");
    insert_rows(w, &s, 100, &next_id, 4000); /* ~200 KB: ~50 pages */
    exec(w, "COMMIT");
    store__walbuf_stats(&s1);
    uint64_t writes = s1.writes - s0.writes, pwrites = s1.pwrites - s0.pwrites;
    assert_true(writes >= 80); /* two per frame */
    /* ~50 frames of 4 KiB: two writes of at most 124 KiB. */
    if (pwrites > 3)
      fail_msg("commit %d: %llu xWrite calls reached the file as %llu writes", c,
               (unsigned long long)writes, (unsigned long long)pwrites);
    assert_int_equal(s1.commits - s0.commits, 1);
  }
  sqlite3_close(w);
}

/* ---- rollback after a spill, then another connection -------------------------------- */

static void t_rollback_then_other_writer(void **state) {
  struct tmp *t = *state;
  char path[128];
  snprintf(path, sizeof(path), "%s/rb.db", t->dir);
  const char *vfs = store__walbuf_vfs();
  const char *pragmas = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                        " PRAGMA cache_size=10; PRAGMA wal_autocheckpoint=0;";
  sqlite3 *a = open_db(path, vfs, pragmas);
  exec(a, "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v BLOB);"
          " CREATE INDEX t_k ON t(k);");
  sqlite3 *b = open_db(path, vfs, pragmas);
  uint64_t s = 7;
  int64_t next_id = 1, rows = 0;
  for (int round = 0; round < 5; round++) {
    /* An empty WAL: a's frames start with a new WAL header, then a transaction large
       enough to spill frames into the WAL, rolled back (part of its frames still in a's
       buffer: nothing reads them again) */
    assert_int_equal(sqlite3_wal_checkpoint_v2(a, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL),
                     SQLITE_OK);
    int64_t id0 = next_id;
    exec(a, "BEGIN IMMEDIATE");
    insert_rows(a, &s, 60, &next_id, 6000);
    exec(a, "ROLLBACK");
    next_id = id0;
    /* b commits where a's frames were */
    exec(b, "BEGIN IMMEDIATE");
    insert_rows(b, &s, 15, &next_id, 3000);
    exec(b, "COMMIT");
    rows += 15;
    /* a commits after b's frames */
    exec(a, "BEGIN IMMEDIATE");
    insert_rows(a, &s, 5, &next_id, 300);
    exec(a, "COMMIT");
    rows += 5;
    assert_int_equal(query_int(b, "SELECT count(*) FROM t"), rows);
    assert_int_equal(query_int(a, "SELECT count(*) FROM t"), rows);
  }
  sqlite3_close(b);
  sqlite3_close(a);
  /* The last close checkpointed the WAL into the database file: read it back. */
  sqlite3 *c = open_db(path, "unix", "PRAGMA query_only=ON;");
  assert_int_equal(query_int(c, "SELECT count(*) FROM t"), rows);
  check_integrity(c);
  sqlite3_close(c);
}

/* ---- readers in other threads -------------------------------------------------------- */

struct reader_arg {
  const char *path;
  atomic_bool stop;
  long reads, bad;
  int64_t seen;
};

/* Reads the newest rows in a loop (pages of the latest frames): in every snapshot they are
   consecutive ids up to max(id), each with k = 7 * id and a blob of (id % 3000) bytes, and
   max(id) never goes back; a page read from a frame whose bytes were not in the file yet
   (or stale ones) shows. */
static void *reader_main(void *arg) {
  struct reader_arg *r = arg;
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(r->path, &db, SQLITE_OPEN_READONLY, "unix") != SQLITE_OK)
    return NULL;
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT id, k, length(v), (SELECT max(id) FROM t) FROM t"
                         " WHERE id > (SELECT max(id) FROM t) - 8 ORDER BY id",
                         -1, &st, NULL) != SQLITE_OK) {
    r->bad++;
    sqlite3_close(db);
    return NULL;
  }
  while (!atomic_load(&r->stop)) {
    int rc;
    int64_t prev = -1, max = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      int64_t id = sqlite3_column_int64(st, 0);
      max = sqlite3_column_int64(st, 3);
      if ((prev >= 0 && id != prev + 1) || sqlite3_column_int64(st, 1) != 7 * id ||
          sqlite3_column_int64(st, 2) != id % 3000)
        r->bad++;
      prev = id;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_BUSY)
      r->bad++;
    if (rc == SQLITE_DONE) {
      if (prev < 0 ? r->seen != 0 : prev != max || max < r->seen)
        r->bad++;
      r->seen = max;
      r->reads++;
    }
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return NULL;
}

static void t_readers_see_every_commit(void **state) {
  struct tmp *t = *state;
  char path[128];
  snprintf(path, sizeof(path), "%s/readers.db", t->dir);
  sqlite3 *w = open_db(path, store__walbuf_vfs(),
                       "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                       " PRAGMA wal_autocheckpoint=200;");
  exec(w, "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, v BLOB);"
          " CREATE INDEX t_k ON t(k);");
  struct reader_arg r[2] = {{.path = path}, {.path = path}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, reader_main, &r[i]), 0);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(w,
                                      "INSERT INTO t(id, k, v) VALUES (?1, ?2, zeroblob(?3))",
                                      -1, &st, NULL),
                   SQLITE_OK);
  uint64_t s = 99;
  int64_t id = 0;
  uint64_t t0 = clock_mono_ns();
  int commits = 0;
  while (clock_mono_ns() - t0 < 1000000000ull || commits < 200) {
    exec(w, "BEGIN IMMEDIATE");
    int n = 1 + (int)(rnd(&s) % 20);
    for (int i = 0; i < n; i++) {
      id++;
      sqlite3_bind_int64(st, 1, id);
      sqlite3_bind_int64(st, 2, 7 * id);
      sqlite3_bind_int(st, 3, (int)(id % 3000));
      assert_int_equal(sqlite3_step(st), SQLITE_DONE);
      sqlite3_reset(st);
    }
    exec(w, "COMMIT");
    commits++;
  }
  sqlite3_finalize(st);
  for (int i = 0; i < 2; i++) {
    atomic_store(&r[i].stop, true);
    pthread_join(th[i], NULL);
    print_message("reader %d: %ld snapshots, %ld bad, last max id %lld of %lld\n", i,
                  r[i].reads, r[i].bad, (long long)r[i].seen, (long long)id);
    assert_int_equal(r[i].bad, 0);
    assert_true(r[i].reads > 10);
  }
  sqlite3_close(w);
}

/* ---- crash --------------------------------------------------------------------------- */

/* The child: commits batches forever, reporting the row count after each COMMIT. */
static void crash_child(const char *path, int fd) {
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                      store__walbuf_vfs()) != SQLITE_OK)
    _exit(2);
  if (sqlite3_exec(db,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                   " PRAGMA wal_autocheckpoint=400;"
                   " CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, k INTEGER, v BLOB);"
                   " CREATE INDEX IF NOT EXISTS t_k ON t(k);",
                   NULL, NULL, NULL) != SQLITE_OK)
    _exit(3);
  uint64_t s = (uint64_t)getpid() * 2654435761u + 1;
  int64_t next_id = 1;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, "INSERT INTO t(id, k, v) VALUES (?1, ?2, zeroblob(?3))", -1, &st,
                         NULL) != SQLITE_OK)
    _exit(4);
  for (;;) {
    int n = 1 + (int)(rnd(&s) % 30);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
      _exit(5);
    for (int i = 0; i < n; i++) {
      sqlite3_bind_int64(st, 1, next_id++);
      sqlite3_bind_int64(st, 2, (int64_t)(rnd(&s) % 1000000));
      sqlite3_bind_int(st, 3, (int)(rnd(&s) % 3000));
      if (sqlite3_step(st) != SQLITE_DONE)
        _exit(6);
      sqlite3_reset(st);
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
      _exit(7);
    int64_t acked = next_id - 1;
    if (write(fd, &acked, sizeof(acked)) != (ssize_t)sizeof(acked))
      _exit(8);
  }
}

static void t_crash_keeps_every_commit(void **state) {
  struct tmp *t = *state;
  char path[128];
  snprintf(path, sizeof(path), "%s/crash.db", t->dir);
  uint64_t s = (uint64_t)time(NULL);
  int64_t acked = 0;
  for (int round = 0; round < 4; round++) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(p[0]);
      crash_child(path, p[1]);
    }
    close(p[1]);
    /* Let it commit a random number of batches, then kill it mid-flight. */
    int want = 20 + (int)(rnd(&s) % 200), got = 0;
    int64_t v;
    while (got < want && read(p[0], &v, sizeof(v)) == (ssize_t)sizeof(v)) {
      acked = v;
      got++;
    }
    assert_int_equal(got, want);
    kill(pid, SIGKILL);
    while (read(p[0], &v, sizeof(v)) == (ssize_t)sizeof(v))
      acked = v; /* reported before it died */
    close(p[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    /* Every reported row is there, and the next run continues after them. */
    sqlite3 *db = open_db(path, "unix", "PRAGMA query_only=ON;");
    int64_t max = query_int(db, "SELECT COALESCE(MAX(id), 0) FROM t");
    assert_true(max >= acked);
    assert_int_equal(query_int(db, "SELECT count(*) FROM t"), max);
    check_integrity(db);
    sqlite3_close(db);
    /* The next child starts its ids at 1 again: start from a fresh file. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -f '%s' '%s-wal' '%s-shm'", path, path, path);
    assert_int_equal(system(cmd), 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(t_same_bytes_as_unix, setup, teardown),
      cmocka_unit_test_setup_teardown(t_commit_in_few_writes, setup, teardown),
      cmocka_unit_test_setup_teardown(t_rollback_then_other_writer, setup, teardown),
      cmocka_unit_test_setup_teardown(t_readers_see_every_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(t_crash_keeps_every_commit, setup, teardown),
  };
  if (getenv("TEST_FILTER")) /* TEST_FILTER=t_crash* runs some of them */
    cmocka_set_test_filter(getenv("TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
