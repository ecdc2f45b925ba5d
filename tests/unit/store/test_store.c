/*
 * The storage test suite: every test runs against SQLite (a temp folder) and against
 * PostgreSQL (ENGRAM_TEST_PG, in a private schema so other tests' rows never show).
 * @needs-services (ctest starts PostgreSQL and Redis first.)
 *
 * Covered: migrations (idempotent, reopen), users, chats (order, paging, rename, delete),
 * messages (client_id idempotency, ownership, paging by id and by time, last N,
 * neighbours, batches with mixed outcomes), memories (notes, pending/backfill, vectors,
 * re-embedding, lists, get-many, delete one/all), keyword search (stemming, ranking,
 * per-user isolation, FTS/SQL injection attempts, the index off and rebuilt), cascades (chat,
 * user; FTS index integrity on SQLite), concurrency from threads, the async layer and group
 * commit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <unistd.h>
#include <uv.h>

#include "store/store_async.h"
#include "store/store_int.h"
#include "store/store_test_util.h"

struct ctx {
  struct store *s;
  bool pg;
  char dir[256];  /* sqlite: the temp folder */
  char base[512]; /* pg: the server URL */
  char url[768];  /* the URL given to store_open */
  char schema[64];
};

static const int64_t T0 = 1700000000000;

/* ---- fixtures ------------------------------------------------------------------------ */

static int open_sqlite(void **state) {
  struct ctx *c = calloc(1, sizeof(*c));
  snprintf(c->dir, sizeof(c->dir), "/tmp/engram-store-XXXXXX");
  if (!mkdtemp(c->dir))
    return -1;
  snprintf(c->url, sizeof(c->url), "%s/engram.db", c->dir);
  if (store_open(NULL, c->dir, &c->s) != 0)
    return -1;
  *state = c;
  return 0;
}

static int close_sqlite(void **state) {
  struct ctx *c = *state;
  store_close(c->s);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", c->dir);
  free(c);
  return 0;
}

static int open_pg(void **state) {
  struct ctx *c = calloc(1, sizeof(*c));
  c->pg = true;
  *state = c;
  if (!svc_get("ENGRAM_TEST_PG", c->base, sizeof(c->base))) {
    fprintf(stderr, "ENGRAM_TEST_PG not set: PostgreSQL tests skipped\n");
    return 0;
  }
  char id[ID_LEN + 1];
  id_new(id);
  snprintf(c->schema, sizeof(c->schema), "store_test_%s", id + 16);
  if (!pg_private_url(c->base, c->schema, c->url, sizeof(c->url)))
    return -1;
  return store_open(c->url, NULL, &c->s) == 0 ? 0 : -1;
}

static int close_pg(void **state) {
  struct ctx *c = *state;
  store_close(c->s);
  if (c->schema[0])
    pg_drop_schema(c->base, c->schema);
  free(c);
  return 0;
}

#define STORE_OR_SKIP(state)                                                                   \
  struct ctx *C = *(state);                                                                    \
  if (!C->s)                                                                                   \
    skip();                                                                                    \
  struct store *s = C->s

/* ---- helpers ------------------------------------------------------------------------- */

static void mk_user(struct store *s, char id[ID_LEN + 1]) {
  struct store_user_new u = {0};
  char email[64];
  char rnd[ID_LEN + 1];
  id_new(rnd);
  snprintf(email, sizeof(email), "u%s@example.test", rnd);
  u.email = email;
  u.password_hash = "$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA";
  u.first_name = "Ada";
  u.last_name = "Lovelace";
  assert_int_equal(store_user_create(s, &u), 0);
  memcpy(id, u.id, ID_LEN + 1);
}

static void mk_chat(struct store *s, const char *user, char id[ID_LEN + 1], int64_t t) {
  struct store_chat c = {0};
  store__id_copy(c.user_id, user);
  c.title = "a chat";
  c.created_at = t;
  assert_int_equal(store_chat_create(s, &c), 0);
  memcpy(id, c.id, ID_LEN + 1);
}

static void mk_msg(struct store *s, const char *user, const char *chat, const char *role,
                   const char *content, const char *client, int64_t t, char id[ID_LEN + 1]) {
  struct store_message_new m = {0};
  m.chat_id = chat;
  m.user_id = user;
  m.role = role;
  m.content = content;
  m.client_id = client;
  m.created_at = t;
  assert_int_equal(store_message_insert(s, &m), 0);
  assert_false(m.existed);
  if (id)
    memcpy(id, m.id, ID_LEN + 1);
}

/* ---- migrations ---------------------------------------------------------------------- */

