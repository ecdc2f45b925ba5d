/*
 * pg.c: the PostgreSQL back end (libpq).
 *
 * Connections. A pool of up to PG_POOL connections, opened on demand. Each caches its
 * prepared statements (PQprepare on first use, a bit per statement; the bits are cleared
 * when the connection is reset). Only parameterised statements run user data; the
 * migrations and BEGIN/COMMIT are constant text.
 *
 * Reconnects. When a connection is checked out, a pending EOF or error on its socket is
 * read first (a restarted server closes every session), and a broken connection is reset
 * (PQreset) before use. If a call still fails because the connection broke under it, the
 * connection is reset and the call runs once more when that is safe: reads, idempotent
 * writes, and transactions whose COMMIT had not been sent yet. Otherwise EG_ECLOSED.
 *
 * Group commit. A batch of messages is one transaction of one statement per message (a CTE
 * that checks the chat's owner, honours UNIQUE(chat_id, client_id) with ON CONFLICT DO
 * NOTHING, adds the memory and moves the chat's last_activity), pipelined (libpq pipeline
 * mode, PG_PIPE_CHUNK statements per round trip). Any SQL error aborts a PostgreSQL
 * transaction, so an error in a batch rolls it back and the rows are replayed one by one
 * (each statement is atomic by itself).
 *
 * Full text: memories.tsv is a generated tsvector ('english') with a GIN index; search
 * ranks with ts_rank_cd over an OR of the quoted words (to_tsquery), one user only.
 */
#include "store/store_int.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PG_POOL 8
#define PG_LOCK_KEY 0x656e6772 /* "engr": advisory lock of the migrations */

static const char *const pg_migrations[] = {
    /* 1: the initial schema (same tables as sqlite.c) */
    "CREATE TABLE users ("
    " id TEXT COLLATE \"C\" PRIMARY KEY,"
    " email TEXT NOT NULL UNIQUE,"
    " password_hash TEXT NOT NULL,"
    " first_name TEXT NOT NULL DEFAULT '',"
    " last_name TEXT NOT NULL DEFAULT '',"
    " created_at BIGINT NOT NULL);"
    "CREATE TABLE chats ("
    " id TEXT COLLATE \"C\" PRIMARY KEY,"
    " user_id TEXT COLLATE \"C\" NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " title TEXT NOT NULL,"
    " last_activity BIGINT NOT NULL,"
    " created_at BIGINT NOT NULL);"
    "CREATE INDEX chats_user ON chats(user_id, last_activity, id);"
    "CREATE TABLE messages ("
    " id TEXT COLLATE \"C\" PRIMARY KEY,"
    " chat_id TEXT COLLATE \"C\" NOT NULL REFERENCES chats(id) ON DELETE CASCADE,"
    " user_id TEXT COLLATE \"C\" NOT NULL," /* = the chat's user (chat cascade) */
    " role TEXT NOT NULL CHECK (role IN ('user', 'model')),"
    " content TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " client_id TEXT,"
    " cancelled BOOLEAN NOT NULL DEFAULT false,"
    " UNIQUE (chat_id, client_id));"
    "CREATE INDEX messages_chat ON messages(chat_id, created_at, id);"
    "CREATE TABLE memories ("
    " id TEXT COLLATE \"C\" PRIMARY KEY,"
    " user_id TEXT COLLATE \"C\" NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " chat_id TEXT COLLATE \"C\" REFERENCES chats(id) ON DELETE CASCADE,"
    " role TEXT NOT NULL CHECK (role IN ('user', 'model', 'note')),"
    " text TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " embed_model TEXT,"
    " vector BYTEA,"
    " dims INTEGER NOT NULL DEFAULT 0,"
    " tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED);"
    "CREATE INDEX memories_user ON memories(user_id, created_at, id);"
    "CREATE INDEX memories_chat ON memories(chat_id);"
    "CREATE INDEX memories_tsv ON memories USING GIN (tsv);",
    /* 2: pending memories by model (see MEM_PENDING) */
    "CREATE INDEX memories_model ON memories(embed_model, id);",
    /* 3: the SQLite back end put the owner into its full-text index; PostgreSQL's search
       already filters by user_id next to the GIN index: nothing to change */
    "SELECT 1;",
};

#define USER_COLS "id, email, password_hash, first_name, last_name, created_at"
#define CHAT_COLS "id, user_id, title, last_activity, created_at"
#define MSG_COLS "id, chat_id, user_id, role, content, client_id, created_at, cancelled"
#define MEM_COLS "id, user_id, chat_id, role, text, created_at, embed_model, dims"

