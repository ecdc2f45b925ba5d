/*
 * store_crashwriter: the driver of tests/sh/test_store_crash.sh.
 *
 *   store_crashwriter write URL [INFLIGHT]
 *     Opens the store at URL (a SQLite path or postgres:// URL), creates a user and a chat,
 *     prints "chat USER CHAT", then inserts messages through the group-commit writer
 *     forever, keeping INFLIGHT (default 64) queued, and prints each message id on its own
 *     line (write(2), unbuffered) only after its completion said it is durable. Meant to
 *     be killed with SIGKILL mid-burst.
 *
 *   store_crashwriter check URL USER < ids
 *     Reopens the store and checks that every id read from stdin is a message of USER.
 *     For SQLite also runs PRAGMA integrity_check and the FTS5 integrity-check. Prints
 *     "checked N ids, M missing, integrity ok|<what>" and exits 0 only when all is well.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "base/base.h"
#include "store/store.h"
#include "store/store_async.h"

struct writer {
  struct store_async *a;
  char user[ID_LEN + 1], chat[ID_LEN + 1];
  uint64_t seq;
};

struct slot {
  struct writer *w;
  struct store_message_new m;
  char text[96];
};

static void submit(struct slot *sl);

static void on_done(void *arg, int status, struct store_message_new *m) {
  struct slot *sl = arg;
  if (status != 0) {
    fprintf(stderr, "insert failed: %s\n", eg_strerror(status));
    exit(1);
  }
  char line[ID_LEN + 2];
  memcpy(line, m->id, ID_LEN);
  line[ID_LEN] = '\n';
  if (write(1, line, ID_LEN + 1) != ID_LEN + 1)
    exit(1);
  submit(sl);
}

static void submit(struct slot *sl) {
  struct writer *w = sl->w;
  snprintf(sl->text, sizeof(sl->text), "crash test message %llu about durable zebras",
           (unsigned long long)w->seq++);
  sl->m = (struct store_message_new){
      .chat_id = w->chat, .user_id = w->user, .role = "user", .content = sl->text};
  if (store_async_insert(w->a, &sl->m, on_done, sl) != 0)
    exit(1);
}

static int do_write(const char *url, int inflight) {
  struct store *s;
  if (store_open(url, NULL, &s) != 0)
    return 1;
  struct store_user_new u = {.password_hash = "x"};
  char email[64], rnd[ID_LEN + 1];
  id_new(rnd);
  snprintf(email, sizeof(email), "crash-%s@example.test", rnd);
  u.email = email;
  if (store_user_create(s, &u) != 0)
    return 1;
  struct store_chat c = {.title = "crash"};
  memcpy(c.user_id, u.id, sizeof(u.id));
  if (store_chat_create(s, &c) != 0)
    return 1;
  struct writer w = {0};
  memcpy(w.user, u.id, sizeof(w.user));
  memcpy(w.chat, c.id, sizeof(w.chat));
  char line[128];
  int n = snprintf(line, sizeof(line), "chat %s %s\n", w.user, w.chat);
  if (write(1, line, (size_t)n) != n)
    return 1;
  uv_loop_t *loop = uv_default_loop();
  if (store_async_new(loop, s, &w.a) != 0)
    return 1;
  struct slot *slots = xcalloc((size_t)inflight, sizeof(*slots));
  for (int i = 0; i < inflight; i++) {
    slots[i].w = &w;
    submit(&slots[i]);
  }
  uv_run(loop, UV_RUN_DEFAULT); /* until killed */
  return 0;
}

static int sqlite_integrity(const char *path) {
  sqlite3 *db;
  int bad = 0;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
    printf("cannot open %s\n", path);
    return 1;
  }
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      const char *r = (const char *)sqlite3_column_text(st, 0);
      printf("integrity_check: %s\n", r);
      if (strcmp(r, "ok") != 0)
        bad = 1;
    }
    sqlite3_finalize(st);
  } else {
    bad = 1;
  }
  char *err = NULL;
  if (sqlite3_exec(db,
                   "INSERT INTO memories_fts(memories_fts, rank) VALUES ('integrity-check', 1)",
                   NULL, NULL, &err) != SQLITE_OK) {
    printf("fts integrity-check: %s\n", err ? err : "?");
    sqlite3_free(err);
    bad = 1;
  } else {
    printf("fts integrity-check: ok\n");
  }
  sqlite3_close(db);
  return bad;
}

static int do_check(const char *url, const char *user) {
  struct store *s;
  if (store_open(url, NULL, &s) != 0)
    return 1;
  char line[128];
  size_t n = 0, missing = 0;
  while (fgets(line, sizeof(line), stdin)) {
    line[strcspn(line, "\r\n")] = 0;
    if (strlen(line) != ID_LEN)
      continue; /* the "chat" line, or a torn last line */
    struct store_message m;
    int rc = store_message_get(s, user, line, &m);
    if (rc == 0)
      store_message_clear(&m);
    else
      missing++;
    n++;
  }
  store_close(s);
  int bad = 0;
  if (strncmp(url, "postgres", 8) != 0)
    bad = sqlite_integrity(strncmp(url, "sqlite:", 7) == 0 ? url + 7 : url);
  printf("checked %zu ids, %zu missing, integrity %s\n", n, missing, bad ? "FAILED" : "ok");
  return missing || bad || n == 0 ? 1 : 0;
}

int main(int argc, char **argv) {
  log_init_from_env();
  if (argc >= 3 && strcmp(argv[1], "write") == 0)
    return do_write(argv[2], argc > 3 ? atoi(argv[3]) : 64);
  if (argc >= 4 && strcmp(argv[1], "check") == 0)
    return do_check(argv[2], argv[3]);
  fprintf(stderr, "usage: store_crashwriter write URL [INFLIGHT] | check URL USER < ids\n");
  return 2;
}