static void t_migrations(void **state) {
  STORE_OR_SKIP(state);
  int v = -1;
  assert_int_equal(store_migrate(s, &v), 0);
  assert_int_equal(v, store_schema_latest());
  assert_int_equal(store_migrate(s, &v), 0);
  assert_int_equal(v, store_schema_latest());
  /* A second store on the same database sees the schema in place and changes nothing. */
  struct store *s2 = NULL;
  assert_int_equal(store_open(C->url, NULL, &s2), 0);
  assert_int_equal(store_migrate(s2, &v), 0);
  assert_int_equal(v, store_schema_latest());
  assert_string_equal(store_backend(s2), C->pg ? "postgres" : "sqlite");
  assert_non_null(strstr(store_describe(s2), C->pg ? "postgres" : "sqlite"));
  assert_null(strstr(store_describe(s2), "password"));
  assert_int_equal(store_ping(s2), 0);
  store_close(s2);
  assert_int_equal(store_ping(s), 0);

  /* Upgrade: a database left at version 1 gets migration 2 when opened. */
  const char *down = "DROP INDEX memories_model; DELETE FROM schema_version WHERE version >= 2";
  if (C->pg) {
    PGconn *pc = PQconnectdb(C->url);
    assert_int_equal(PQstatus(pc), CONNECTION_OK);
    PGresult *r = PQexec(pc, down);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(pc);
  } else {
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(C->url, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, down, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
  }
  assert_int_equal(store_open(C->url, NULL, &s2), 0);
  assert_int_equal(store_migrate(s2, &v), 0);
  assert_int_equal(v, store_schema_latest());
  struct store_memories l;
  assert_int_equal(store_memory_pending(s2, "m", NULL, 1, &l), 0);
  store_memories_free(&l);
  store_close(s2);
}

/* ---- users --------------------------------------------------------------------------- */

static void t_users(void **state) {
  STORE_OR_SKIP(state);
  char email[64], rnd[ID_LEN + 1];
  id_new(rnd);
  snprintf(email, sizeof(email), "x%s@example.test", rnd);
  struct store_user_new u = {.email = email, .password_hash = "hash", .first_name = "Grace"};
  assert_int_equal(store_user_create(s, &u), 0);
  assert_true(id_valid(u.id, strlen(u.id)));
  assert_true(u.created_at > 0);

  struct store_user got;
  assert_int_equal(store_user_get(s, u.id, &got), 0);
  assert_string_equal(got.email, email);
  assert_string_equal(got.password_hash, "hash");
  assert_string_equal(got.first_name, "Grace");
  assert_string_equal(got.last_name, "");
  assert_int_equal(got.created_at, u.created_at);
  store_user_clear(&got);
  assert_int_equal(store_user_get_by_email(s, email, &got), 0);
  assert_string_equal(got.id, u.id);
  store_user_clear(&got);

  /* Unique email. */
  struct store_user_new dup = {.email = email, .password_hash = "other"};
  assert_int_equal(store_user_create(s, &dup), EG_EEXISTS);
  /* Unique explicit id. */
  char email2[80];
  snprintf(email2, sizeof(email2), "y%s", email);
  struct store_user_new dup2 = {.email = email2, .password_hash = "h"};
  memcpy(dup2.id, u.id, sizeof(u.id));
  assert_int_equal(store_user_create(s, &dup2), EG_EEXISTS);

  /* Bad input and absent rows. */
  struct store_user_new bad = {.email = "", .password_hash = "h"};
  assert_int_equal(store_user_create(s, &bad), EG_EINVAL);
  assert_int_equal(store_user_get(s, "nope", &got), EG_EINVAL);
  char absent[ID_LEN + 1];
  id_new(absent);
  assert_int_equal(store_user_get(s, absent, &got), EG_ENOTFOUND);
  assert_int_equal(store_user_get_by_email(s, "none@example.test", &got), EG_ENOTFOUND);
  assert_int_equal(store_user_delete(s, absent), EG_ENOTFOUND);

  /* Listing pages by id. */
  char a[ID_LEN + 1], b[ID_LEN + 1];
  mk_user(s, a);
  mk_user(s, b);
  struct store_users l;
  assert_int_equal(store_user_list(s, NULL, 0, &l), 0);
  assert_true(l.n >= 3);
  for (size_t i = 1; i < l.n; i++)
    assert_true(strcmp(l.v[i - 1].id, l.v[i].id) < 0);
  char first[ID_LEN + 1];
  memcpy(first, l.v[0].id, sizeof(first));
  size_t total = l.n;
  store_users_free(&l);
  assert_int_equal(store_user_list(s, first, 1000, &l), 0);
  assert_int_equal(l.n, total - 1);
  store_users_free(&l);
  assert_int_equal(store_user_list(s, NULL, 1, &l), 0);
  assert_int_equal(l.n, 1);
  store_users_free(&l);

  assert_int_equal(store_user_delete(s, u.id), 0);
  assert_int_equal(store_user_get(s, u.id, &got), EG_ENOTFOUND);
  /* The email is free again. */
  struct store_user_new again = {.email = email, .password_hash = "h"};
  assert_int_equal(store_user_create(s, &again), 0);
}

/* ---- chats --------------------------------------------------------------------------- */

static void t_chats(void **state) {
  STORE_OR_SKIP(state);
  char u[ID_LEN + 1], other[ID_LEN + 1];
  mk_user(s, u);
  mk_user(s, other);
  char c1[ID_LEN + 1], c2[ID_LEN + 1], c3[ID_LEN + 1];
  mk_chat(s, u, c1, T0 + 1000);
  mk_chat(s, u, c2, T0 + 2000);
  mk_chat(s, u, c3, T0 + 3000);

  struct store_chat ch;
  assert_int_equal(store_chat_get(s, u, c1, &ch), 0);
  assert_string_equal(ch.title, "a chat");
  assert_string_equal(ch.user_id, u);
  assert_int_equal(ch.created_at, T0 + 1000);
  assert_int_equal(ch.last_activity, T0 + 1000);
  store_chat_clear(&ch);
  /* Another user's chat does not exist for them. */
  assert_int_equal(store_chat_get(s, other, c1, &ch), EG_ENOTFOUND);

  /* A chat for an absent user. */
  struct store_chat bad = {0};
  char absent[ID_LEN + 1];
  id_new(absent);
  store__id_copy(bad.user_id, absent);
  bad.title = "x";
  assert_int_equal(store_chat_create(s, &bad), EG_ENOTFOUND);
  /* NULL title is stored as "". */
  struct store_chat nt = {0};
  store__id_copy(nt.user_id, other);
  assert_int_equal(store_chat_create(s, &nt), 0);
  assert_int_equal(store_chat_get(s, other, nt.id, &ch), 0);
  assert_string_equal(ch.title, "");
  store_chat_clear(&ch);

  /* Most recent activity first; a message moves its chat to the top. */
  struct store_chats l;
  assert_int_equal(store_chat_list(s, u, NULL, 0, &l), 0);
  assert_int_equal(l.n, 3);
  assert_string_equal(l.v[0].id, c3);
  assert_string_equal(l.v[2].id, c1);
  store_chats_free(&l);
  mk_msg(s, u, c1, "user", "hello", NULL, T0 + 5000, NULL);
  assert_int_equal(store_chat_list(s, u, NULL, 0, &l), 0);
  assert_string_equal(l.v[0].id, c1);
  assert_int_equal(l.v[0].last_activity, T0 + 5000);
  assert_string_equal(l.v[1].id, c3);
  store_chats_free(&l);
  /* An older message does not move last_activity back. */
  mk_msg(s, u, c1, "user", "late", NULL, T0 + 100, NULL);
  assert_int_equal(store_chat_get(s, u, c1, &ch), 0);
  assert_int_equal(ch.last_activity, T0 + 5000);
  store_chat_clear(&ch);

  /* Paging. */
  assert_int_equal(store_chat_list(s, u, NULL, 2, &l), 0);
  assert_int_equal(l.n, 2);
  char last[ID_LEN + 1];
  memcpy(last, l.v[1].id, sizeof(last));
  store_chats_free(&l);
  assert_int_equal(store_chat_list(s, u, last, 2, &l), 0);
  assert_int_equal(l.n, 1);
  assert_string_equal(l.v[0].id, c2);
  store_chats_free(&l);
  assert_int_equal(store_chat_list(s, other, c1, 2, &l), EG_ENOTFOUND);
  assert_int_equal(store_chat_list(s, u, "zz", 2, &l), EG_EINVAL);

  /* Rename. */
  assert_int_equal(store_chat_rename(s, u, c2, "renamed ✓"), 0);
  assert_int_equal(store_chat_get(s, u, c2, &ch), 0);
  assert_string_equal(ch.title, "renamed ✓");
  store_chat_clear(&ch);
  assert_int_equal(store_chat_rename(s, other, c2, "stolen"), EG_ENOTFOUND);

  /* Delete. */
  assert_int_equal(store_chat_delete(s, other, c2), EG_ENOTFOUND);
  assert_int_equal(store_chat_delete(s, u, c2), 0);
  assert_int_equal(store_chat_delete(s, u, c2), EG_ENOTFOUND);
  assert_int_equal(store_chat_list(s, u, NULL, 0, &l), 0);
  assert_int_equal(l.n, 2);
  store_chats_free(&l);
}

/* ---- messages ------------------------------------------------------------------------ */

static void t_messages(void **state) {
  STORE_OR_SKIP(state);
  char u[ID_LEN + 1], other[ID_LEN + 1], c[ID_LEN + 1], oc[ID_LEN + 1];
  mk_user(s, u);
  mk_user(s, other);
  mk_chat(s, u, c, T0);
  mk_chat(s, other, oc, T0);

  char ids[10][ID_LEN + 1];
  for (int i = 0; i < 10; i++) {
    char text[32];
    snprintf(text, sizeof(text), "message number %d", i);
    mk_msg(s, u, c, i % 2 ? "model" : "user", text, NULL, T0 + 1000 * (i + 1), ids[i]);
  }

  struct store_message m;
  assert_int_equal(store_message_get(s, u, ids[3], &m), 0);
  assert_string_equal(m.content, "message number 3");
  assert_string_equal(m.role, "model");
  assert_string_equal(m.chat_id, c);
  assert_null(m.client_id);
  assert_false(m.cancelled);
  assert_int_equal(m.created_at, T0 + 4000);
  store_message_clear(&m);
  assert_int_equal(store_message_get(s, other, ids[3], &m), EG_ENOTFOUND);

  /* Newest page, oldest first. */
  struct store_messages l;
  struct store_page pg = {.limit = 4};
  assert_int_equal(store_message_list(s, u, c, &pg, &l), 0);
  assert_int_equal(l.n, 4);
  assert_string_equal(l.v[0].id, ids[6]);
  assert_string_equal(l.v[3].id, ids[9]);
  store_messages_free(&l);
  /* Before a message id. */
  pg.before_id = ids[6];
  assert_int_equal(store_message_list(s, u, c, &pg, &l), 0);
  assert_int_equal(l.n, 4);
  assert_string_equal(l.v[0].id, ids[2]);
  assert_string_equal(l.v[3].id, ids[5]);
  store_messages_free(&l);
  pg.before_id = ids[1];
  assert_int_equal(store_message_list(s, u, c, &pg, &l), 0);
  assert_int_equal(l.n, 1);
  assert_string_equal(l.v[0].id, ids[0]);
  store_messages_free(&l);
  /* Before a time. */
  pg.before_id = NULL;
  pg.before_ms = T0 + 3500;
  pg.limit = 0;
  assert_int_equal(store_message_list(s, u, c, &pg, &l), 0);
  assert_int_equal(l.n, 3);
  assert_string_equal(l.v[2].id, ids[2]);
  store_messages_free(&l);
  /* Not this user's chat, or a cursor from another chat. */
  assert_int_equal(store_message_list(s, other, c, NULL, &l), EG_ENOTFOUND);
  char om[ID_LEN + 1];
  mk_msg(s, other, oc, "user", "elsewhere", NULL, T0, om);
  pg = (struct store_page){.before_id = om};
  assert_int_equal(store_message_list(s, u, c, &pg, &l), EG_ENOTFOUND);

  /* Last N for the prompt window. */
  assert_int_equal(store_message_last(s, c, 3, &l), 0);
  assert_int_equal(l.n, 3);
  assert_string_equal(l.v[0].id, ids[7]);
  assert_string_equal(l.v[2].id, ids[9]);
  store_messages_free(&l);
  assert_int_equal(store_message_last(s, c, 100, &l), 0);
  assert_int_equal(l.n, 10);
  store_messages_free(&l);

  /* Neighbours. */
  assert_int_equal(store_message_neighbours(s, u, ids[5], 1, 1, &l), 0);
  assert_int_equal(l.n, 3);
  assert_string_equal(l.v[0].id, ids[4]);
  assert_string_equal(l.v[1].id, ids[5]);
  assert_string_equal(l.v[2].id, ids[6]);
  store_messages_free(&l);
  assert_int_equal(store_message_neighbours(s, u, ids[0], 2, 0, &l), 0);
  assert_int_equal(l.n, 1);
  store_messages_free(&l);
  assert_int_equal(store_message_neighbours(s, u, ids[9], 2, 5, &l), 0);
  assert_int_equal(l.n, 3);
  assert_string_equal(l.v[2].id, ids[9]);
  store_messages_free(&l);
  assert_int_equal(store_message_neighbours(s, other, ids[5], 1, 1, &l), EG_ENOTFOUND);

  /* Ownership and validation on insert. */
  struct store_message_new n = {.chat_id = c, .user_id = other, .role = "user", .content = "x"};
  assert_int_equal(store_message_insert(s, &n), EG_ENOTFOUND);
  n = (struct store_message_new){.chat_id = c, .user_id = u, .role = "system", .content = "x"};
  assert_int_equal(store_message_insert(s, &n), EG_EINVAL);
  n = (struct store_message_new){.chat_id = c, .user_id = u, .role = "user", .content = NULL};
  assert_int_equal(store_message_insert(s, &n), EG_EINVAL);
  n = (struct store_message_new){.chat_id = c, .user_id = u, .role = "user", .content = "x"};
  memcpy(n.id, ids[0], sizeof(n.id));
  assert_int_equal(store_message_insert(s, &n), EG_EEXISTS);

  /* Cancelled flag, empty content, unicode and large content round trip. */
  char cm[ID_LEN + 1];
  n = (struct store_message_new){
      .chat_id = c, .user_id = u, .role = "model", .content = "", .cancelled = true};
  assert_int_equal(store_message_insert(s, &n), 0);
  memcpy(cm, n.id, sizeof(cm));
  assert_int_equal(store_message_get(s, u, cm, &m), 0);
  assert_true(m.cancelled);
  assert_string_equal(m.content, "");
  store_message_clear(&m);
  size_t big_len = 64 * 1024;
  char *big = malloc(big_len + 1);
  for (size_t i = 0; i < big_len; i++)
    big[i] = (char)('a' + i % 26);
  memcpy(big, "héllo wörld 日本語 🎉 ", 28);
  big[big_len] = 0;
  char bm[ID_LEN + 1];
  mk_msg(s, u, c, "user", big, NULL, 0, bm);
  assert_int_equal(store_message_get(s, u, bm, &m), 0);
  assert_string_equal(m.content, big);
  assert_true(m.created_at > T0);
  store_message_clear(&m);
  free(big);
}

static void t_client_id(void **state) {
  STORE_OR_SKIP(state);
  char u[ID_LEN + 1], c[ID_LEN + 1], c2[ID_LEN + 1];
  mk_user(s, u);
  mk_chat(s, u, c, T0);
  mk_chat(s, u, c2, T0);
  char first[ID_LEN + 1];
  mk_msg(s, u, c, "user", "retry me", "client-1", T0 + 10, first);

  /* The retry returns the stored message and writes nothing. */
  struct store_message_new n = {.chat_id = c,
                                .user_id = u,
                                .role = "user",
                                .content = "retry me",
                                .client_id = "client-1"};
  assert_int_equal(store_message_insert(s, &n), 0);
  assert_true(n.existed);
  assert_string_equal(n.id, first);
  assert_int_equal(n.created_at, T0 + 10);
  struct store_messages l;
  assert_int_equal(store_message_list(s, u, c, NULL, &l), 0);
  assert_int_equal(l.n, 1);
  assert_string_equal(l.v[0].client_id, "client-1");
  store_messages_free(&l);
  /* The same client id in another chat is another message. */
  n = (struct store_message_new){
      .chat_id = c2, .user_id = u, .role = "user", .content = "other", .client_id = "client-1"};
  assert_int_equal(store_message_insert(s, &n), 0);
  assert_false(n.existed);
  assert_string_not_equal(n.id, first);
  /* Messages without client id never collide. */
  mk_msg(s, u, c, "user", "a", NULL, 0, NULL);
  mk_msg(s, u, c, "user", "a", "", 0, NULL);
  /* Too long a client id. */
  char longid[200];
  memset(longid, 'k', sizeof(longid) - 1);
  longid[sizeof(longid) - 1] = 0;
  n = (struct store_message_new){
      .chat_id = c, .user_id = u, .role = "user", .content = "x", .client_id = longid};
  assert_int_equal(store_message_insert(s, &n), EG_EINVAL);
}

static void t_batch(void **state) {
  STORE_OR_SKIP(state);
  char u[ID_LEN + 1], other[ID_LEN + 1], c[ID_LEN + 1], oc[ID_LEN + 1];
  mk_user(s, u);
  mk_user(s, other);
  mk_chat(s, u, c, T0);
  mk_chat(s, other, oc, T0);
  char taken[ID_LEN + 1];
  mk_msg(s, u, c, "user", "first", "dup", T0 + 1, taken);

  struct store_message_new m[6] = {
      {.chat_id = c, .user_id = u, .role = "user", .content = "ok one", .created_at = T0 + 10},
      {.chat_id = oc, .user_id = u, .role = "user", .content = "not mine"},
      {.chat_id = c, .user_id = u, .role = "user", .content = "again", .client_id = "dup"},
      {.chat_id = c, .user_id = u, .role = "bogus", .content = "bad role"},
      {.chat_id = c, .user_id = u, .role = "model", .content = "ok two", .client_id = "new"},
      {.chat_id = c, .user_id = u, .role = "model", .content = "ok two", .client_id = "new"},
  };
  /* One more whose explicit id is taken. */
  int st[6];
  assert_int_equal(store_message_insert_batch(s, m, 6, st), 0);
  assert_int_equal(st[0], 0);
  assert_false(m[0].existed);
  assert_int_equal(st[1], EG_ENOTFOUND);
  assert_int_equal(st[2], 0);
  assert_true(m[2].existed);
  assert_string_equal(m[2].id, taken);
  assert_int_equal(st[3], EG_EINVAL);
  assert_int_equal(st[4], 0);
  assert_false(m[4].existed);
  assert_int_equal(st[5], 0);
  assert_true(m[5].existed); /* same client id earlier in the same batch */
  assert_string_equal(m[5].id, m[4].id);

  struct store_messages l;
  assert_int_equal(store_message_list(s, u, c, NULL, &l), 0);
  assert_int_equal(l.n, 3);
  store_messages_free(&l);

  /* A row with a taken id fails alone; the rest of the batch commits. */
  struct store_message_new m2[3] = {
      {.chat_id = c, .user_id = u, .role = "user", .content = "b1"},
      {.chat_id = c, .user_id = u, .role = "user", .content = "b2"},
      {.chat_id = c, .user_id = u, .role = "user", .content = "b3"},
  };
  memcpy(m2[1].id, taken, sizeof(taken));
  int st2[3];
  assert_int_equal(store_message_insert_batch(s, m2, 3, st2), 0);
  assert_int_equal(st2[0], 0);
  assert_int_equal(st2[1], EG_EEXISTS);
  assert_int_equal(st2[2], 0);
  assert_int_equal(store_message_list(s, u, c, NULL, &l), 0);
  assert_int_equal(l.n, 5);
  store_messages_free(&l);

  /* A message whose id is taken by a note: nothing of it stays (message nor memory). */
  struct store_memory nt = {0};
  store__id_copy(nt.user_id, u);
  nt.text = "a note";
  assert_int_equal(store_memory_add(s, &nt), 0);
  struct store_message_new clash = {
      .chat_id = c, .user_id = u, .role = "user", .content = "clash", .client_id = "clash"};
  memcpy(clash.id, nt.id, sizeof(nt.id));
  assert_int_equal(store_message_insert(s, &clash), EG_EEXISTS);
  struct store_message mm;
  assert_int_equal(store_message_get(s, u, nt.id, &mm), EG_ENOTFOUND);
  assert_int_equal(store_message_list(s, u, c, NULL, &l), 0);
  assert_int_equal(l.n, 5);
  store_messages_free(&l);
  /* The client id was not consumed either. */
  memset(clash.id, 0, sizeof(clash.id));
  assert_int_equal(store_message_insert(s, &clash), 0);
  assert_false(clash.existed);
}

/* ---- memories ------------------------------------------------------------------------ */

static bool has_id(const struct store_memories *l, const char *id) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->v[i].id, id) == 0)
      return true;
  return false;
}