#define PG_STMTS(X)                                                                            \
  X(PING, "SELECT 1")                                                                          \
  X(USER_INSERT, "INSERT INTO users(" USER_COLS ") VALUES ($1, $2, $3, $4, $5, $6::bigint)")   \
  X(USER_BY_ID, "SELECT " USER_COLS " FROM users WHERE id = $1")                               \
  X(USER_BY_EMAIL, "SELECT " USER_COLS " FROM users WHERE email = $1")                         \
  X(USER_DELETE, "DELETE FROM users WHERE id = $1")                                            \
  X(USER_LIST, "SELECT " USER_COLS " FROM users WHERE id > $1 ORDER BY id LIMIT $2::bigint")   \
  X(CHAT_INSERT, "INSERT INTO chats(" CHAT_COLS ") VALUES ($1, $2, $3, $4::bigint,"            \
                 " $5::bigint)")                                                               \
  X(CHAT_GET, "SELECT " CHAT_COLS " FROM chats WHERE id = $1 AND user_id = $2")                \
  X(CHAT_LIST, "SELECT " CHAT_COLS " FROM chats WHERE user_id = $1 AND (last_activity <"       \
               " $2::bigint OR (last_activity = $2::bigint AND id < $3))"                      \
               " ORDER BY last_activity DESC, id DESC LIMIT $4::bigint")                       \
  X(CHAT_RENAME, "UPDATE chats SET title = $3 WHERE id = $1 AND user_id = $2")                 \
  X(CHAT_DELETE, "DELETE FROM chats WHERE id = $1 AND user_id = $2")                           \
  X(MSG_INSERT,                                                                                \
    "WITH ins AS (INSERT INTO messages(" MSG_COLS ")"                                          \
    " SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::bigint,"          \
    " $8::boolean WHERE EXISTS (SELECT 1 FROM chats WHERE id = $2::text AND"                   \
    " user_id = $3::text) ON CONFLICT (chat_id, client_id) DO NOTHING"                         \
    " RETURNING id, user_id, chat_id, role, content, created_at),"                             \
    " mem AS (INSERT INTO memories(id, user_id, chat_id, role, text, created_at,"              \
    " embed_model, vector, dims) SELECT id, user_id, chat_id, role, content, created_at,"      \
    " $9::text, $10::bytea, COALESCE($11::int, 0) FROM ins WHERE content <> ''),"              \
    " touch AS (UPDATE chats SET last_activity = GREATEST(last_activity, $7::bigint)"          \
    " WHERE id = $2::text AND EXISTS (SELECT 1 FROM ins))"                                     \
    " SELECT (SELECT count(*) FROM ins),"                                                      \
    " (SELECT id FROM messages WHERE chat_id = $2::text AND client_id = $6::text),"            \
    " (SELECT created_at FROM messages WHERE chat_id = $2::text AND client_id = $6::text),"    \
    " EXISTS (SELECT 1 FROM chats WHERE id = $2::text AND user_id = $3::text)")                \
  X(MSG_GET, "SELECT " MSG_COLS " FROM messages WHERE id = $1 AND user_id = $2")               \
  X(MSG_BEFORE, "SELECT " MSG_COLS " FROM messages WHERE chat_id = $1 AND (created_at <"       \
                " $2::bigint OR (created_at = $2::bigint AND id < $3))"                        \
                " ORDER BY created_at DESC, id DESC LIMIT $4::bigint")                         \
  X(MSG_AFTER, "SELECT " MSG_COLS " FROM messages WHERE chat_id = $1 AND (created_at >"        \
               " $2::bigint OR (created_at = $2::bigint AND id > $3))"                         \
               " ORDER BY created_at, id LIMIT $4::bigint")                                    \
  X(MSG_IN_CHAT, "SELECT created_at FROM messages WHERE id = $1 AND chat_id = $2")             \
  X(MEM_INSERT, "INSERT INTO memories(id, user_id, chat_id, role, text, created_at)"           \
                " VALUES ($1, $2, NULL, $3, $4, $5::bigint)")                                  \
  X(MEM_PENDING, "SELECT * FROM ("                                                             \
                 "(SELECT " MEM_COLS " FROM memories WHERE embed_model IS NULL"                \
                 " AND id > $2 ORDER BY id LIMIT $3::bigint) UNION ALL "                       \
                 "(SELECT " MEM_COLS " FROM memories WHERE embed_model < $1"                   \
                 " AND id > $2 ORDER BY id LIMIT $3::bigint) UNION ALL "                       \
                 "(SELECT " MEM_COLS " FROM memories WHERE embed_model > $1"                   \
                 " AND id > $2 ORDER BY id LIMIT $3::bigint)) p ORDER BY id LIMIT $3::bigint") \
  X(MEM_SET_VEC, "UPDATE memories SET embed_model = $2, vector = $3::bytea, dims = $4::int"    \
                 " WHERE id = $1")                                                             \
  X(MEM_ALL, "SELECT id, created_at, CASE WHEN embed_model = $2 THEN vector END, dims,"        \
             " chat_id, role, text FROM memories WHERE user_id = $1 ORDER BY created_at, id")  \
  X(MEM_DELETE, "DELETE FROM memories WHERE id = $1 AND user_id = $2")                         \
  X(MEM_DELETE_ALL, "DELETE FROM memories WHERE user_id = $1")                                 \
  X(MEM_CURSOR, "SELECT created_at FROM memories WHERE id = $1 AND user_id = $2")              \
  X(MEM_LIST, "SELECT " MEM_COLS " FROM memories WHERE user_id = $1 AND (created_at <"         \
              " $2::bigint OR (created_at = $2::bigint AND id < $3))"                          \
              " ORDER BY created_at DESC, id DESC LIMIT $4::bigint")                           \
  X(MEM_GET_MANY, "SELECT " MEM_COLS " FROM memories WHERE user_id = $1 AND"                   \
                  " id = ANY ($2::text[])")                                                    \
  X(MEM_SEARCH, "SELECT id, ts_rank_cd(tsv, q) AS r FROM memories,"                            \
                " to_tsquery('english', $2) q WHERE user_id = $1 AND tsv @@ q"                 \
                " ORDER BY r DESC, id DESC LIMIT $3::bigint")

enum pg_stmt {
#define PG_ENUM(name, sql) PG_##name,
  PG_STMTS(PG_ENUM)
#undef PG_ENUM
      PG__COUNT
};

static const char *const pg_sql[] = {
#define PG_SQL(name, sql) sql,
    PG_STMTS(PG_SQL)
#undef PG_SQL
};

_Static_assert(PG__COUNT <= 64, "prepared-statement bitmask is 64 bits");

struct pg_conn {
  PGconn *conn;
  uint64_t prepared; /* bit i: statement i is prepared on this connection */
  bool commit_sent;  /* the call has sent its committing statement */
};

struct pg_store {
  struct store base;
  char *url;
  pthread_mutex_t mu;
  pthread_cond_t cond;
  struct pg_conn conns[PG_POOL];
  bool busy[PG_POOL];
  /* Pool gauges for pg_pool_stats, read without the lock. */
  atomic_uint n_open, n_busy, n_wait;
  atomic_uint_fast64_t reconnects;
};

static struct pg_store *PGS(struct store *s) {
  return (struct pg_store *)s;
}

/* ---- connections --------------------------------------------------------------------- */

/* libpq messages span lines; the log wants one line: a per-thread cleaned copy. */
static const char *one_line(const char *msg) {
  static _Thread_local char out[512];
  size_t n = 0;
  for (const char *p = msg ? msg : ""; *p && n + 1 < sizeof(out); p++) {
    char ch = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p;
    if (ch == ' ' && (n == 0 || out[n - 1] == ' '))
      continue;
    out[n++] = ch;
  }
  while (n > 0 && out[n - 1] == ' ')
    n--;
  out[n] = 0;
  return out;
}

static void pg_notice(void *arg, const char *msg) {
  (void)arg;
  log_debug("store: postgres notice: %s", one_line(msg));
}

static PGconn *pg_connect(const char *url) {
  const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
  const char *vals[] = {url, "5", "engram", NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (c)
    PQsetNoticeProcessor(c, pg_notice, NULL);
  return c;
}

/* Reads what the server sent while the connection was idle (a restarted server's
   goodbye) and resets a broken connection. */
static void pg_revive(struct pg_store *p, struct pg_conn *c) {
  if (PQstatus(c->conn) == CONNECTION_OK) {
    /* A terminated backend sends an error message, then EOF: read until both are seen
       (libpq marks the connection bad on EOF) or nothing more is pending. */
    for (int i = 0; i < 4 && PQstatus(c->conn) == CONNECTION_OK; i++) {
      struct pollfd pfd = {.fd = PQsocket(c->conn), .events = POLLIN};
      if (pfd.fd < 0 || poll(&pfd, 1, 0) <= 0)
        break;
      if (!PQconsumeInput(c->conn))
        break;
      PGnotify *n;
      while ((n = PQnotifies(c->conn)) != NULL)
        PQfreemem(n);
    }
  }
  if (PQstatus(c->conn) != CONNECTION_OK) {
    log_warn("store: postgres connection lost, reconnecting");
    PQreset(c->conn);
    c->prepared = 0;
    atomic_fetch_add_explicit(&p->reconnects, 1, memory_order_relaxed);
  }
}

static struct pg_conn *pg_get(struct pg_store *p) {
  pthread_mutex_lock(&p->mu);
  int idx = -1;
  while (idx < 0) {
    for (int i = 0; i < PG_POOL && idx < 0; i++)
      if (!p->busy[i] && p->conns[i].conn)
        idx = i;
    for (int i = 0; i < PG_POOL && idx < 0; i++)
      if (!p->busy[i])
        idx = i;
    if (idx < 0) {
      atomic_fetch_add_explicit(&p->n_wait, 1, memory_order_relaxed);
      pthread_cond_wait(&p->cond, &p->mu);
      atomic_fetch_sub_explicit(&p->n_wait, 1, memory_order_relaxed);
    }
  }
  p->busy[idx] = true;
  atomic_fetch_add_explicit(&p->n_busy, 1, memory_order_relaxed);
  pthread_mutex_unlock(&p->mu);
  struct pg_conn *c = &p->conns[idx];
  if (!c->conn) {
    c->conn = pg_connect(p->url);
    c->prepared = 0;
    if (c->conn)
      atomic_fetch_add_explicit(&p->n_open, 1, memory_order_relaxed);
  }
  pg_revive(p, c);
  c->commit_sent = false;
  return c;
}

static void pg_put(struct pg_store *p, struct pg_conn *c) {
  pthread_mutex_lock(&p->mu);
  p->busy[c - p->conns] = false;
  atomic_fetch_sub_explicit(&p->n_busy, 1, memory_order_relaxed);
  pthread_cond_signal(&p->cond);
  pthread_mutex_unlock(&p->mu);
}

/* Maps a failed result to an EG_E* code. */
static int pg_err(PGconn *conn, PGresult *res, const char *what) {
  if (PQstatus(conn) != CONNECTION_OK) {
    log_warn("store: postgres connection broken during %.60s: %s", what,
             one_line(PQerrorMessage(conn)));
    return EG_ECLOSED;
  }
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  if (state) {
    if (strcmp(state, "23505") == 0)
      return EG_EEXISTS;
    if (strcmp(state, "23503") == 0)
      return EG_ENOTFOUND;
    if (strcmp(state, "23514") == 0 || strcmp(state, "23502") == 0 ||
        strncmp(state, "22", 2) == 0)
      return EG_EINVAL;
  }
  log_error("store: postgres %.80s: %s", what,
            one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(conn)));
  return EG_EDB;
}