/* All pending memories of one user for a model (other users' rows filtered out). */
static size_t pending_of(struct store *s, const char *user, const char *model,
                         struct store_memories *mine) {
  memset(mine, 0, sizeof(*mine));
  size_t cap = 0;
  char after[ID_LEN + 1] = "";
  for (;;) {
    struct store_memories l;
    assert_int_equal(store_memory_pending(s, model, after, 50, &l), 0);
    if (l.n == 0) {
      store_memories_free(&l);
      break;
    }
    memcpy(after, l.v[l.n - 1].id, sizeof(after)); /* before rows move to mine */
    for (size_t i = 1; i < l.n; i++)
      assert_true(strcmp(l.v[i - 1].id, l.v[i].id) < 0);
    for (size_t i = 0; i < l.n; i++) {
      if (strcmp(l.v[i].user_id, user) == 0) {
        mine->v = store__grow(mine->v, mine->n, &cap, sizeof(*mine->v));
        mine->v[mine->n++] = l.v[i];
        memset(&l.v[i], 0, sizeof(l.v[i]));
      }
    }
    store_memories_free(&l);
  }
  return mine->n;
}

static void t_memories(void **state) {
  STORE_OR_SKIP(state);
  char u[ID_LEN + 1], other[ID_LEN + 1], c[ID_LEN + 1];
  mk_user(s, u);
  mk_user(s, other);
  mk_chat(s, u, c, T0);
  char m1[ID_LEN + 1], m2[ID_LEN + 1];
  mk_msg(s, u, c, "user", "I adopted a cat named Miso", NULL, T0 + 1000, m1);
  mk_msg(s, u, c, "model", "Miso is a lovely name", NULL, T0 + 2000, m2);
  /* An empty (cancelled) message makes no memory. */
  struct store_message_new e = {
      .chat_id = c, .user_id = u, .role = "model", .content = "", .cancelled = true};
  assert_int_equal(store_message_insert(s, &e), 0);

  /* A note. */
  struct store_memory note = {0};
  store__id_copy(note.user_id, u);
  note.text = "Allergic to peanuts";
  note.created_at = T0 + 500;
  assert_int_equal(store_memory_add(s, &note), 0);
  assert_true(id_valid(note.id, ID_LEN));
  struct store_memory bad = {0};
  store__id_copy(bad.user_id, u);
  bad.text = "";
  assert_int_equal(store_memory_add(s, &bad), EG_EINVAL);
  char absent[ID_LEN + 1];
  id_new(absent);
  store__id_copy(bad.user_id, absent);
  bad.text = "x";
  assert_int_equal(store_memory_add(s, &bad), EG_ENOTFOUND);

  /* get_many keeps the order asked and only this user's. */
  const char *ask[] = {m2, note.id, "junk", absent, m1};
  struct store_memories l;
  assert_int_equal(store_memory_get_many(s, u, ask, 5, &l), 0);
  assert_int_equal(l.n, 3);
  assert_string_equal(l.v[0].id, m2);
  assert_string_equal(l.v[0].role, "model");
  assert_string_equal(l.v[0].chat_id, c);
  assert_string_equal(l.v[0].text, "Miso is a lovely name");
  assert_int_equal(l.v[0].created_at, T0 + 2000);
  assert_string_equal(l.v[1].id, note.id);
  assert_string_equal(l.v[1].role, "note");
  assert_string_equal(l.v[1].chat_id, "");
  assert_string_equal(l.v[2].id, m1);
  assert_string_equal(l.v[2].model, "");
  assert_int_equal(l.v[2].dims, 0);
  store_memories_free(&l);
  assert_int_equal(store_memory_get_many(s, other, ask, 5, &l), 0);
  assert_int_equal(l.n, 0);
  store_memories_free(&l);

  /* Newest first, paged. */
  assert_int_equal(store_memory_list(s, u, NULL, 2, &l), 0);
  assert_int_equal(l.n, 2);
  assert_string_equal(l.v[0].id, m2);
  assert_string_equal(l.v[1].id, m1);
  store_memories_free(&l);
  assert_int_equal(store_memory_list(s, u, m1, 2, &l), 0);
  assert_int_equal(l.n, 1);
  assert_string_equal(l.v[0].id, note.id);
  store_memories_free(&l);
  assert_int_equal(store_memory_list(s, other, m1, 2, &l), EG_ENOTFOUND);

  /* Backfill: all three wait for model A. */
  struct store_memories p;
  assert_int_equal(pending_of(s, u, "model-a/4", &p), 3);
  assert_true(has_id(&p, m1) && has_id(&p, m2) && has_id(&p, note.id));
  assert_non_null(p.v[0].text);
  store_memories_free(&p);
  float v1[4] = {1, 0, 0, 0}, v2[4] = {0, 1, 0, 0}, v3[4] = {0.5f, 0.5f, -0.25f, 1e-7f};
  assert_int_equal(store_memory_set_vector(s, m1, "model-a/4", v1, 4), 0);
  assert_int_equal(store_memory_set_vector(s, m2, "model-a/4", v2, 4), 0);
  assert_int_equal(store_memory_set_vector(s, note.id, "model-a/4", v3, 4), 0);
  assert_int_equal(store_memory_set_vector(s, absent, "model-a/4", v3, 4), EG_ENOTFOUND);
  assert_int_equal(store_memory_set_vector(s, m1, "", v3, 4), EG_EINVAL);
  assert_int_equal(pending_of(s, u, "model-a/4", &p), 0);
  store_memories_free(&p);

  struct store_vectors vec;
  assert_int_equal(store_memory_load_all(s, u, "model-a/4", &vec), 0);
  assert_int_equal(vec.n, 3);
  assert_int_equal(vec.dims, 4);
  /* Oldest first: the note (T0+500), m1, m2, with their texts, chats and roles. */
  assert_string_equal(vec.ids[0], note.id);
  assert_int_equal(vec.created_at[0], T0 + 500);
  assert_string_equal(vec.roles[0], "note");
  assert_string_equal(vec.chat_ids[0], "");
  assert_true(vec.has_vec[0]);
  assert_memory_equal(&vec.vec[0], v3, sizeof(v3));
  assert_string_equal(vec.ids[1], m1);
  assert_string_equal(vec.chat_ids[1], c);
  assert_string_equal(vec.roles[1], "user");
  assert_non_null(vec.texts[1]);
  assert_true(vec.texts[1][0] != 0);
  assert_memory_equal(&vec.vec[4], v1, sizeof(v1));
  assert_memory_equal(&vec.vec[8], v2, sizeof(v2));
  store_vectors_free(&vec);
  assert_int_equal(store_memory_load_all(s, other, "model-a/4", &vec), 0);
  assert_int_equal(vec.n, 0);
  store_vectors_free(&vec);

  /* Changing model: everything is pending again for B, and A's vectors stay apart. */
  assert_int_equal(pending_of(s, u, "model-b/2", &p), 3);
  store_memories_free(&p);
  float w[2] = {3, 4};
  assert_int_equal(store_memory_set_vector(s, m1, "model-b/2", w, 2), 0);
  assert_int_equal(pending_of(s, u, "model-b/2", &p), 2);
  store_memories_free(&p);
  /* Every memory comes back; only m1 has a vector of model B. */
  assert_int_equal(store_memory_load_all(s, u, "model-b/2", &vec), 0);
  assert_int_equal(vec.n, 3);
  assert_int_equal(vec.dims, 2);
  assert_false(vec.has_vec[0]);
  assert_true(vec.has_vec[1]);
  assert_false(vec.has_vec[2]);
  assert_memory_equal(&vec.vec[2], w, sizeof(w));
  store_vectors_free(&vec);
  assert_int_equal(store_memory_load_all(s, u, "model-a/4", &vec), 0);
  assert_int_equal(vec.n, 3);
  assert_true(vec.has_vec[0] && !vec.has_vec[1] && vec.has_vec[2]);
  store_vectors_free(&vec);
  assert_int_equal(pending_of(s, u, "model-a/4", &p), 1);
  store_memories_free(&p);

  /* Delete one: the memory goes, the message stays. */
  assert_int_equal(store_memory_delete(s, other, m1), EG_ENOTFOUND);
  assert_int_equal(store_memory_delete(s, u, m1), 0);
  assert_int_equal(store_memory_delete(s, u, m1), EG_ENOTFOUND);
  struct store_message msg;
  assert_int_equal(store_message_get(s, u, m1, &msg), 0);
  store_message_clear(&msg);
  const char *one[] = {m1};
  assert_int_equal(store_memory_get_many(s, u, one, 1, &l), 0);
  assert_int_equal(l.n, 0);
  store_memories_free(&l);

  /* Forget everything. */
  char om[ID_LEN + 1], oc[ID_LEN + 1];
  mk_chat(s, other, oc, T0);
  mk_msg(s, other, oc, "user", "other's memory", NULL, 0, om);
  size_t deleted = 0;
  assert_int_equal(store_memory_delete_all(s, u, &deleted), 0);
  assert_int_equal(deleted, 2);
  assert_int_equal(store_memory_list(s, u, NULL, 0, &l), 0);
  assert_int_equal(l.n, 0);
  store_memories_free(&l);
  assert_int_equal(store_memory_list(s, other, NULL, 0, &l), 0);
  assert_int_equal(l.n, 1);
  store_memories_free(&l);
  struct store_messages ml;
  assert_int_equal(store_message_list(s, u, c, NULL, &ml), 0);
  assert_int_equal(ml.n, 3);
  store_messages_free(&ml);
}