/* Runs prepared statement id. Returns the result (PQclear it) or NULL with *rc set. */
static PGresult *pg_exec(struct pg_conn *c, enum pg_stmt id, int n, const char *const *vals,
                         const int *lens, const int *fmts, int rfmt, int *rc) {
  char name[16];
  snprintf(name, sizeof(name), "eg%d", (int)id);
  if (!(c->prepared & (1ull << id))) {
    PGresult *r = PQprepare(c->conn, name, pg_sql[id], 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      *rc = pg_err(c->conn, r, pg_sql[id]);
      PQclear(r);
      return NULL;
    }
    PQclear(r);
    c->prepared |= 1ull << id;
  }
  PGresult *r = PQexecPrepared(c->conn, name, n, vals, lens, fmts, rfmt);
  ExecStatusType es = PQresultStatus(r);
  if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) {
    *rc = 0;
    return r;
  }
  *rc = pg_err(c->conn, r, pg_sql[id]);
  PQclear(r);
  return NULL;
}

/* Text-parameter shorthand. */
static PGresult *pg_q(struct pg_conn *c, enum pg_stmt id, int n, const char *const *vals,
                      int *rc) {
  return pg_exec(c, id, n, vals, NULL, NULL, 0, rc);
}

/* Runs constant SQL (BEGIN, COMMIT, migrations). */
static int pg_simple(struct pg_conn *c, const char *sql) {
  PGresult *r = PQexec(c->conn, sql);
  ExecStatusType es = PQresultStatus(r);
  int rc = es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK ? 0 : pg_err(c->conn, r, sql);
  PQclear(r);
  return rc;
}

enum pg_safety {
  PG_RETRY,             /* reads and idempotent writes */
  PG_RETRY_UNCOMMITTED, /* retry only when the failure came before the commit was sent */
};

/* Runs fn on a pooled connection with the reconnect-and-retry-once policy. fn must
   leave its outputs empty when it fails. */
static int pg_call(struct store *s, int (*fn)(struct pg_conn *c, void *arg), void *arg,
                   enum pg_safety safety) {
  struct pg_store *p = PGS(s);
  struct pg_conn *c = pg_get(p);
  int rc;
  if (PQstatus(c->conn) != CONNECTION_OK) {
    log_error("store: postgres unreachable: %s", one_line(PQerrorMessage(c->conn)));
    rc = EG_ECLOSED;
    goto out;
  }
  rc = fn(c, arg);
  if (rc != 0 && PQstatus(c->conn) != CONNECTION_OK) {
    bool safe = safety == PG_RETRY || !c->commit_sent;
    pg_revive(PGS(s), c);
    if (!safe || PQstatus(c->conn) != CONNECTION_OK) {
      rc = EG_ECLOSED;
      goto out;
    }
    c->commit_sent = false;
    rc = fn(c, arg);
    if (rc != 0 && PQstatus(c->conn) != CONNECTION_OK)
      rc = EG_ECLOSED;
  }
out:
  pg_put(p, c);
  return rc;
}

/* ---- value helpers ------------------------------------------------------------------- */

static char *val_dup(const PGresult *r, int row, int col) {
  if (PQgetisnull(r, row, col))
    return NULL;
  return xstrndup(PQgetvalue(r, row, col), (size_t)PQgetlength(r, row, col));
}