/* ---- keyword search ------------------------------------------------------------------ */

static bool hit(const struct store_hits *h, const char *id) {
  for (size_t i = 0; i < h->n; i++)
    if (strcmp(h->v[i].id, id) == 0)
      return true;
  return false;
}

/* Vectors stored with their messages (one insert and a group-commit batch), in the same
   transaction: loaded back, nothing pending; a bad vector is refused; a derived one
   (vec_derived) is recorded as embedded by its model without its bytes. */
static void t_insert_vectors(void **state) {
  STORE_OR_SKIP(state);
  char u[ID_LEN + 1], c[ID_LEN + 1];
  mk_user(s, u);
  mk_chat(s, u, c, T0);
  float v1[3] = {1, 2, 3}, v2[3] = {-1, 0.5f, 0}, v3[3] = {0, 0, 1};
  struct store_message_new one = {.chat_id = c,
                                  .user_id = u,
                                  .role = "user",
                                  .content = "alpha",
                                  .created_at = T0 + 1,
                                  .vec = v1,
                                  .dims = 3,
                                  .embed_model = "m/3"};
  assert_int_equal(store_message_insert(s, &one), 0);
  struct store_message_new derived = {.chat_id = c,
                                      .user_id = u,
                                      .role = "user",
                                      .content = "epsilon",
                                      .created_at = T0 + 5,
                                      .vec = v3,
                                      .dims = 3,
                                      .embed_model = "m/3",
                                      .vec_derived = true};
  assert_int_equal(store_message_insert(s, &derived), 0);
  struct store_message_new m[4] = {
      {.chat_id = c,
       .user_id = u,
       .role = "user",
       .content = "beta",
       .created_at = T0 + 2,
       .vec = v2,
       .dims = 3,
       .embed_model = "m/3"},
      {.chat_id = c, .user_id = u, .role = "model", .content = "gamma", .created_at = T0 + 3},
      {.chat_id = c,
       .user_id = u,
       .role = "model",
       .content = "delta",
       .created_at = T0 + 4,
       .vec = v3,
       .dims = 0,
       .embed_model = "m/3"}, /* no dims: refused */
      {.chat_id = c,
       .user_id = u,
       .role = "model",
       .content = "zeta",
       .created_at = T0 + 6,
       .vec = v3,
       .dims = 3,
       .embed_model = "m/3",
       .vec_derived = true},
  };
  int st[4];
  assert_int_equal(store_message_insert_batch(s, m, 4, st), 0);
  assert_int_equal(st[0], 0);
  assert_int_equal(st[1], 0);
  assert_int_equal(st[2], EG_EINVAL);
  assert_int_equal(st[3], 0);
  struct store_vectors v;
  assert_int_equal(store_memory_load_all(s, u, "m/3", &v), 0);
  assert_int_equal(v.n, 5);
  assert_int_equal(v.dims, 3);
  assert_string_equal(v.texts[0], "alpha");
  assert_true(v.has_vec[0]);
  assert_memory_equal(&v.vec[0], v1, sizeof(v1));
  assert_string_equal(v.texts[1], "beta");
  assert_true(v.has_vec[1]);
  assert_memory_equal(&v.vec[3], v2, sizeof(v2));
  assert_string_equal(v.texts[2], "gamma");
  assert_false(v.has_vec[2]);
  /* Derived vectors (vec_derived): the model is recorded, the vector is not stored. */
  assert_string_equal(v.texts[3], "epsilon");
  assert_false(v.has_vec[3]);
  assert_string_equal(v.texts[4], "zeta");
  assert_false(v.has_vec[4]);
  store_vectors_free(&v);
  struct store_memories p;
  assert_int_equal(pending_of(s, u, "m/3", &p), 1); /* gamma only: not the derived ones */
  assert_string_equal(p.v[0].text, "gamma");
  store_memories_free(&p);
}