static void val_copy(const PGresult *r, int row, int col, char *dst, size_t cap) {
  store__str_copy(dst, cap, PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

static int64_t val_i64(const PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void fmt_i64(char *out, size_t cap, int64_t v) {
  snprintf(out, cap, "%lld", (long long)v);
}

static void row_user(const PGresult *r, int i, struct store_user *u) {
  val_copy(r, i, 0, u->id, sizeof(u->id));
  u->email = val_dup(r, i, 1);
  u->password_hash = val_dup(r, i, 2);
  u->first_name = val_dup(r, i, 3);
  u->last_name = val_dup(r, i, 4);
  u->created_at = val_i64(r, i, 5);
}

static void row_chat(const PGresult *r, int i, struct store_chat *c) {
  val_copy(r, i, 0, c->id, sizeof(c->id));
  val_copy(r, i, 1, c->user_id, sizeof(c->user_id));
  c->title = val_dup(r, i, 2);
  c->last_activity = val_i64(r, i, 3);
  c->created_at = val_i64(r, i, 4);
}

static void row_msg(const PGresult *r, int i, struct store_message *m) {
  val_copy(r, i, 0, m->id, sizeof(m->id));
  val_copy(r, i, 1, m->chat_id, sizeof(m->chat_id));
  val_copy(r, i, 2, m->user_id, sizeof(m->user_id));
  val_copy(r, i, 3, m->role, sizeof(m->role));
  m->content = val_dup(r, i, 4);
  m->client_id = val_dup(r, i, 5);
  m->created_at = val_i64(r, i, 6);
  m->cancelled = PQgetvalue(r, i, 7)[0] == 't';
}

static void row_mem(const PGresult *r, int i, struct store_memory *m) {
  val_copy(r, i, 0, m->id, sizeof(m->id));
  val_copy(r, i, 1, m->user_id, sizeof(m->user_id));
  val_copy(r, i, 2, m->chat_id, sizeof(m->chat_id));
  val_copy(r, i, 3, m->role, sizeof(m->role));
  m->text = val_dup(r, i, 4);
  m->created_at = val_i64(r, i, 5);
  val_copy(r, i, 6, m->model, sizeof(m->model));
  m->dims = (uint32_t)val_i64(r, i, 7);
  m->vector = NULL;
}

/* ---- migrations, open, close --------------------------------------------------------- */

static int op_migrate(struct pg_conn *c, void *arg) {
  int *version = arg;
  int rc = pg_simple(c, "BEGIN");
  if (rc != 0)
    return rc;
  char sql[160];
  snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%d)", PG_LOCK_KEY);
  rc = pg_simple(c, sql);
  if (rc == 0)
    rc = pg_simple(c, "CREATE TABLE IF NOT EXISTS schema_version ("
                      " version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
  int v = 0;
  if (rc == 0) {
    PGresult *r = PQexec(c->conn, "SELECT COALESCE(MAX(version), 0) FROM schema_version");
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
      v = (int)val_i64(r, 0, 0);
    else
      rc = pg_err(c->conn, r, "schema_version");
    PQclear(r);
  }
  for (; rc == 0 && v < (int)EG_ARRAY_LEN(pg_migrations); v++) {
    rc = pg_simple(c, pg_migrations[v]);
    if (rc == 0) {
      snprintf(sql, sizeof(sql), "INSERT INTO schema_version VALUES (%d, %lld)", v + 1,
               (long long)clock_wall_ms());
      rc = pg_simple(c, sql);
    }
    if (rc == 0)
      log_info("store: postgres schema migrated to version %d", v + 1);
  }
  if (rc == 0) {
    c->commit_sent = true;
    rc = pg_simple(c, "COMMIT");
  } else if (PQstatus(c->conn) == CONNECTION_OK) {
    (void)pg_simple(c, "ROLLBACK");
  }
  *version = v;
  return rc;
}

static int pg_migrate(struct store *s, int *version) {
  /* DDL is transactional: a failed attempt leaves nothing behind, so a retry is safe. */
  return pg_call(s, op_migrate, version, PG_RETRY);
}

static const struct store_ops pg_ops;

static void pg_close(struct store *s) {
  struct pg_store *p = PGS(s);
  for (int i = 0; i < PG_POOL; i++)
    if (p->conns[i].conn)
      PQfinish(p->conns[i].conn);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cond);
  free(p->url);
  free(p);
}

int store__pg_open(const char *url, struct store **out) {
  struct pg_store *p = xcalloc(1, sizeof(*p));
  p->base.ops = &pg_ops;
  p->url = xstrdup(url);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cond, NULL);
  PGconn *c = pg_connect(url);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    log_error("store: cannot connect to postgres: %s",
              c ? one_line(PQerrorMessage(c)) : "out of memory");
    if (c)
      PQfinish(c);
    pg_close(&p->base);
    return EG_ECLOSED;
  }
  snprintf(p->base.desc, sizeof(p->base.desc), "postgres %s:%s/%s", PQhost(c), PQport(c),
           PQdb(c));
  p->conns[0].conn = c;
  atomic_store_explicit(&p->n_open, 1, memory_order_relaxed);
  int v;
  int rc = pg_migrate(&p->base, &v);
  if (rc != 0) {
    pg_close(&p->base);
    return rc;
  }
  *out = &p->base;
  return 0;
}

static int op_ping(struct pg_conn *c, void *arg) {
  (void)arg;
  int rc;
  PGresult *r = pg_q(c, PG_PING, 0, NULL, &rc);
  PQclear(r);
  return rc;
}

static void pg_pool_stats(struct store *s, struct store_pool_stats *out) {
  struct pg_store *p = PGS(s);
  out->size = PG_POOL;
  out->open = atomic_load_explicit(&p->n_open, memory_order_relaxed);
  out->in_use = atomic_load_explicit(&p->n_busy, memory_order_relaxed);
  out->waiters = atomic_load_explicit(&p->n_wait, memory_order_relaxed);
  out->reconnects = (uint64_t)atomic_load_explicit(&p->reconnects, memory_order_relaxed);
}

static int pg_ping(struct store *s) {
  return pg_call(s, op_ping, NULL, PG_RETRY);
}

/* ---- generic one-statement calls ------------------------------------------------------- */

/* A statement with up to 8 text parameters; *changes gets the affected row count. */
struct pg_cmd {
  enum pg_stmt id;
  int n;
  const char *v[8];
  int lens[8];
  int fmts[8];
  long changes;
};

static int op_cmd(struct pg_conn *c, void *arg) {
  struct pg_cmd *q = arg;
  int rc;
  c->commit_sent = true; /* autocommit: the statement is its own transaction */
  PGresult *r = pg_exec(c, q->id, q->n, q->v, q->lens, q->fmts, 0, &rc);
  if (r) {
    q->changes = strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
  }
  return rc;
}

static int pg_cmd(struct store *s, struct pg_cmd *q, enum pg_safety safety) {
  return pg_call(s, op_cmd, q, safety);
}

/* A query that appends each result row to a list through fill(). */
struct pg_rows {
  enum pg_stmt id;
  int n;
  const char *v[8];
  void (*fill)(const PGresult *r, int row, void *list, size_t *cap);
  void *list;
  void (*clear)(void *list);
  int found; /* rows seen */
};

static int op_rows(struct pg_conn *c, void *arg) {
  struct pg_rows *q = arg;
  int rc;
  PGresult *r = pg_q(c, q->id, q->n, q->v, &rc);
  if (!r)
    return rc;
  size_t cap = 0;
  q->found = PQntuples(r);
  for (int i = 0; i < q->found; i++)
    q->fill(r, i, q->list, &cap);
  PQclear(r);
  return 0;
}

static void fill_user(const PGresult *r, int row, void *list, size_t *cap) {
  struct store_users *l = list;
  l->v = store__grow(l->v, l->n, cap, sizeof(*l->v));
  row_user(r, row, &l->v[l->n++]);
}

static void fill_chat(const PGresult *r, int row, void *list, size_t *cap) {
  struct store_chats *l = list;
  l->v = store__grow(l->v, l->n, cap, sizeof(*l->v));
  row_chat(r, row, &l->v[l->n++]);
}

static void fill_msg(const PGresult *r, int row, void *list, size_t *cap) {
  struct store_messages *l = list;
  l->v = store__grow(l->v, l->n, cap, sizeof(*l->v));
  row_msg(r, row, &l->v[l->n++]);
}

static void fill_mem(const PGresult *r, int row, void *list, size_t *cap) {
  struct store_memories *l = list;
  l->v = store__grow(l->v, l->n, cap, sizeof(*l->v));
  row_mem(r, row, &l->v[l->n++]);
}

/* ---- users --------------------------------------------------------------------------- */

static int pg_user_create(struct store *s, struct store_user_new *u) {
  char t[24];
  fmt_i64(t, sizeof(t), u->created_at);
  struct pg_cmd q = {.id = PG_USER_INSERT,
                     .n = 6,
                     .v = {u->id, u->email, u->password_hash,
                           u->first_name ? u->first_name : "", u->last_name ? u->last_name : "",
                           t}};
  return pg_cmd(s, &q, PG_RETRY_UNCOMMITTED);
}

static int pg_user_get(struct store *s, const char *id, const char *email,
                       struct store_user *out) {
  struct store_users l = {0};
  struct pg_rows q = {.id = id ? PG_USER_BY_ID : PG_USER_BY_EMAIL,
                      .n = 1,
                      .v = {id ? id : email},
                      .fill = fill_user,
                      .list = &l};
  int rc = pg_call(s, op_rows, &q, PG_RETRY);
  if (rc == 0 && l.n == 0)
    rc = EG_ENOTFOUND;
  if (rc == 0) {
    *out = l.v[0];
    memset(&l.v[0], 0, sizeof(l.v[0]));
  }
  store_users_free(&l);
  return rc;
}

static int pg_user_delete(struct store *s, const char *id) {
  struct pg_cmd q = {.id = PG_USER_DELETE, .n = 1, .v = {id}};
  int rc = pg_cmd(s, &q, PG_RETRY);
  return rc == 0 && q.changes == 0 ? EG_ENOTFOUND : rc;
}

static int pg_user_list(struct store *s, const char *after_id, size_t limit,
                        struct store_users *out) {
  char lim[24];
  fmt_i64(lim, sizeof(lim), (int64_t)limit);
  struct pg_rows q = {.id = PG_USER_LIST,
                      .n = 2,
                      .v = {after_id ? after_id : "", lim},
                      .fill = fill_user,
                      .list = out};
  int rc = pg_call(s, op_rows, &q, PG_RETRY);
  if (rc != 0)
    store_users_free(out);
  return rc;
}

/* ---- chats --------------------------------------------------------------------------- */

static int pg_chat_create(struct store *s, struct store_chat *c) {
  char t1[24], t2[24];
  fmt_i64(t1, sizeof(t1), c->last_activity);
  fmt_i64(t2, sizeof(t2), c->created_at);
  struct pg_cmd q = {.id = PG_CHAT_INSERT, .n = 5, .v = {c->id, c->user_id, c->title, t1, t2}};
  return pg_cmd(s, &q, PG_RETRY_UNCOMMITTED);
}

static int pg_chat_get(struct store *s, const char *user_id, const char *chat_id,
                       struct store_chat *out) {
  struct store_chats l = {0};
  struct pg_rows q = {
      .id = PG_CHAT_GET, .n = 2, .v = {chat_id, user_id}, .fill = fill_chat, .list = &l};
  int rc = pg_call(s, op_rows, &q, PG_RETRY);
  if (rc == 0 && l.n == 0)
    rc = EG_ENOTFOUND;
  if (rc == 0 && out) {
    *out = l.v[0];
    memset(&l.v[0], 0, sizeof(l.v[0]));
  }
  store_chats_free(&l);
  return rc;
}

static int pg_chat_list(struct store *s, const char *user_id, const char *before_id,
                        size_t limit, struct store_chats *out) {
  int64_t t = INT64_MAX;
  if (before_id) {
    struct store_chat cur = {0};
    int rc = pg_chat_get(s, user_id, before_id, &cur);
    if (rc != 0)
      return rc;
    t = cur.last_activity;
    store_chat_clear(&cur);
  }
  char ts[24], lim[24];
  fmt_i64(ts, sizeof(ts), t);
  fmt_i64(lim, sizeof(lim), (int64_t)limit);
  struct pg_rows q = {.id = PG_CHAT_LIST,
                      .n = 4,
                      .v = {user_id, ts, before_id ? before_id : "", lim},
                      .fill = fill_chat,
                      .list = out};
  int rc = pg_call(s, op_rows, &q, PG_RETRY);
  if (rc != 0)
    store_chats_free(out);
  return rc;
}

static int pg_chat_rename(struct store *s, const char *user_id, const char *chat_id,
                          const char *title) {
  struct pg_cmd q = {.id = PG_CHAT_RENAME, .n = 3, .v = {chat_id, user_id, title}};
  int rc = pg_cmd(s, &q, PG_RETRY);
  return rc == 0 && q.changes == 0 ? EG_ENOTFOUND : rc;
}

static int pg_chat_delete(struct store *s, const char *user_id, const char *chat_id) {
  struct pg_cmd q = {.id = PG_CHAT_DELETE, .n = 2, .v = {chat_id, user_id}};
  int rc = pg_cmd(s, &q, PG_RETRY);
  return rc == 0 && q.changes == 0 ? EG_ENOTFOUND : rc;
}

/* ---- messages ------------------------------------------------------------------------ */

/* The parameters of PG_MSG_INSERT for m. */
#define PG_MSG_NPARAMS 11
struct pg_msg_args {
  char t[24], dims[12];
  char *hex; /* the vector as bytea text ("\\x..."), or NULL */
  const char *v[PG_MSG_NPARAMS];
};

static void pg_msg_params(const struct store_message_new *m, struct pg_msg_args *a) {
  fmt_i64(a->t, sizeof a->t, m->created_at);
  const char **v = a->v;
  v[0] = m->id;
  v[1] = m->chat_id;
  v[2] = m->user_id;
  v[3] = m->role;
  v[4] = m->content;
  v[5] = m->client_id && *m->client_id ? m->client_id : NULL;
  v[6] = a->t;
  v[7] = m->cancelled ? "true" : "false";
  v[8] = v[9] = v[10] = NULL;
  a->hex = NULL;
  if (m->vec && m->dims && m->embed_model) {
    snprintf(a->dims, sizeof a->dims, "%u", (unsigned)m->dims);
    v[8] = m->embed_model;
    v[10] = a->dims;
  }
  if (m->vec && m->dims && m->embed_model && !m->vec_derived) {
    static const char hx[] = "0123456789abcdef";
    size_t bytes = m->dims * sizeof(float);
    const uint8_t *p = (const uint8_t *)m->vec;
    a->hex = xmalloc(2 * bytes + 3);
    a->hex[0] = '\\';
    a->hex[1] = 'x';
    for (size_t i = 0; i < bytes; i++) {
      a->hex[2 + 2 * i] = hx[p[i] >> 4];
      a->hex[3 + 2 * i] = hx[p[i] & 15];
    }
    a->hex[2 + 2 * bytes] = 0;
    v[9] = a->hex;
  }
}

/* The message's status from PG_MSG_INSERT's one result row. */
static int pg_msg_parse(const PGresult *r, struct store_message_new *m) {
  m->existed = false;
  if (PQntuples(r) != 1)
    return EG_EDB;
  long inserted = strtol(PQgetvalue(r, 0, 0), NULL, 10);
  bool chat_ok = PQgetvalue(r, 0, 3)[0] == 't';
  bool client = m->client_id && *m->client_id;
  if (inserted == 1)
    return 0;
  if (!chat_ok)
    return EG_ENOTFOUND;
  if (client && !PQgetisnull(r, 0, 1)) {
    val_copy(r, 0, 1, m->id, sizeof(m->id));
    m->created_at = val_i64(r, 0, 2);
    m->existed = true;
    return 0;
  }
  /* A concurrent insert of the same client_id committed after this statement's snapshot:
     report a conflict; a retry sees it as an existing message. */
  return EG_EEXISTS;
}

/* One message through the CTE statement on an open connection. Returns the message's
   status; a SQL error (which aborts an enclosing transaction) comes back as *sql_err. */