static void t_search(void **state) {
  STORE_OR_SKIP(state);
  char u[ID_LEN + 1], other[ID_LEN + 1], c[ID_LEN + 1], oc[ID_LEN + 1];
  mk_user(s, u);
  mk_user(s, other);
  mk_chat(s, u, c, T0);
  mk_chat(s, other, oc, T0);
  char a[ID_LEN + 1], b[ID_LEN + 1], d[ID_LEN + 1], o[ID_LEN + 1], q[ID_LEN + 1];
  mk_msg(s, u, c, "user", "I went running with my dog in the park", NULL, T0 + 1, a);
  mk_msg(s, u, c, "user", "The dog dog dog loves the park, dog parks are great", NULL, T0 + 2,
         b);
  mk_msg(s, u, c, "model", "Quantum chromodynamics describes quarks", NULL, T0 + 3, d);
  mk_msg(s, u, c, "user", "she said \"foo\" OR user_id:x * NEAR( 'x'; DROP TABLE memories;--",
         NULL, T0 + 4, q);
  mk_msg(s, other, oc, "user", "my dog runs in the park every day", NULL, T0 + 5, o);

  struct store_hits h;
  /* Stemming: "runs" finds "running"; ranking: the dog-heavy text first. */
  assert_int_equal(store_memory_search(s, u, "runs", 10, &h), 0);
  assert_int_equal(h.n, 1);
  assert_string_equal(h.v[0].id, a);
  store_hits_free(&h);
  assert_int_equal(store_memory_search(s, u, "Dog?", 10, &h), 0);
  assert_int_equal(h.n, 2);
  assert_string_equal(h.v[0].id, b);
  assert_string_equal(h.v[1].id, a);
  assert_true(h.v[0].score >= h.v[1].score);
  assert_true(h.v[1].score > 0);
  store_hits_free(&h);
  /* Any word may match (OR), k limits. */
  assert_int_equal(store_memory_search(s, u, "quarks parks", 10, &h), 0);
  assert_int_equal(h.n, 3);
  store_hits_free(&h);
  assert_int_equal(store_memory_search(s, u, "quarks parks", 1, &h), 0);
  assert_int_equal(h.n, 1);
  store_hits_free(&h);

  /* One user only: the other user's matching memory never shows, and theirs not ours. */
  assert_int_equal(store_memory_search(s, u, "dog park every day", 10, &h), 0);
  assert_false(hit(&h, o));
  assert_true(hit(&h, a) && hit(&h, b));
  store_hits_free(&h);
  assert_int_equal(store_memory_search(s, other, "dog quarks", 10, &h), 0);
  assert_int_equal(h.n, 1);
  assert_string_equal(h.v[0].id, o);
  store_hits_free(&h);

  /* Injection attempts: never an error, never another user's rows, never everything. */
  const char *evil[] = {
      "\"foo\" OR user_id:x",
      "*",
      "NEAR(",
      "NEAR(dog park, 2)",
      "\"",
      "\"\"\"",
      "'",
      "'; DROP TABLE memories; --",
      "dog\" OR \"1\"=\"1",
      "text:dog",
      "user_id:dog",
      "^dog",
      "dog*",
      "dog AND NOT park",
      "(dog OR",
      "dog & !park | quarks:*",
      "-dog",
      "{text}:dog",
      "\\",
      "",
      "   ",
      "!!!",
      "\xff\xfe dog \xc3",
      "the a an",
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(evil); i++) {
    int rc = store_memory_search(s, u, evil[i], 50, &h);
    if (rc != 0)
      fail_msg("query %zu <%s> failed: %s", i, evil[i], eg_strerror(rc));
    assert_false(hit(&h, o));
    assert_true(h.n <= 4);
    store_hits_free(&h);
  }
  /* Operators are plain words: "foo OR user_id" finds the message that says them. */
  assert_int_equal(store_memory_search(s, u, "\"foo\" OR user_id:x", 10, &h), 0);
  assert_true(hit(&h, q));
  store_hits_free(&h);
  assert_int_equal(store_memory_search(s, u, "'; DROP TABLE memories; --", 10, &h), 0);
  assert_true(hit(&h, q));
  store_hits_free(&h);
  /* The table survived. */
  assert_int_equal(store_memory_search(s, u, "quarks", 10, &h), 0);
  assert_int_equal(h.n, 1);
  store_hits_free(&h);
  assert_int_equal(store_memory_search(s, u, NULL, 10, &h), EG_EINVAL);

  /* Deleted memories leave the index. */
  assert_int_equal(store_memory_delete(s, u, d), 0);
  assert_int_equal(store_memory_search(s, u, "quarks", 10, &h), 0);
  assert_int_equal(h.n, 0);
  store_hits_free(&h);
}