static int pg_msg_one(struct pg_conn *c, struct store_message_new *m, int *sql_err) {
  struct pg_msg_args a;
  pg_msg_params(m, &a);
  int rc;
  *sql_err = 0;
  m->existed = false;
  PGresult *r = pg_q(c, PG_MSG_INSERT, PG_MSG_NPARAMS, a.v, &rc);
  free(a.hex);
  if (!r) {
    *sql_err = rc;
    return rc;
  }
  rc = pg_msg_parse(r, m);
  PQclear(r);
  return rc;
}

struct pg_batch {
  struct store_message_new *m;
  size_t n;
  int *status;
  bool fallback; /* out: the batch failed and must be replayed row by row */
};

static int op_batch(struct pg_conn *c, void *arg) {
  struct pg_batch *b = arg;
  int *st = xmalloc(b->n * sizeof(*st));
  memcpy(st, b->status, b->n * sizeof(*st));
  b->fallback = false;
  int rc = 0;
  if (b->n > 1)
    rc = pg_simple(c, "BEGIN");
  else
    c->commit_sent = true; /* one statement: it is its own transaction */
  for (size_t i = 0; i < b->n && rc == 0; i++) {
    if (st[i] != 0)
      continue;
    int sql_err;
    st[i] = pg_msg_one(c, &b->m[i], &sql_err);
    if (sql_err) {
      rc = sql_err;
      if (b->n > 1 && rc != EG_ECLOSED)
        b->fallback = true; /* one bad row must not fail the others */
    }
  }
  if (b->n > 1) {
    if (rc == 0) {
      c->commit_sent = true;
      rc = pg_simple(c, "COMMIT");
    } else if (PQstatus(c->conn) == CONNECTION_OK) {
      (void)pg_simple(c, "ROLLBACK");
    }
  } else if (rc != 0 && st[0] == rc && rc != EG_ECLOSED && rc != EG_EDB) {
    rc = 0; /* a per-row failure (EG_EEXISTS, EG_EINVAL...): the call itself worked */
  }
  if (rc == 0)
    memcpy(b->status, st, b->n * sizeof(*st));
  free(st);
  return rc;
}

/* Prepares statement id on c if it is not yet (outside pipeline mode). */
static int pg_prepare(struct pg_conn *c, enum pg_stmt id, char name[16]) {
  snprintf(name, 16, "eg%d", (int)id);
  if (c->prepared & (1ull << id))
    return 0;
  PGresult *r = PQprepare(c->conn, name, pg_sql[id], 0, NULL);
  int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg_err(c->conn, r, pg_sql[id]);
  PQclear(r);
  if (rc == 0)
    c->prepared |= 1ull << id;
  return rc;
}

/* In pipeline mode: the result of the next command, with its terminating NULL consumed.
   NULL when the connection failed. */
static PGresult *pipe_result(PGconn *conn) {
  PGresult *r = PQgetResult(conn);
  if (r && PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
    PGresult *x;
    while ((x = PQgetResult(conn)) != NULL)
      PQclear(x);
  }
  return r;
}

/* Waits for the sync result that ends a pipeline chunk. */
static bool pipe_sync(PGconn *conn) {
  for (;;) {
    PGresult *r = PQgetResult(conn);
    if (!r)
      return false;
    ExecStatusType es = PQresultStatus(r);
    PQclear(r);
    if (es == PGRES_PIPELINE_SYNC)
      return true;
  }
}

#define PG_PIPE_CHUNK 64

/* The batch as one transaction whose statements are pipelined (libpq pipeline mode):
   BEGIN, then chunks of PG_PIPE_CHUNK inserts each sent at once and answered at once,
   then COMMIT: one network round trip per chunk instead of one per message. Chunks keep
   what is in flight small, so neither side ever blocks on a full socket buffer. A SQL
   error in a row aborts the transaction: ROLLBACK, and the caller replays row by row. */
static int op_batch_pipe(struct pg_conn *c, void *arg) {
  struct pg_batch *b = arg;
  b->fallback = false;
  char name[16];
  int rc = pg_prepare(c, PG_MSG_INSERT, name);
  if (rc != 0)
    return rc;
  int *st = xmalloc(b->n * sizeof(*st));
  memcpy(st, b->status, b->n * sizeof(*st));
  rc = pg_simple(c, "BEGIN");
  if (rc != 0) {
    free(st);
    return rc;
  }
  PGconn *conn = c->conn;
  bool row_error = false;
  if (!PQenterPipelineMode(conn)) {
    rc = pg_err(conn, NULL, "pipeline mode");
    goto done;
  }
  for (size_t from = 0; from < b->n && rc == 0 && !row_error;) {
    size_t sent[PG_PIPE_CHUNK];
    size_t k = 0, i = from;
    bool ok = true;
    for (; i < b->n && k < PG_PIPE_CHUNK && ok; i++) {
      if (st[i] != 0)
        continue;
      struct pg_msg_args a;
      pg_msg_params(&b->m[i], &a);
      ok = PQsendQueryPrepared(conn, name, PG_MSG_NPARAMS, a.v, NULL, NULL, 0) == 1;
      free(a.hex);
      sent[k++] = i;
    }
    from = i;
    if (k == 0)
      break;
    if (!ok || !PQpipelineSync(conn)) {
      rc = pg_err(conn, NULL, "pipeline send");
      break;
    }
    for (size_t j = 0; j < k; j++) {
      PGresult *r = pipe_result(conn);
      if (!r) {
        rc = pg_err(conn, NULL, "pipeline result");
        break;
      }
      ExecStatusType es = PQresultStatus(r);
      if (es == PGRES_TUPLES_OK) {
        st[sent[j]] = pg_msg_parse(r, &b->m[sent[j]]);
      } else if (es != PGRES_PIPELINE_ABORTED) {
        int e = pg_err(conn, r, "message insert");
        if (e == EG_ECLOSED)
          rc = e;
        row_error = true;
      }
      PQclear(r);
    }
    if (rc == 0 && !pipe_sync(conn))
      rc = pg_err(conn, NULL, "pipeline sync");
  }
  if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF && !PQexitPipelineMode(conn) && rc == 0)
    rc = pg_err(conn, NULL, "pipeline exit");
done:
  if (rc == 0 && !row_error) {
    c->commit_sent = true;
    rc = pg_simple(c, "COMMIT");
  } else {
    if (rc == 0) {
      rc = EG_EDB;
      b->fallback = true; /* one bad row must not fail the others */
    }
    if (PQstatus(conn) == CONNECTION_OK)
      (void)pg_simple(c, "ROLLBACK");
  }
  if (rc == 0)
    memcpy(b->status, st, b->n * sizeof(*st));
  free(st);
  return rc;
}

/* nosync is never asked (no sync op): a PostgreSQL commit is as durable as the server's
   synchronous_commit makes it. */
static int pg_msg_insert_batch(struct store *s, struct store_message_new *m, size_t n,
                               int *status, bool nosync) {
  (void)nosync;
  struct pg_batch b = {m, n, status, false};
  size_t valid = 0;
  for (size_t i = 0; i < n; i++)
    valid += status[i] == 0;
  int rc = pg_call(s, valid > 1 ? op_batch_pipe : op_batch, &b, PG_RETRY_UNCOMMITTED);
  if (rc != 0 && b.fallback) {
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
      if (status[i] != 0)
        continue;
      int one = 0;
      struct pg_batch b1 = {&m[i], 1, &one, false};
      rc = pg_call(s, op_batch, &b1, PG_RETRY_UNCOMMITTED);
      status[i] = one;
    }
  }
  return rc;
}

static int pg_msg_get(struct store *s, const char *user_id, const char *id,
                      struct store_message *out) {
  struct store_messages l = {0};
  struct pg_rows q = {
      .id = PG_MSG_GET, .n = 2, .v = {id, user_id}, .fill = fill_msg, .list = &l};
  int rc = pg_call(s, op_rows, &q, PG_RETRY);
  if (rc == 0 && l.n == 0)
    rc = EG_ENOTFOUND;
  if (rc == 0) {
    *out = l.v[0];
    memset(&l.v[0], 0, sizeof(l.v[0]));
  }
  store_messages_free(&l);
  return rc;
}

static void msgs_reverse(struct store_messages *l, size_t from) {
  for (size_t i = from, j = l->n; i + 1 < j; i++, j--) {
    struct store_message t = l->v[i];
    l->v[i] = l->v[j - 1];
    l->v[j - 1] = t;
  }
}

static int pg_msg_range(struct store *s, const char *chat_id, bool before, int64_t t,
                        const char *id, size_t limit, struct store_messages *out) {
  char ts[24], lim[24];
  fmt_i64(ts, sizeof(ts), t);
  fmt_i64(lim, sizeof(lim), (int64_t)limit);
  struct pg_rows q = {.id = before ? PG_MSG_BEFORE : PG_MSG_AFTER,
                      .n = 4,
                      .v = {chat_id, ts, id, lim},
                      .fill = fill_msg,
                      .list = out};
  return pg_call(s, op_rows, &q, PG_RETRY);
}

static int pg_msg_list(struct store *s, const char *user_id, const char *chat_id,
                       const struct store_page *pg, struct store_messages *out) {
  int rc = pg_chat_get(s, user_id, chat_id, NULL);
  if (rc != 0)
    return rc;
  int64_t t = INT64_MAX;
  const char *cur = "";
  if (pg->before_id) {
    struct store_message m = {0};
    rc = pg_msg_get(s, user_id, pg->before_id, &m);
    if (rc == 0 && strcmp(m.chat_id, chat_id) != 0)
      rc = EG_ENOTFOUND;
    t = m.created_at;
    store_message_clear(&m);
    if (rc != 0)
      return rc;
    cur = pg->before_id;
  } else if (pg->before_ms > 0) {
    t = pg->before_ms;
  }
  rc = pg_msg_range(s, chat_id, true, t, cur, pg->limit, out);
  if (rc == 0)
    msgs_reverse(out, 0);
  else
    store_messages_free(out);
  return rc;
}

static int pg_msg_last(struct store *s, const char *chat_id, size_t n,
                       struct store_messages *out) {
  int rc = pg_msg_range(s, chat_id, true, INT64_MAX, "", n, out);
  if (rc == 0)
    msgs_reverse(out, 0);
  else
    store_messages_free(out);
  return rc;
}

static int pg_msg_neighbours(struct store *s, const char *user_id, const char *id,
                             size_t n_before, size_t n_after, struct store_messages *out) {
  struct store_message mid = {0};
  int rc = pg_msg_get(s, user_id, id, &mid);
  if (rc != 0)
    return rc;
  if (n_before)
    rc = pg_msg_range(s, mid.chat_id, true, mid.created_at, mid.id, n_before, out);
  if (rc == 0) {
    msgs_reverse(out, 0);
    struct store_messages after = {0};
    if (n_after)
      rc = pg_msg_range(s, mid.chat_id, false, mid.created_at, mid.id, n_after, &after);
    if (rc == 0) {
      size_t total = out->n + 1 + after.n;
      out->v = xrealloc(out->v, total * sizeof(*out->v));
      out->v[out->n++] = mid;
      memset(&mid, 0, sizeof(mid));
      if (after.n)
        memcpy(&out->v[out->n], after.v, after.n * sizeof(*after.v));
      out->n += after.n;
      free(after.v);
    } else {
      store_messages_free(&after);
    }
  }
  store_message_clear(&mid);
  if (rc != 0)
    store_messages_free(out);
  return rc;
}

/* ---- memories ------------------------------------------------------------------------ */

static int pg_mem_add(struct store *s, struct store_memory *m) {
  char t[24];
  fmt_i64(t, sizeof(t), m->created_at);
  struct pg_cmd q = {
      .id = PG_MEM_INSERT, .n = 5, .v = {m->id, m->user_id, m->role, m->text, t}};
  return pg_cmd(s, &q, PG_RETRY_UNCOMMITTED);
}

static int pg_mem_pending(struct store *s, const char *model, const char *after_id,
                          size_t limit, struct store_memories *out) {
  char lim[24];
  fmt_i64(lim, sizeof(lim), (int64_t)limit);
  struct pg_rows q = {.id = PG_MEM_PENDING,
                      .n = 3,
                      .v = {model, after_id ? after_id : "", lim},
                      .fill = fill_mem,
                      .list = out};
  int rc = pg_call(s, op_rows, &q, PG_RETRY);
  if (rc != 0)
    store_memories_free(out);
  return rc;
}

static int pg_mem_set_vector(struct store *s, const char *id, const char *model,
                             const float *vec, uint32_t dims) {
  char d[16];
  snprintf(d, sizeof(d), "%u", dims);
  struct pg_cmd q = {.id = PG_MEM_SET_VEC,
                     .n = 4,
                     .v = {id, model, (const char *)vec, d},
                     .lens = {0, 0, (int)(dims * sizeof(float)), 0},
                     .fmts = {0, 0, 1, 0}};
  int rc = pg_cmd(s, &q, PG_RETRY);
  return rc == 0 && q.changes == 0 ? EG_ENOTFOUND : rc;
}

struct pg_vec_load {
  const char *user_id, *model;
  struct store_vectors *out;
};

static uint32_t be32(const char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return ntohl(v);
}

static int op_load_all(struct pg_conn *c, void *arg) {
  struct pg_vec_load *a = arg;
  struct store_vectors *out = a->out;
  store_vectors_free(out); /* a retry starts over */
  const char *v[2] = {a->user_id, a->model};
  int rc;
  /* Binary results: the vectors come back as raw bytes, the numbers big-endian; text as
     its bytes (libpq adds a NUL). */
  PGresult *r = pg_exec(c, PG_MEM_ALL, 2, v, NULL, NULL, 1, &rc);
  if (!r)
    return rc;
  int rows = PQntuples(r);
  size_t cap = 0;
  for (int i = 0; i < rows; i++) {
    if (PQgetlength(r, i, 1) != 8 || PQgetlength(r, i, 3) != 4 || PQgetlength(r, i, 0) > ID_LEN)
      continue;
    uint32_t dims = be32(PQgetvalue(r, i, 3));
    size_t bytes = (size_t)PQgetlength(r, i, 2);
    const void *vec = PQgetisnull(r, i, 2) ? NULL : PQgetvalue(r, i, 2);
    if (dims == 0 || bytes != dims * sizeof(float))
      vec = NULL;
    const char *tp = PQgetvalue(r, i, 1);
    uint64_t t = ((uint64_t)be32(tp) << 32) | be32(tp + 4);
    store__vectors_push(out, &cap, PQgetvalue(r, i, 0),
                        PQgetisnull(r, i, 4) ? "" : PQgetvalue(r, i, 4), PQgetvalue(r, i, 5),
                        PQgetvalue(r, i, 6), (int64_t)t, vec, dims);
  }
  PQclear(r);
  return 0;
}