static void t_fts_terms(void **state) {
  (void)state;
  const char *q = "Hello, WORLD! \"foo\" OR user_id:x NEAR( héllo héllo \xff\xfe 日本語 a_b";
  char *buf = malloc(strlen(q) + STORE_FTS_TERMS_MAX + 1);
  const char *t[STORE_FTS_TERMS_MAX];
  size_t n = store__fts_terms(q, buf, t);
  const char *want[] = {"hello", "world", "foo",   "or",     "user", "id",
                        "x",     "near",  "héllo", "日本語", "a",    "b"};
  assert_int_equal(n, EG_ARRAY_LEN(want));
  for (size_t i = 0; i < n; i++)
    assert_string_equal(t[i], want[i]);
  free(buf);
  /* At most 32 terms, words cut at 64 bytes without splitting a character. */
  char many[4096] = "";
  for (int i = 0; i < 50; i++)
    snprintf(many + strlen(many), sizeof(many) - strlen(many), "w%d ", i);
  strcat(many, " ");
  for (int i = 0; i < 40; i++)
    strcat(many, "é");
  buf = malloc(strlen(many) + STORE_FTS_TERMS_MAX + 1);
  assert_int_equal(store__fts_terms(many, buf, t), STORE_FTS_TERMS_MAX);
  free(buf);
  const char *longw = "ééééééééééééééééééééééééééééééééééééééééé"; /* 41 x 2 bytes */
  buf = malloc(strlen(longw) + STORE_FTS_TERMS_MAX + 1);
  assert_int_equal(store__fts_terms(longw, buf, t), 1);
  assert_int_equal(strlen(t[0]), 64);
  free(buf);
}

/* ---- cascades ------------------------------------------------------------------------ */