static int pg_mem_load_all(struct store *s, const char *user_id, const char *model,
                           struct store_vectors *out) {
  struct pg_vec_load a = {user_id, model, out};
  int rc = pg_call(s, op_load_all, &a, PG_RETRY);
  if (rc != 0)
    store_vectors_free(out);
  return rc;
}

static int pg_mem_delete(struct store *s, const char *user_id, const char *id) {
  struct pg_cmd q = {.id = PG_MEM_DELETE, .n = 2, .v = {id, user_id}};
  int rc = pg_cmd(s, &q, PG_RETRY);
  return rc == 0 && q.changes == 0 ? EG_ENOTFOUND : rc;
}

static int pg_mem_delete_all(struct store *s, const char *user_id, size_t *deleted) {
  struct pg_cmd q = {.id = PG_MEM_DELETE_ALL, .n = 1, .v = {user_id}};
  int rc = pg_cmd(s, &q, PG_RETRY);
  *deleted = rc == 0 ? (size_t)q.changes : 0;
  return rc;
}

static int pg_mem_list(struct store *s, const char *user_id, const char *before_id,
                       size_t limit, struct store_memories *out) {
  int64_t t = INT64_MAX;
  if (before_id) {
    struct store_memories cur = {0};
    struct pg_rows q = {.id = PG_MEM_GET_MANY, .n = 2, .fill = fill_mem, .list = &cur};
    char arr[ID_LEN + 3];
    snprintf(arr, sizeof(arr), "{%s}", before_id);
    q.v[0] = user_id;
    q.v[1] = arr;
    int rc = pg_call(s, op_rows, &q, PG_RETRY);
    if (rc == 0 && cur.n == 0)
      rc = EG_ENOTFOUND;
    if (rc == 0)
      t = cur.v[0].created_at;
    store_memories_free(&cur);
    if (rc != 0)
      return rc;
  }
  char ts[24], lim[24];
  fmt_i64(ts, sizeof(ts), t);
  fmt_i64(lim, sizeof(lim), (int64_t)limit);
  struct pg_rows q = {.id = PG_MEM_LIST,
                      .n = 4,
                      .v = {user_id, ts, before_id ? before_id : "", lim},
                      .fill = fill_mem,
                      .list = out};
  int rc = pg_call(s, op_rows, &q, PG_RETRY);
  if (rc != 0)
    store_memories_free(out);
  return rc;
}

static int pg_mem_get_many(struct store *s, const char *user_id, const char *const *ids,
                           size_t n, struct store_memories *out) {
  /* The ids were validated as 24 hex chars, so the array literal needs no quoting. */
  struct buf arr;
  buf_init(&arr, (size_t)n * (ID_LEN + 1) + 3);
  int rc = buf_append_byte(&arr, '{');
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (i)
      rc = buf_append_byte(&arr, ',');
    if (rc == 0)
      rc = buf_append_str(&arr, ids[i]);
  }
  if (rc == 0)
    rc = buf_append(&arr, "}", 2); /* with the NUL */
  if (rc != 0) {
    buf_free(&arr);
    return EG_EINVAL;
  }
  struct store_memories got = {0};
  struct pg_rows q = {.id = PG_MEM_GET_MANY,
                      .n = 2,
                      .v = {user_id, (const char *)arr.data},
                      .fill = fill_mem,
                      .list = &got};
  rc = pg_call(s, op_rows, &q, PG_RETRY);
  buf_free(&arr);
  if (rc != 0) {
    store_memories_free(&got);
    return rc;
  }
  /* Back into the order of ids (duplicates in ids give one row each time they appear). */
  out->v = xcalloc(n, sizeof(*out->v));
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < got.n; j++) {
      if (strcmp(got.v[j].id, ids[i]) != 0)
        continue;
      struct store_memory *d = &out->v[out->n++];
      *d = got.v[j];
      d->text = got.v[j].text ? xstrdup(got.v[j].text) : NULL;
      break;
    }
  }
  store_memories_free(&got);
  return 0;
}

struct pg_search {
  const char *user_id;
  const char *query;
  const char *limit;
  struct store_hits *out;
};

static int op_search(struct pg_conn *c, void *arg) {
  struct pg_search *a = arg;
  const char *v[3] = {a->user_id, a->query, a->limit};
  int rc;
  PGresult *r = pg_q(c, PG_MEM_SEARCH, 3, v, &rc);
  if (!r)
    return rc;
  int rows = PQntuples(r);
  a->out->v = rows ? xcalloc((size_t)rows, sizeof(*a->out->v)) : NULL;
  for (int i = 0; i < rows; i++) {
    struct store_hit *h = &a->out->v[a->out->n++];
    val_copy(r, i, 0, h->id, sizeof(h->id));
    h->score = strtod(PQgetvalue(r, i, 1), NULL);
  }
  PQclear(r);
  return 0;
}

static int pg_mem_search(struct store *s, const char *user_id, const char *const *terms,
                         size_t n_terms, size_t k, struct store_hits *out) {
  /* 'w1' | 'w2' | ...: words hold only letters, digits and non-ASCII characters
     (store__fts_terms), so quoting each makes it a plain lexeme whatever it says. */
  struct buf q;
  buf_init(&q, 1 << 16);
  int rc = 0;
  for (size_t i = 0; i < n_terms && rc == 0; i++)
    rc = buf_printf(&q, "%s'%s'", i ? " | " : "", terms[i]);
  if (rc != 0) {
    buf_free(&q);
    return EG_EINVAL;
  }
  char lim[24];
  fmt_i64(lim, sizeof(lim), (int64_t)k);
  struct pg_search a = {user_id, (const char *)q.data, lim, out};
  rc = pg_call(s, op_search, &a, PG_RETRY);
  buf_free(&q);
  if (rc != 0)
    store_hits_free(out);
  return rc;
}

static const struct store_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .migrate = pg_migrate,
    .ping = pg_ping,
    .pool_stats = pg_pool_stats,
    .user_create = pg_user_create,
    .user_get = pg_user_get,
    .user_delete = pg_user_delete,
    .user_list = pg_user_list,
    .chat_create = pg_chat_create,
    .chat_get = pg_chat_get,
    .chat_list = pg_chat_list,
    .chat_rename = pg_chat_rename,
    .chat_delete = pg_chat_delete,
    .message_insert_batch = pg_msg_insert_batch,
    .message_get = pg_msg_get,
    .message_list = pg_msg_list,
    .message_last = pg_msg_last,
    .message_neighbours = pg_msg_neighbours,
    .memory_add = pg_mem_add,
    .memory_pending = pg_mem_pending,
    .memory_set_vector = pg_mem_set_vector,
    .memory_load_all = pg_mem_load_all,
    .memory_delete = pg_mem_delete,
    .memory_delete_all = pg_mem_delete_all,
    .memory_list = pg_mem_list,
    .memory_get_many = pg_mem_get_many,
    .memory_search = pg_mem_search,
};