/* SQLite only: the external-content FTS index agrees with the memories table. */
static void fts_integrity(struct ctx *C) {
  if (C->pg)
    return;
  sqlite3 *db;
  assert_int_equal(sqlite3_open_v2(C->url, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  char *err = NULL;
  int rc = sqlite3_exec(db,
                        "INSERT INTO memories_fts(memories_fts, rank) VALUES"
                        " ('integrity-check', 1)",
                        NULL, NULL, &err);
  if (rc != SQLITE_OK)
    fail_msg("fts integrity: %s", err ? err : "?");
  sqlite3_close(db);
}

static void t_cascades(void **state) {
  STORE_OR_SKIP(state);
  char u[ID_LEN + 1], c1[ID_LEN + 1], c2[ID_LEN + 1], m1[ID_LEN + 1], m2[ID_LEN + 1];
  mk_user(s, u);
  mk_chat(s, u, c1, T0);
  mk_chat(s, u, c2, T0);
  mk_msg(s, u, c1, "user", "zebra stripes in chat one", "k1", T0 + 1, m1);
  mk_msg(s, u, c2, "user", "zebra crossing in chat two", NULL, T0 + 2, m2);
  struct store_memory note = {0};
  store__id_copy(note.user_id, u);
  note.text = "zebra note";
  assert_int_equal(store_memory_add(s, &note), 0);
  float v[3] = {1, 2, 3};
  assert_int_equal(store_memory_set_vector(s, m1, "m/3", v, 3), 0);

  struct store_hits h;
  assert_int_equal(store_memory_search(s, u, "zebra", 10, &h), 0);
  assert_int_equal(h.n, 3);
  store_hits_free(&h);

  /* Deleting a chat takes its messages and their memories (and index rows). */
  assert_int_equal(store_chat_delete(s, u, c1), 0);
  struct store_message m;
  assert_int_equal(store_message_get(s, u, m1, &m), EG_ENOTFOUND);
  assert_int_equal(store_memory_search(s, u, "zebra", 10, &h), 0);
  assert_int_equal(h.n, 2);
  assert_false(hit(&h, m1));
  store_hits_free(&h);
  struct store_vectors vec;
  assert_int_equal(store_memory_load_all(s, u, "m/3", &vec), 0);
  assert_int_equal(vec.n, 2); /* the memories of the other chat, not embedded */
  assert_false(vec.has_vec[0] || vec.has_vec[1]);
  assert_int_equal(vec.dims, 0);
  store_vectors_free(&vec);
  fts_integrity(C);
  /* The client id of a deleted chat's message is free in a new chat. */
  mk_msg(s, u, c2, "user", "again", "k1", 0, NULL);

  /* Deleting the user takes everything. */
  assert_int_equal(store_user_delete(s, u), 0);
  assert_int_equal(store_chat_get(s, u, c2, &(struct store_chat){0}), EG_ENOTFOUND);
  assert_int_equal(store_message_get(s, u, m2, &m), EG_ENOTFOUND);
  struct store_memories l;
  assert_int_equal(store_memory_list(s, u, NULL, 0, &l), 0);
  assert_int_equal(l.n, 0);
  store_memories_free(&l);
  assert_int_equal(store_memory_search(s, u, "zebra", 10, &h), 0);
  assert_int_equal(h.n, 0);
  store_hits_free(&h);
  assert_int_equal(pending_of(s, u, "any", &l), 0);
  store_memories_free(&l);
  fts_integrity(C);
}

/* The keyword index turned off and on again: searches are refused while it is off, writes
   go on; turned on, it is built from every memory (those written while it was off
   included, the deleted ones not) and kept by every write again. On SQLite the state is
   the file's: another handle opened meanwhile finds it off. */
static void t_keyword_index(void **state) {
  STORE_OR_SKIP(state);
  char u[ID_LEN + 1], c[ID_LEN + 1], a[ID_LEN + 1], b[ID_LEN + 1], d[ID_LEN + 1], e[ID_LEN + 1];
  mk_user(s, u);
  mk_chat(s, u, c, T0);
  mk_msg(s, u, c, "user", "zebras graze on the savanna", NULL, T0 + 1, a);
  assert_true(store_keyword_index_on(s));
  assert_int_equal(store_keyword_index(s, false), 0);
  assert_false(store_keyword_index_on(s));
  assert_int_equal(store_keyword_index(s, false), 0); /* already off: nothing to do */
  struct store_hits h;
  assert_int_equal(store_memory_search(s, u, "zebras", 10, &h), EG_EUNSUPPORTED);
  assert_int_equal(h.n, 0);

  /* Writes without the index: a message (its memory), a batch, a note, a deletion. */
  mk_msg(s, u, c, "model", "giraffes browse acacia trees", NULL, T0 + 2, b);
  struct store_message_new m[2] = {
      {.chat_id = c, .user_id = u, .role = "user", .content = "zebras and giraffes"},
      {.chat_id = c, .user_id = u, .role = "model", .content = "okapis hide in forests"}};
  int st[2] = {0, 0};
  assert_int_equal(store_message_insert_batch(s, m, 2, st), 0);
  assert_int_equal(st[0], 0);
  assert_int_equal(st[1], 0);
  memcpy(d, m[0].id, sizeof(d));
  struct store_memory note = {.role = "note", .text = "zebras have stripes"};
  store__id_copy(note.user_id, u);
  assert_int_equal(store_memory_add(s, &note), 0);
  assert_int_equal(store_memory_delete(s, u, d), 0);
  if (!C->pg) {
    struct store *s2;
    assert_int_equal(store_open(C->url, NULL, &s2), 0);
    assert_false(store_keyword_index_on(s2));
    assert_int_equal(store_memory_search(s2, u, "zebras", 10, &h), EG_EUNSUPPORTED);
    store_close(s2);
  }

  /* On again: everything stored is found, the deleted memory is not. */
  assert_int_equal(store_keyword_index(s, true), 0);
  assert_true(store_keyword_index_on(s));
  assert_int_equal(store_keyword_index(s, true), 0);
  assert_int_equal(store_memory_search(s, u, "zebras", 10, &h), 0);
  assert_int_equal(h.n, 2);
  assert_true(hit(&h, a) && hit(&h, note.id));
  assert_false(hit(&h, d));
  store_hits_free(&h);
  assert_int_equal(store_memory_search(s, u, "okapis giraffes", 10, &h), 0);
  assert_int_equal(h.n, 2);
  assert_true(hit(&h, b) && hit(&h, m[1].id));
  store_hits_free(&h);
  fts_integrity(C);

  /* Kept again by the writes: a new memory is found, a deleted one is gone. */
  mk_msg(s, u, c, "user", "zebras again", NULL, T0 + 3, e);
  assert_int_equal(store_memory_delete(s, u, a), 0);
  assert_int_equal(store_memory_search(s, u, "zebras", 10, &h), 0);
  assert_int_equal(h.n, 2);
  assert_true(hit(&h, e) && hit(&h, note.id));
  store_hits_free(&h);
  fts_integrity(C);
}

/* ---- threads ------------------------------------------------------------------------- */

struct thr {
  struct store *s;
  const char *user, *chat;
  int idx;
  int failures;
};

static void *thr_main(void *arg) {
  struct thr *t = arg;
  for (int i = 0; i < 25; i++) {
    char text[64], client[32];
    snprintf(text, sizeof(text), "thread %d message %d", t->idx, i);
    snprintf(client, sizeof(client), "t%d-%d", t->idx, i);
    struct store_message_new m = {.chat_id = t->chat,
                                  .user_id = t->user,
                                  .role = "user",
                                  .content = text,
                                  .client_id = client};
    if (store_message_insert(t->s, &m) != 0)
      t->failures++;
    struct store_messages l;
    if (store_message_last(t->s, t->chat, 5, &l) != 0)
      t->failures++;
    store_messages_free(&l);
    struct store_hits h;
    if (store_memory_search(t->s, t->user, "thread message", 5, &h) != 0)
      t->failures++;
    store_hits_free(&h);
  }
  return NULL;
}

static void t_threads(void **state) {
  STORE_OR_SKIP(state);
  char u[ID_LEN + 1], c[ID_LEN + 1];
  mk_user(s, u);
  mk_chat(s, u, c, T0);
  pthread_t th[6];
  struct thr a[6];
  for (int i = 0; i < 6; i++) {
    a[i] = (struct thr){s, u, c, i, 0};
    assert_int_equal(pthread_create(&th[i], NULL, thr_main, &a[i]), 0);
  }
  for (int i = 0; i < 6; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(a[i].failures, 0);
  }
  struct store_messages l;
  assert_int_equal(store_message_last(s, c, 1000, &l), 0);
  assert_int_equal(l.n, 150);
  store_messages_free(&l);
}

/* ---- async layer --------------------------------------------------------------------- */

struct async_t {
  int runs;
  int run_status;
  bool ran_on_loop;
  uv_thread_t loop_thread;
  int done;
  int failed;
  int existed;
  bool closed;
  char chat[ID_LEN + 1], user[ID_LEN + 1];
  struct store_async *a; /* set: completions check the syncer ran before them */
  int failed_eio;
};

static int work_count(struct store *s, void *arg) {
  struct async_t *t = arg;
  struct store_messages l;
  int rc = store_message_last(s, t->chat, 1000, &l);
  int n = (int)l.n;
  store_messages_free(&l);
  return rc != 0 ? rc : n;
}

static void work_done(void *arg, int status) {
  struct async_t *t = arg;
  uv_thread_t self = uv_thread_self();
  t->ran_on_loop = uv_thread_equal(&self, &t->loop_thread);
  t->runs++;
  t->run_status = status;
}

static void ins_done(void *arg, int status, struct store_message_new *m) {
  struct async_t *t = arg;
  t->done++;
  if (status != 0)
    t->failed++;
  if (status == EG_EIO)
    t->failed_eio++;
  if (m->existed)
    t->existed++;
  assert_true(id_valid(m->id, ID_LEN));
  if (t->a) {
    /* Deferred sync (SQLite): a message is reported only after an fsync that began after
       its commit, so at least one sync has completed by its first completion. */
    struct store_async_stats st;
    store_async_stats(t->a, &st);
    assert_true(st.syncs >= 1);
  }
}

static void on_closed(void *arg) {
  ((struct async_t *)arg)->closed = true;
}

static void t_async(void **state) {
  STORE_OR_SKIP(state);
  struct async_t t = {0};
  mk_user(s, t.user);
  mk_chat(s, t.user, t.chat, T0);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  t.loop_thread = uv_thread_self();
  struct store_async *a;
  assert_int_equal(store_async_new(&loop, s, &a), 0);
  assert_int_equal(store_sync_deferred(s), !C->pg);
  if (store_sync_deferred(s))
    t.a = a;
  /* Nothing outstanding: the writer does not keep the loop alive. */
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

  enum { N = 300 };
  struct store_message_new *m = calloc(N, sizeof(*m));
  char(*texts)[48] = calloc(N, 48);
  char(*clients)[16] = calloc(N, 16);
  for (int i = 0; i < N; i++) {
    snprintf(texts[i], 48, "group commit %d", i);
    snprintf(clients[i], 16, "g%d", i % (N - 20)); /* the last 20 repeat earlier ids */
    m[i] = (struct store_message_new){.chat_id = t.chat,
                                      .user_id = t.user,
                                      .role = "user",
                                      .content = texts[i],
                                      .client_id = clients[i]};
    assert_int_equal(store_async_insert(a, &m[i], ins_done, &t), 0);
  }
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t.done, N);
  assert_int_equal(t.failed, 0);
  assert_int_equal(t.existed, 20);
  for (int i = N - 20; i < N; i++)
    assert_string_equal(m[i].id, m[i - (N - 20)].id);
  struct store_async_stats st;
  store_async_stats(a, &st);
  assert_int_equal(st.inserts, N);
  assert_true(st.transactions < N); /* batched */
  assert_true(st.max_batch > 1);
  if (C->pg)
    assert_int_equal(st.syncs, 0);
  else /* one fsync may cover several batches, never fewer than one */
    assert_true(st.syncs >= 1 && st.syncs <= st.transactions);

  /* A closure on the pool, called back on the loop thread. */
  assert_int_equal(store_async_run(a, work_count, work_done, &t), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t.runs, 1);
  assert_int_equal(t.run_status, N - 20);
  assert_true(t.ran_on_loop);

  /* Failures come back as statuses. */
  struct store_message_new bad = {
      .chat_id = t.chat, .user_id = t.chat, .role = "user", .content = "not my chat"};
  t.failed = 0;
  assert_int_equal(store_async_insert(a, &bad, ins_done, &t), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t.failed, 1);

  /* Close while inserts are queued: they still commit and call back. */
  int before = t.done;
  for (int i = 0; i < 10; i++) {
    snprintf(clients[i], 16, "late%d", i);
    m[i] = (struct store_message_new){.chat_id = t.chat,
                                      .user_id = t.user,
                                      .role = "model",
                                      .content = texts[i],
                                      .client_id = clients[i]};
    assert_int_equal(store_async_insert(a, &m[i], ins_done, &t), 0);
  }
  assert_int_equal(store_async_run(a, work_count, work_done, &t), 0);
  store_async_close(a, on_closed, &t);
  assert_int_equal(store_async_insert(a, &m[0], ins_done, &t), EG_ECLOSED);
  assert_int_equal(store_async_run(a, work_count, work_done, &t), EG_ECLOSED);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_true(t.closed);
  assert_int_equal(t.done, before + 10);
  assert_int_equal(t.runs, 2);
  assert_int_equal(uv_loop_close(&loop), 0);

  struct store_messages l;
  assert_int_equal(store_message_last(s, t.chat, 1000, &l), 0);
  assert_int_equal(l.n, N - 20 + 10);
  store_messages_free(&l);
  free(m);
  free(texts);
  free(clients);
}

/* ---- sqlite specifics ---------------------------------------------------------------- */

static void t_sqlite_open(void **state) {
  struct ctx *C = *state;
  if (C->pg)
    skip();
  /* sqlite: prefix, nested data folder creation, pragmas in effect. */
  char dir[300], url[400];
  snprintf(dir, sizeof(dir), "%s/nested/deeper", C->dir);
  struct store *s2;
  assert_int_equal(store_open("", dir, &s2), 0);
  store_close(s2);
  snprintf(url, sizeof(url), "sqlite:%s/engram.db", dir);
  assert_int_equal(store_open(url, NULL, &s2), 0);
  char u[ID_LEN + 1];
  mk_user(s2, u);
  store_close(s2);
  assert_int_equal(store_open(NULL, "/proc/definitely/not/here", &s2), EG_EIO);

  sqlite3 *db;
  snprintf(url, sizeof(url), "%s/engram.db", dir);
  assert_int_equal(sqlite3_open(url, &db), SQLITE_OK);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM users", -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 1);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

/* The deferred fsync fails (here: the -wal file is not where it should be when the syncer
   first opens it): the batch is committed but was never synced, so its messages are
   reported failed (EG_EIO), never stored. */
static void t_sqlite_sync_fails(void **state) {
  struct ctx *C = *state;
  if (C->pg)
    skip();
  char dir[300], path[400], moved[420];
  snprintf(dir, sizeof(dir), "%s/syncfail", C->dir);
  struct store *s2;
  assert_int_equal(store_open("", dir, &s2), 0);
  struct async_t t = {0};
  mk_user(s2, t.user);
  mk_chat(s2, t.user, t.chat, T0);
  snprintf(path, sizeof(path), "%s/engram.db-wal", dir);
  snprintf(moved, sizeof(moved), "%s/moved-wal", dir);
  assert_int_equal(rename(path, moved), 0);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct store_async *a;
  assert_int_equal(store_async_new(&loop, s2, &a), 0);
  struct store_message_new m = {
      .chat_id = t.chat, .user_id = t.user, .role = "user", .content = "unsynced"};
  assert_int_equal(store_async_insert(a, &m, ins_done, &t), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t.done, 1);
  assert_int_equal(t.failed_eio, 1);
  store_async_close(a, on_closed, &t);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_true(t.closed);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(rename(moved, path), 0);
  store_close(s2);
}

static void t_open_errors(void **state) {
  (void)state;
  struct store *s = (struct store *)1;
  /* Nothing listens on port 1: refused at once. */
  assert_int_equal(store_open("postgres://engram@127.0.0.1:1/engram", NULL, &s), EG_ECLOSED);
  assert_null(s);
  assert_int_equal(store_open("postgresql://127.0.0.1:1/x?connect_timeout=2", NULL, &s),
                   EG_ECLOSED);
  assert_int_equal(store_open("/nonexistent-dir-engram/sub/engram.db", NULL, &s), EG_EIO);
  assert_null(s);
  /* A file that is not a database. */
  char path[] = "/tmp/engram-notdb-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "this is not a database, just text ......................", 56),
                   56);
  close(fd);
  assert_int_not_equal(store_open(path, NULL, &s), 0);
  unlink(path);
  store_close(NULL);
}

#define TESTS                                                                                  \
  cmocka_unit_test(t_migrations), cmocka_unit_test(t_users), cmocka_unit_test(t_chats),        \
      cmocka_unit_test(t_messages), cmocka_unit_test(t_client_id), cmocka_unit_test(t_batch),  \
      cmocka_unit_test(t_memories), cmocka_unit_test(t_insert_vectors),                        \
      cmocka_unit_test(t_search), cmocka_unit_test(t_cascades),                                \
      cmocka_unit_test(t_keyword_index), cmocka_unit_test(t_threads),                          \
      cmocka_unit_test(t_async), cmocka_unit_test(t_sqlite_open),                              \
      cmocka_unit_test(t_sqlite_sync_fails)

int main(void) {
  log_init_from_env();
  const struct CMUnitTest pure[] = {cmocka_unit_test(t_fts_terms),
                                    cmocka_unit_test(t_open_errors)};
  const struct CMUnitTest tests[] = {TESTS};
  int fails = cmocka_run_group_tests_name("store/pure", pure, NULL, NULL);
  fails += cmocka_run_group_tests_name("store/sqlite", tests, open_sqlite, close_sqlite);
  fails += cmocka_run_group_tests_name("store/postgres", tests, open_pg, close_pg);
  return fails ? 1 : 0;
}
