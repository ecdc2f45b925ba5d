/*
 * sqlite.c: the SQLite back end.
 *
 * Connections. One writer connection, guarded by a mutex (SQLite allows one writer at a
 * time anyway; serialising here avoids SQLITE_BUSY between our own threads), a second one
 * for the group-commit batches (synchronous=NORMAL, fsynced by sq_sync: see store.h
 * "Durability"; the same mutex guards it), and up to
 * SQ_READERS reader connections handed out from a small pool (WAL lets them read while the
 * writer commits). Every connection caches its prepared statements (prepared lazily with
 * SQLITE_PREPARE_PERSISTENT; reset and unbound after each use). Connections are opened
 * with SQLITE_OPEN_NOMUTEX because the pool never shares one between threads at a time.
 * The two writers open the file through sqlite_walbuf.c's VFS, which writes each commit's
 * WAL frames in 124 KiB pwrites instead of two per frame (the file's bytes are the same).
 *
 * Pragmas: journal_mode=WAL, synchronous=FULL but NORMAL on the batch writer,
 * foreign_keys=ON
 * (cascades), busy_timeout=10000 (another process on the same file), a 16 MiB page cache.
 * Readers do not map the file (mmap_size 0, since 2026-11-26): mapped pages counted in
 * the process's RSS and moved with the reads (up to 16 MB in the soak), while the hot reads
 * are gone (the recall works in RAM, the chat windows are cached); a read after another
 * connection's commit pread()s its pages again from the OS page cache.
 *
 * Full text: memories_fts is an external-content FTS5 table over memories(text, user_id)
 * (the owner is indexed so a search ranks one user's memories only), keyed by
 * the integer alias memories.rid (stable across VACUUM, unlike an implicit rowid), kept in
 * step by triggers; foreign-key cascades fire those triggers too, so deleting a chat or a
 * user cleans the index. Only the Pinecone mode searches it: with built-in vectors the
 * server turns it off (store_keyword_index: the table and its triggers are dropped, which
 * saves their writes for every memory), and turning it on again rebuilds it from memories.
 * Whether memories_fts exists is the state, read at open.
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SQ_READERS 4

/* WAL pages after which a commit checkpoints (SQLite's default: 1000). A chat's batch
   dirties pages all over the indexes keyed by chat and user (~110 WAL frames for 22
   messages and their memories), and a checkpoint writes each page once however often the
   WAL holds it: at 16000 pages (64 MB of WAL) it writes a fraction of what 16 checkpoints
   of 1000 pages write, and syncs the database 16 times less often. Measured on
   bench/pipeline.sh (2 A/B rounds): the writer's CPU per answer 273/284 -> 232/223 us;
   bench/writer_replay: 1000 -> 8000 -> 16000 -> 32000 pages: 290 -> 260 -> 252 -> 258 us
   per ai-message. The cost: the WAL file stays at its largest size, and the commit that
   checkpoints takes longer (fewer, longer pauses of the writer). */
#define SQ_WAL_CHECKPOINT "16000"

/* ---- schema -------------------------------------------------------------------------- */

/* The full-text index as migration 3 made it, built from every memory; and its removal.
   sq_keyword_index uses both too: a later migration that changes the index must change
   them (and cope with a store whose index is off: no memories_fts table). */
#define SQ_FTS_CREATE                                                                          \
  "CREATE VIRTUAL TABLE memories_fts USING fts5(text, user_id, content='memories',"            \
  " content_rowid='rid', tokenize='porter unicode61');"                                        \
  "INSERT INTO memories_fts(memories_fts) VALUES ('rebuild');"                                 \
  "CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN"                                  \
  " INSERT INTO memories_fts(rowid, text, user_id) VALUES (new.rid, new.text, new.user_id);"   \
  " END;"                                                                                      \
  "CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN"                                  \
  " INSERT INTO memories_fts(memories_fts, rowid, text, user_id)"                              \
  " VALUES ('delete', old.rid, old.text, old.user_id); END;"                                   \
  "CREATE TRIGGER memories_au AFTER UPDATE OF text, user_id ON memories BEGIN"                 \
  " INSERT INTO memories_fts(memories_fts, rowid, text, user_id)"                              \
  " VALUES ('delete', old.rid, old.text, old.user_id);"                                        \
  " INSERT INTO memories_fts(rowid, text, user_id) VALUES (new.rid, new.text, new.user_id);"   \
  " END;"
#define SQ_FTS_DROP                                                                            \
  "DROP TRIGGER memories_ai; DROP TRIGGER memories_ad; DROP TRIGGER memories_au;"              \
  "DROP TABLE memories_fts;"

/* Migration N is sq_migrations[N - 1]; pg.c has the same numbering. */
static const char *const sq_migrations[] = {
    /* 1: the initial schema */
    "CREATE TABLE users ("
    " id TEXT PRIMARY KEY,"
    " email TEXT NOT NULL UNIQUE,"
    " password_hash TEXT NOT NULL,"
    " first_name TEXT NOT NULL DEFAULT '',"
    " last_name TEXT NOT NULL DEFAULT '',"
    " created_at INTEGER NOT NULL);"
    "CREATE TABLE chats ("
    " id TEXT PRIMARY KEY,"
    " user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " title TEXT NOT NULL,"
    " last_activity INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL);"
    "CREATE INDEX chats_user ON chats(user_id, last_activity, id);"
    "CREATE TABLE messages ("
    " id TEXT PRIMARY KEY,"
    " chat_id TEXT NOT NULL REFERENCES chats(id) ON DELETE CASCADE,"
    " user_id TEXT NOT NULL," /* = the chat's user: the chat cascade deletes them */
    " role TEXT NOT NULL CHECK (role IN ('user', 'model')),"
    " content TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " client_id TEXT,"
    " cancelled INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE (chat_id, client_id));"
    "CREATE INDEX messages_chat ON messages(chat_id, created_at, id);"
    "CREATE TABLE memories ("
    " rid INTEGER PRIMARY KEY,"
    " id TEXT NOT NULL UNIQUE,"
    " user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " chat_id TEXT REFERENCES chats(id) ON DELETE CASCADE,"
    " role TEXT NOT NULL CHECK (role IN ('user', 'model', 'note')),"
    " text TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " embed_model TEXT,"
    " vector BLOB,"
    " dims INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX memories_user ON memories(user_id, created_at, id);"
    "CREATE INDEX memories_chat ON memories(chat_id);"
    "CREATE VIRTUAL TABLE memories_fts USING fts5(text, content='memories',"
    " content_rowid='rid', tokenize='porter unicode61');"
    "CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN"
    " INSERT INTO memories_fts(rowid, text) VALUES (new.rid, new.text); END;"
    "CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN"
    " INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.rid, old.text);"
    " END;"
    "CREATE TRIGGER memories_au AFTER UPDATE OF text ON memories BEGIN"
    " INSERT INTO memories_fts(memories_fts, rowid, text) VALUES ('delete', old.rid, old.text);"
    " INSERT INTO memories_fts(rowid, text) VALUES (new.rid, new.text); END;",
    /* 2: pending memories by model, so that a backfill costs what is pending, not the
       whole table (see MEM_PENDING) */
    "CREATE INDEX memories_model ON memories(embed_model, id);",
    /* 3: the owner in the full-text index, so that a search ranks one user's memories
       inside FTS5 (user_id:"<id>" AND text:(...)) and reads only the k rows it returns,
       instead of joining every matching memory of every user to filter afterwards */
    SQ_FTS_DROP SQ_FTS_CREATE,
};

/* ---- statements ---------------------------------------------------------------------- */

#define USER_COLS "id, email, password_hash, first_name, last_name, created_at"
#define CHAT_COLS "id, user_id, title, last_activity, created_at"
#define MSG_COLS "id, chat_id, user_id, role, content, client_id, created_at, cancelled"
#define MEM_COLS "id, user_id, chat_id, role, text, created_at, embed_model, dims"

#define SQ_STMTS(X)                                                                            \
  X(BEGIN, "BEGIN IMMEDIATE")                                                                  \
  X(COMMIT, "COMMIT")                                                                          \
  X(ROLLBACK, "ROLLBACK")                                                                      \
  X(PING, "SELECT 1")                                                                          \
  X(USER_INSERT, "INSERT INTO users(" USER_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)")           \
  X(USER_BY_ID, "SELECT " USER_COLS " FROM users WHERE id = ?1")                               \
  X(USER_BY_EMAIL, "SELECT " USER_COLS " FROM users WHERE email = ?1")                         \
  X(USER_DELETE, "DELETE FROM users WHERE id = ?1")                                            \
  X(USER_LIST, "SELECT " USER_COLS " FROM users WHERE id > ?1 ORDER BY id LIMIT ?2")           \
  X(CHAT_INSERT, "INSERT INTO chats(" CHAT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5)")               \
  X(CHAT_GET, "SELECT " CHAT_COLS " FROM chats WHERE id = ?1 AND user_id = ?2")                \
  X(CHAT_LIST, "SELECT " CHAT_COLS " FROM chats WHERE user_id = ?1 AND (last_activity < ?2"    \
               " OR (last_activity = ?2 AND id < ?3))"                                         \
               " ORDER BY last_activity DESC, id DESC LIMIT ?4")                               \
  X(CHAT_RENAME, "UPDATE chats SET title = ?3 WHERE id = ?1 AND user_id = ?2")                 \
  X(CHAT_DELETE, "DELETE FROM chats WHERE id = ?1 AND user_id = ?2")                           \
  X(CHAT_TOUCH, "UPDATE chats SET last_activity = MAX(last_activity, ?2) WHERE id = ?1")       \
  X(MSG_BY_CLIENT, "SELECT id, created_at FROM messages WHERE chat_id = ?1 AND"                \
                   " client_id = ?2")                                                          \
  X(MSG_INSERT, "INSERT INTO messages(" MSG_COLS ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8"     \
                " WHERE EXISTS (SELECT 1 FROM chats WHERE id = ?2 AND user_id = ?3)")          \
  X(MSG_DELETE, "DELETE FROM messages WHERE id = ?1")                                          \
  X(MSG_MAX_ROWID, "SELECT COALESCE(MAX(rowid), 0) FROM messages")                             \
  X(MEM_FROM_MSGS, "INSERT INTO memories(id, user_id, chat_id, role, text, created_at,"        \
                   " embed_model, vector, dims) SELECT m.id, m.user_id, m.chat_id, m.role,"    \
                   " m.content, m.created_at, v.model, v.vector, COALESCE(v.dims, 0)"          \
                   " FROM messages m LEFT JOIN temp.batch_vec v ON v.id = m.id"                \
                   " WHERE m.rowid > ?1 AND m.content <> '' ORDER BY m.rowid")                 \
  X(VEC_STAGE, "INSERT INTO temp.batch_vec(id, model, vector, dims) VALUES (?1, ?2, ?3, ?4)")  \
  X(VEC_CLEAR, "DELETE FROM temp.batch_vec")                                                   \
  X(MSG_GET, "SELECT " MSG_COLS " FROM messages WHERE id = ?1 AND user_id = ?2")               \
  X(MSG_BEFORE, "SELECT " MSG_COLS " FROM messages WHERE chat_id = ?1 AND (created_at < ?2"    \
                " OR (created_at = ?2 AND id < ?3)) ORDER BY created_at DESC, id DESC"         \
                " LIMIT ?4")                                                                   \
  X(MSG_AFTER, "SELECT " MSG_COLS " FROM messages WHERE chat_id = ?1 AND (created_at > ?2"     \
               " OR (created_at = ?2 AND id > ?3)) ORDER BY created_at, id LIMIT ?4")          \
  X(MSG_IN_CHAT, "SELECT created_at FROM messages WHERE id = ?1 AND chat_id = ?2")             \
  X(MEM_INSERT, "INSERT INTO memories(id, user_id, chat_id, role, text, created_at,"           \
                " embed_model, vector, dims) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"          \
                " COALESCE(?9, 0))")                                                           \
  /* Three index ranges of memories_model (no model, models before, models after ?1):          \
     rows already embedded by ?1 are never visited. */                                         \
  X(MEM_PENDING, "SELECT * FROM ("                                                             \
                 "SELECT * FROM (SELECT " MEM_COLS                                             \
                 " FROM memories INDEXED BY memories_model WHERE embed_model IS NULL"          \
                 " AND id > ?2 ORDER BY id LIMIT ?3) UNION ALL "                               \
                 "SELECT * FROM (SELECT " MEM_COLS                                             \
                 " FROM memories INDEXED BY memories_model WHERE embed_model < ?1"             \
                 " AND id > ?2 ORDER BY id LIMIT ?3) UNION ALL "                               \
                 "SELECT * FROM (SELECT " MEM_COLS                                             \
                 " FROM memories INDEXED BY memories_model WHERE embed_model > ?1"             \
                 " AND id > ?2 ORDER BY id LIMIT ?3)) ORDER BY id LIMIT ?3")                   \
  X(MEM_SET_VEC, "UPDATE memories SET embed_model = ?2, vector = ?3, dims = ?4 WHERE id = ?1") \
  X(MEM_ALL, "SELECT id, created_at, CASE WHEN embed_model = ?2 THEN vector END, dims,"        \
             " chat_id, role, text FROM memories WHERE user_id = ?1 ORDER BY created_at, id")  \
  X(MEM_DELETE, "DELETE FROM memories WHERE id = ?1 AND user_id = ?2")                         \
  X(MEM_DELETE_ALL, "DELETE FROM memories WHERE user_id = ?1")                                 \
  X(MEM_CURSOR, "SELECT created_at FROM memories WHERE id = ?1 AND user_id = ?2")              \
  X(MEM_LIST, "SELECT " MEM_COLS " FROM memories WHERE user_id = ?1 AND (created_at < ?2"      \
              " OR (created_at = ?2 AND id < ?3)) ORDER BY created_at DESC, id DESC"           \
              " LIMIT ?4")                                                                     \
  X(MEM_GET, "SELECT " MEM_COLS " FROM memories WHERE id = ?1 AND user_id = ?2")               \
  X(MEM_SEARCH, "SELECT m.id, f.r FROM (SELECT rowid, bm25(memories_fts, 1.0, 0.0) AS r"       \
                " FROM memories_fts WHERE memories_fts MATCH ?1 ORDER BY r LIMIT ?3) f"        \
                " JOIN memories m ON m.rid = f.rowid WHERE m.user_id = ?2 ORDER BY f.r")

enum sq_stmt {
#define SQ_ENUM(name, sql) SQ_##name,
  SQ_STMTS(SQ_ENUM)
#undef SQ_ENUM
      SQ__COUNT
};

static const char *const sq_sql[] = {
#define SQ_SQL(name, sql) sql,
    SQ_STMTS(SQ_SQL)
#undef SQ_SQL
};

struct sq_conn {
  sqlite3 *db;
  sqlite3_stmt *st[SQ__COUNT];
};

struct sq_store {
  struct store base;
  char *path;
  pthread_mutex_t wmu; /* guards writer */
  struct sq_conn writer;
  /* The group-commit writer's connection: synchronous=NORMAL, made durable by sq_sync
     (store.h "Durability"). Used under wmu like `writer`. */
  struct sq_conn bwriter;
  pthread_mutex_t smu; /* guards wal_fd */
  int wal_fd;          /* the -wal file, opened by the first sq_sync; -1 before */
  pthread_mutex_t rmu; /* guards the reader pool */
  pthread_cond_t rcond;
  struct sq_conn readers[SQ_READERS];
  bool rbusy[SQ_READERS];
  bool ropen[SQ_READERS];
  /* Pool gauges for sq_pool_stats, read without the locks. */
  atomic_uint n_ropen, n_rbusy, n_rwait, w_busy, n_wwait;
};

static struct sq_store *SQ(struct store *s) {
  return (struct sq_store *)s;
}

/* Maps a SQLite result code to an EG_E* code (and logs unexpected ones). */
static int sq_err(sqlite3 *db, int rc, const char *what) {
  int ext = db ? sqlite3_extended_errcode(db) : rc;
  if ((rc & 0xff) == SQLITE_CONSTRAINT) {
    if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
      return EG_EEXISTS;
    if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
      return EG_ENOTFOUND;
    if (ext == SQLITE_CONSTRAINT_CHECK || ext == SQLITE_CONSTRAINT_NOTNULL)
      return EG_EINVAL;
  }
  log_error("store: sqlite %s: %s (%d)", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
            ext);
  return EG_EDB;
}

static sqlite3_stmt *sq_prep(struct sq_conn *c, enum sq_stmt id) {
  if (!c->st[id]) {
    int rc =
        sqlite3_prepare_v3(c->db, sq_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id], NULL);
    if (rc != SQLITE_OK) {
      log_error("store: sqlite prepare %s: %s", sq_sql[id], sqlite3_errmsg(c->db));
      c->st[id] = NULL;
      return NULL;
    }
  }
  return c->st[id];
}

static void sq_done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* Runs a statement without results to completion. */
static int sq_exec_st(struct sq_conn *c, enum sq_stmt id) {
  sqlite3_stmt *st = sq_prep(c, id);
  if (!st)
    return EG_EDB;
  int rc = sqlite3_step(st);
  int out = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sq_err(c->db, rc, sq_sql[id]);
  sq_done(st);
  return out;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s) {
  if (s)
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, i);
}

static char *col_dup(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return t ? xstrndup((const char *)t, (size_t)sqlite3_column_bytes(st, i)) : NULL;
}

static void col_copy(sqlite3_stmt *st, int i, char *dst, size_t cap) {
  store__str_copy(dst, cap, (const char *)sqlite3_column_text(st, i));
}

static void row_user(sqlite3_stmt *st, struct store_user *u) {
  col_copy(st, 0, u->id, sizeof(u->id));
  u->email = col_dup(st, 1);
  u->password_hash = col_dup(st, 2);
  u->first_name = col_dup(st, 3);
  u->last_name = col_dup(st, 4);
  u->created_at = sqlite3_column_int64(st, 5);
}

static void row_chat(sqlite3_stmt *st, struct store_chat *c) {
  col_copy(st, 0, c->id, sizeof(c->id));
  col_copy(st, 1, c->user_id, sizeof(c->user_id));
  c->title = col_dup(st, 2);
  c->last_activity = sqlite3_column_int64(st, 3);
  c->created_at = sqlite3_column_int64(st, 4);
}

static void row_msg(sqlite3_stmt *st, struct store_message *m) {
  col_copy(st, 0, m->id, sizeof(m->id));
  col_copy(st, 1, m->chat_id, sizeof(m->chat_id));
  col_copy(st, 2, m->user_id, sizeof(m->user_id));
  col_copy(st, 3, m->role, sizeof(m->role));
  m->content = col_dup(st, 4);
  m->client_id = col_dup(st, 5);
  m->created_at = sqlite3_column_int64(st, 6);
  m->cancelled = sqlite3_column_int(st, 7) != 0;
}

static void row_mem(sqlite3_stmt *st, struct store_memory *m) {
  col_copy(st, 0, m->id, sizeof(m->id));
  col_copy(st, 1, m->user_id, sizeof(m->user_id));
  col_copy(st, 2, m->chat_id, sizeof(m->chat_id));
  col_copy(st, 3, m->role, sizeof(m->role));
  m->text = col_dup(st, 4);
  m->created_at = sqlite3_column_int64(st, 5);
  col_copy(st, 6, m->model, sizeof(m->model));
  m->dims = (uint32_t)sqlite3_column_int(st, 7);
  m->vector = NULL;
}

/* ---- connections --------------------------------------------------------------------- */

enum sq_role { SQ_ROLE_READER, SQ_ROLE_WRITER, SQ_ROLE_BATCH };

static int sq_conn_open(struct sq_conn *c, const char *path, enum sq_role role) {
  bool writer = role != SQ_ROLE_READER;
  memset(c, 0, sizeof(*c));
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_CREATE : 0);
  /* The writers write each commit's WAL frames in a few large pwrites (sqlite_walbuf.c);
     readers never write the WAL. */
  int rc = sqlite3_open_v2(path, &c->db, flags, writer ? store__walbuf_vfs() : NULL);
  if (rc != SQLITE_OK) {
    log_error("store: cannot open sqlite database %s: %s", path,
              c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    sqlite3_close(c->db);
    c->db = NULL;
    return EG_EIO;
  }
  sqlite3_extended_result_codes(c->db, 1);
  sqlite3_busy_timeout(c->db, 10000);
  const char *pragmas =
      role == SQ_ROLE_WRITER
          ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
            " PRAGMA foreign_keys=ON; PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY;"
            " PRAGMA wal_autocheckpoint=" SQ_WAL_CHECKPOINT ";"
      : role == SQ_ROLE_BATCH
          ? "PRAGMA synchronous=NORMAL;"
            " PRAGMA foreign_keys=ON; PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY;"
            " PRAGMA wal_autocheckpoint=" SQ_WAL_CHECKPOINT ";"
          : "PRAGMA foreign_keys=ON; PRAGMA cache_size=-16384;"
            " PRAGMA query_only=ON;";
  char *msg = NULL;
  rc = sqlite3_exec(c->db, pragmas, NULL, NULL, &msg);
  /* The writer's staging table for the vectors of a batch (see sq_msg_batch_try): in
     memory, private to the connection, never in the database file. */
  if (rc == SQLITE_OK && writer)
    rc = sqlite3_exec(c->db,
                      "CREATE TEMP TABLE batch_vec (id TEXT PRIMARY KEY, model TEXT NOT NULL,"
                      " vector BLOB, dims INTEGER NOT NULL)",
                      NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    log_error("store: sqlite pragmas on %s: %s", path, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    sqlite3_close(c->db);
    c->db = NULL;
    return EG_EDB;
  }
  return 0;
}

static void sq_conn_close(struct sq_conn *c) {
  for (int i = 0; i < SQ__COUNT; i++)
    sqlite3_finalize(c->st[i]);
  sqlite3_close(c->db);
  memset(c, 0, sizeof(*c));
}

static struct sq_conn *sq_writer(struct store *s) {
  struct sq_store *q = SQ(s);
  if (pthread_mutex_trylock(&q->wmu) != 0) {
    atomic_fetch_add_explicit(&q->n_wwait, 1, memory_order_relaxed);
    pthread_mutex_lock(&q->wmu);
    atomic_fetch_sub_explicit(&q->n_wwait, 1, memory_order_relaxed);
  }
  atomic_store_explicit(&q->w_busy, 1, memory_order_relaxed);
  return &q->writer;
}

static void sq_writer_put(struct store *s) {
  atomic_store_explicit(&SQ(s)->w_busy, 0, memory_order_relaxed);
  pthread_mutex_unlock(&SQ(s)->wmu);
}

/* A reader connection (opened on first use), or NULL when one cannot be opened. */
static struct sq_conn *sq_reader(struct store *s) {
  struct sq_store *q = SQ(s);
  pthread_mutex_lock(&q->rmu);
  for (;;) {
    for (int i = 0; i < SQ_READERS; i++) {
      if (q->rbusy[i])
        continue;
      if (!q->ropen[i]) {
        if (sq_conn_open(&q->readers[i], q->path, SQ_ROLE_READER) != 0)
          continue;
        q->ropen[i] = true;
        atomic_fetch_add_explicit(&q->n_ropen, 1, memory_order_relaxed);
      }
      q->rbusy[i] = true;
      atomic_fetch_add_explicit(&q->n_rbusy, 1, memory_order_relaxed);
      pthread_mutex_unlock(&q->rmu);
      return &q->readers[i];
    }
    bool any_open = false;
    for (int i = 0; i < SQ_READERS; i++)
      any_open = any_open || q->ropen[i];
    if (!any_open) {
      pthread_mutex_unlock(&q->rmu);
      return NULL;
    }
    atomic_fetch_add_explicit(&q->n_rwait, 1, memory_order_relaxed);
    pthread_cond_wait(&q->rcond, &q->rmu);
    atomic_fetch_sub_explicit(&q->n_rwait, 1, memory_order_relaxed);
  }
}

static void sq_reader_put(struct store *s, struct sq_conn *c) {
  struct sq_store *q = SQ(s);
  pthread_mutex_lock(&q->rmu);
  q->rbusy[c - q->readers] = false;
  atomic_fetch_sub_explicit(&q->n_rbusy, 1, memory_order_relaxed);
  pthread_cond_signal(&q->rcond);
  pthread_mutex_unlock(&q->rmu);
}

/* ---- migrations ---------------------------------------------------------------------- */

static int sq_exec(struct sq_conn *c, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    log_error("store: sqlite: %s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return EG_EDB;
  }
  return 0;
}

static int sq_version(struct sq_conn *c, int *version) {
  sqlite3_stmt *st = NULL;
  *version = 0;
  int rc = sqlite3_prepare_v2(c->db, "SELECT COALESCE(MAX(version), 0) FROM schema_version", -1,
                              &st, NULL);
  if (rc != SQLITE_OK)
    return sq_err(c->db, rc, "schema_version");
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    *version = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 0 : EG_EDB;
}

static int sq_migrate(struct store *s, int *version) {
  struct sq_conn *c = sq_writer(s);
  int rc = sq_exec(c, "CREATE TABLE IF NOT EXISTS schema_version ("
                      " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
  if (rc != 0)
    goto out;
  for (;;) {
    /* Read the version inside the write transaction so that two processes opening the
       same file at once do not both apply a migration. */
    rc = sq_exec(c, "BEGIN IMMEDIATE");
    if (rc != 0)
      goto out;
    int v = 0;
    rc = sq_version(c, &v);
    if (rc == 0 && v >= (int)EG_ARRAY_LEN(sq_migrations)) {
      *version = v;
      rc = sq_exec(c, "COMMIT");
      goto out;
    }
    if (rc == 0)
      rc = sq_exec(c, sq_migrations[v]);
    if (rc == 0) {
      char sql[128];
      snprintf(sql, sizeof(sql), "INSERT INTO schema_version VALUES (%d, %lld)", v + 1,
               (long long)clock_wall_ms());
      rc = sq_exec(c, sql);
    }
    if (rc == 0)
      rc = sq_exec(c, "COMMIT");
    if (rc != 0) {
      (void)sq_exec(c, "ROLLBACK");
      log_error("store: sqlite migration %d failed", v + 1);
      goto out;
    }
    log_info("store: sqlite schema migrated to version %d", v + 1);
  }
out:
  sq_writer_put(s);
  return rc;
}

/* ---- the keyword index --------------------------------------------------------------- */

/* Whether memories_fts exists (the index is on), on connection c. */
static int sq_fts_exists(struct sq_conn *c, bool *exists) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(
      c->db, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'memories_fts'", -1,
      &st, NULL);
  if (rc != SQLITE_OK)
    return sq_err(c->db, rc, "keyword index lookup");
  rc = sqlite3_step(st);
  *exists = rc == SQLITE_ROW;
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sq_err(c->db, rc, "keyword index lookup");
}

/* Drops the FTS5 table and its triggers (off), or creates them and indexes every memory
   (on), in one transaction; nothing when the index is already so. */
static int sq_keyword_index(struct store *s, bool on) {
  struct sq_conn *c = sq_writer(s);
  int rc = sq_exec(c, "BEGIN IMMEDIATE");
  if (rc != 0)
    goto out;
  bool exists = false;
  rc = sq_fts_exists(c, &exists);
  if (rc == 0 && exists != on) {
    uint64_t t0 = clock_mono_ns();
    rc = sq_exec(c, on ? SQ_FTS_CREATE : SQ_FTS_DROP);
    if (rc == 0)
      log_info("store: sqlite keyword index %s in %.0f ms", on ? "built" : "dropped",
               (double)(clock_mono_ns() - t0) / 1e6);
  }
  if (rc == 0)
    rc = sq_exec(c, "COMMIT");
  if (rc != 0) {
    (void)sq_exec(c, "ROLLBACK");
    log_error("store: sqlite keyword index could not be turned %s", on ? "on" : "off");
  }
out:
  sq_writer_put(s);
  return rc;
}

/* ---- open / close -------------------------------------------------------------------- */

static const struct store_ops sq_ops;

static void sq_close(struct store *s) {
  struct sq_store *q = SQ(s);
  for (int i = 0; i < SQ_READERS; i++)
    if (q->ropen[i])
      sq_conn_close(&q->readers[i]);
  if (q->bwriter.db)
    sq_conn_close(&q->bwriter);
  if (q->wal_fd >= 0)
    close(q->wal_fd);
  pthread_mutex_destroy(&q->smu);
  if (q->writer.db) {
    /* Fold the WAL back into the database so the file stands alone after a clean exit. */
    sqlite3_wal_checkpoint_v2(q->writer.db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    sq_conn_close(&q->writer);
  }
  pthread_mutex_destroy(&q->wmu);
  pthread_mutex_destroy(&q->rmu);
  pthread_cond_destroy(&q->rcond);
  free(q->path);
  free(q);
}

int store__sqlite_open(const char *path, struct store **out) {
  struct sq_store *q = xcalloc(1, sizeof(*q));
  q->base.ops = &sq_ops;
  q->path = xstrdup(path);
  snprintf(q->base.desc, sizeof(q->base.desc), "sqlite %s", path);
  pthread_mutex_init(&q->wmu, NULL);
  pthread_mutex_init(&q->rmu, NULL);
  pthread_cond_init(&q->rcond, NULL);
  pthread_mutex_init(&q->smu, NULL);
  q->wal_fd = -1;
  int rc = sq_conn_open(&q->writer, path, SQ_ROLE_WRITER);
  if (rc == 0) {
    int v;
    rc = sq_migrate(&q->base, &v);
  }
  if (rc == 0) { /* the index is off when an earlier process turned it off */
    bool fts = false;
    rc = sq_fts_exists(&q->writer, &fts);
    q->base.keyword_off = !fts;
  }
  if (rc == 0) /* after the migrations: its statements need the tables */
    rc = sq_conn_open(&q->bwriter, path, SQ_ROLE_BATCH);
  if (rc != 0) {
    sq_close(&q->base);
    return rc;
  }
  *out = &q->base;
  return 0;
}

static void sq_pool_stats(struct store *s, struct store_pool_stats *out) {
  struct sq_store *q = SQ(s);
  out->size = SQ_READERS;
  out->open = atomic_load_explicit(&q->n_ropen, memory_order_relaxed);
  out->in_use = atomic_load_explicit(&q->n_rbusy, memory_order_relaxed);
  out->waiters = atomic_load_explicit(&q->n_rwait, memory_order_relaxed);
  out->writer_size = 1;
  out->writer_in_use = atomic_load_explicit(&q->w_busy, memory_order_relaxed);
  out->writer_waiters = atomic_load_explicit(&q->n_wwait, memory_order_relaxed);
}

static int sq_ping(struct store *s) {
  struct sq_conn *c = sq_reader(s);
  if (!c)
    return EG_EDB;
  int rc = sq_exec_st(c, SQ_PING);
  sq_reader_put(s, c);
  return rc;
}

/* ---- generic helpers ----------------------------------------------------------------- */

/* Runs a one-statement write on the writer connection; *changes gets the row count. */
static int sq_write1(struct store *s, sqlite3_stmt *(*bind)(struct sq_conn *, const void *),
                     const void *arg, int *changes) {
  struct sq_conn *c = sq_writer(s);
  int rc = EG_EDB;
  sqlite3_stmt *st = bind(c, arg);
  if (st) {
    int r = sqlite3_step(st);
    rc = r == SQLITE_DONE ? 0 : sq_err(c->db, r, sqlite3_sql(st));
    if (changes)
      *changes = sqlite3_changes(c->db);
    sq_done(st);
  }
  sq_writer_put(s);
  return rc;
}

/* ---- users --------------------------------------------------------------------------- */

static sqlite3_stmt *bind_user_insert(struct sq_conn *c, const void *arg) {
  const struct store_user_new *u = arg;
  sqlite3_stmt *st = sq_prep(c, SQ_USER_INSERT);
  if (!st)
    return NULL;
  bind_text(st, 1, u->id);
  bind_text(st, 2, u->email);
  bind_text(st, 3, u->password_hash);
  bind_text(st, 4, u->first_name ? u->first_name : "");
  bind_text(st, 5, u->last_name ? u->last_name : "");
  sqlite3_bind_int64(st, 6, u->created_at);
  return st;
}

static int sq_user_create(struct store *s, struct store_user_new *u) {
  return sq_write1(s, bind_user_insert, u, NULL);
}

static int sq_user_get(struct store *s, const char *id, const char *email,
                       struct store_user *out) {
  struct sq_conn *c = sq_reader(s);
  if (!c)
    return EG_EDB;
  int rc = EG_EDB;
  sqlite3_stmt *st = sq_prep(c, id ? SQ_USER_BY_ID : SQ_USER_BY_EMAIL);
  if (st) {
    bind_text(st, 1, id ? id : email);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
      row_user(st, out);
      rc = 0;
    } else {
      rc = r == SQLITE_DONE ? EG_ENOTFOUND : sq_err(c->db, r, "user get");
    }
    sq_done(st);
  }
  sq_reader_put(s, c);
  return rc;
}

struct id2 {
  const char *a, *b, *c;
};

static sqlite3_stmt *bind_user_delete(struct sq_conn *c, const void *arg) {
  const struct id2 *p = arg;
  sqlite3_stmt *st = sq_prep(c, SQ_USER_DELETE);
  if (st)
    bind_text(st, 1, p->a);
  return st;
}

static int sq_user_delete(struct store *s, const char *id) {
  int changes = 0;
  struct id2 p = {id, NULL, NULL};
  int rc = sq_write1(s, bind_user_delete, &p, &changes);
  return rc == 0 && changes == 0 ? EG_ENOTFOUND : rc;
}

static int sq_user_list(struct store *s, const char *after_id, size_t limit,
                        struct store_users *out) {
  struct sq_conn *c = sq_reader(s);
  if (!c)
    return EG_EDB;
  int rc = EG_EDB;
  size_t cap = 0;
  sqlite3_stmt *st = sq_prep(c, SQ_USER_LIST);
  if (st) {
    bind_text(st, 1, after_id ? after_id : "");
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
      out->v = store__grow(out->v, out->n, &cap, sizeof(*out->v));
      row_user(st, &out->v[out->n++]);
    }
    rc = r == SQLITE_DONE ? 0 : sq_err(c->db, r, "user list");
    sq_done(st);
  }
  sq_reader_put(s, c);
  if (rc != 0)
    store_users_free(out);
  return rc;
}

/* ---- chats --------------------------------------------------------------------------- */

static sqlite3_stmt *bind_chat_insert(struct sq_conn *c, const void *arg) {
  const struct store_chat *ch = arg;
  sqlite3_stmt *st = sq_prep(c, SQ_CHAT_INSERT);
  if (!st)
    return NULL;
  bind_text(st, 1, ch->id);
  bind_text(st, 2, ch->user_id);
  bind_text(st, 3, ch->title);
  sqlite3_bind_int64(st, 4, ch->last_activity);
  sqlite3_bind_int64(st, 5, ch->created_at);
  return st;
}

static int sq_chat_create(struct store *s, struct store_chat *ch) {
  return sq_write1(s, bind_chat_insert, ch, NULL);
}

static int sq_chat_get_on(struct sq_conn *c, const char *user_id, const char *chat_id,
                          struct store_chat *out) {
  sqlite3_stmt *st = sq_prep(c, SQ_CHAT_GET);
  if (!st)
    return EG_EDB;
  bind_text(st, 1, chat_id);
  bind_text(st, 2, user_id);
  int r = sqlite3_step(st);
  int rc;
  if (r == SQLITE_ROW) {
    if (out)
      row_chat(st, out);
    rc = 0;
  } else {
    rc = r == SQLITE_DONE ? EG_ENOTFOUND : sq_err(c->db, r, "chat get");
  }
  sq_done(st);
  return rc;
}

static int sq_chat_get(struct store *s, const char *user_id, const char *chat_id,
                       struct store_chat *out) {
  struct sq_conn *c = sq_reader(s);
  if (!c)
    return EG_EDB;
  int rc = sq_chat_get_on(c, user_id, chat_id, out);
  sq_reader_put(s, c);
  return rc;
}

static int sq_chat_list(struct store *s, const char *user_id, const char *before_id,
                        size_t limit, struct store_chats *out) {
  struct sq_conn *c = sq_reader(s);
  if (!c)
    return EG_EDB;
  int rc = 0;
  size_t cap = 0;
  int64_t cur_t = INT64_MAX;
  const char *cur_id = "";
  struct store_chat cur = {0};
  if (before_id) {
    rc = sq_chat_get_on(c, user_id, before_id, &cur);
    if (rc != 0)
      goto out;
    cur_t = cur.last_activity;
    cur_id = cur.id;
  }
  sqlite3_stmt *st = sq_prep(c, SQ_CHAT_LIST);
  if (!st) {
    rc = EG_EDB;
    goto out;
  }
  bind_text(st, 1, user_id);
  sqlite3_bind_int64(st, 2, cur_t);
  bind_text(st, 3, cur_id);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)limit);
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    out->v = store__grow(out->v, out->n, &cap, sizeof(*out->v));
    row_chat(st, &out->v[out->n++]);
  }
  rc = r == SQLITE_DONE ? 0 : sq_err(c->db, r, "chat list");
  sq_done(st);
out:
  store_chat_clear(&cur);
  sq_reader_put(s, c);
  if (rc != 0)
    store_chats_free(out);
  return rc;
}

static sqlite3_stmt *bind_chat_rename(struct sq_conn *c, const void *arg) {
  const struct id2 *p = arg;
  sqlite3_stmt *st = sq_prep(c, SQ_CHAT_RENAME);
  if (!st)
    return NULL;
  bind_text(st, 1, p->a);
  bind_text(st, 2, p->b);
  bind_text(st, 3, p->c);
  return st;
}

static int sq_chat_rename(struct store *s, const char *user_id, const char *chat_id,
                          const char *title) {
  int changes = 0;
  struct id2 p = {chat_id, user_id, title};
  int rc = sq_write1(s, bind_chat_rename, &p, &changes);
  return rc == 0 && changes == 0 ? EG_ENOTFOUND : rc;
}

static sqlite3_stmt *bind_chat_delete(struct sq_conn *c, const void *arg) {
  const struct id2 *p = arg;
  sqlite3_stmt *st = sq_prep(c, SQ_CHAT_DELETE);
  if (!st)
    return NULL;
  bind_text(st, 1, p->a);
  bind_text(st, 2, p->b);
  return st;
}

static int sq_chat_delete(struct store *s, const char *user_id, const char *chat_id) {
  int changes = 0;
  struct id2 p = {chat_id, user_id, NULL};
  int rc = sq_write1(s, bind_chat_delete, &p, &changes);
  return rc == 0 && changes == 0 ? EG_ENOTFOUND : rc;
}

/* ---- messages ------------------------------------------------------------------------ */

/* Inserts one message (and its memory) inside the open transaction. Each statement is
   atomic, so a failing row leaves nothing behind: a failed message insert wrote nothing,
   and a failed memory insert is undone by deleting the message again (no savepoints:
   they cost a sub-journal per row). Returns the message's status, or EG_EDB for a failure
   that compromises the transaction. The chat's last_activity is moved by the caller. */
static int sq_msg_insert_one(struct sq_conn *c, struct store_message_new *m, bool memory) {
  const char *client = m->client_id && *m->client_id ? m->client_id : NULL;
  int rc;
  sqlite3_stmt *st;
  m->existed = false;
  if (client) {
    st = sq_prep(c, SQ_MSG_BY_CLIENT);
    if (!st)
      return EG_EDB;
    bind_text(st, 1, m->chat_id);
    bind_text(st, 2, client);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
      col_copy(st, 0, m->id, sizeof(m->id));
      m->created_at = sqlite3_column_int64(st, 1);
      m->existed = true;
    }
    rc = r == SQLITE_ROW || r == SQLITE_DONE ? 0 : sq_err(c->db, r, "message by client id");
    sq_done(st);
    if (rc != 0 || m->existed)
      return rc;
  }
  st = sq_prep(c, SQ_MSG_INSERT);
  if (!st)
    return EG_EDB;
  bind_text(st, 1, m->id);
  bind_text(st, 2, m->chat_id);
  bind_text(st, 3, m->user_id);
  bind_text(st, 4, m->role);
  bind_text(st, 5, m->content);
  bind_text(st, 6, client);
  sqlite3_bind_int64(st, 7, m->created_at);
  sqlite3_bind_int(st, 8, m->cancelled ? 1 : 0);
  int r = sqlite3_step(st);
  rc = r == SQLITE_DONE ? 0 : sq_err(c->db, r, "message insert");
  if (rc == 0 && sqlite3_changes(c->db) == 0)
    rc = EG_ENOTFOUND; /* no such chat of this user */
  sq_done(st);
  if (rc != 0 || !memory || !m->content[0])
    return rc;
  st = sq_prep(c, SQ_MEM_INSERT);
  if (!st)
    return EG_EDB;
  bind_text(st, 1, m->id);
  bind_text(st, 2, m->user_id);
  bind_text(st, 3, m->chat_id);
  bind_text(st, 4, m->role);
  bind_text(st, 5, m->content);
  sqlite3_bind_int64(st, 6, m->created_at);
  if (m->vec && m->dims && m->embed_model) {
    bind_text(st, 7, m->embed_model);
    if (!m->vec_derived)
      sqlite3_bind_blob(st, 8, m->vec, (int)(m->dims * sizeof(float)), SQLITE_STATIC);
    sqlite3_bind_int(st, 9, (int)m->dims);
  }
  r = sqlite3_step(st);
  rc = r == SQLITE_DONE ? 0 : sq_err(c->db, r, "memory insert");
  sq_done(st);
  if (rc == 0 || rc == EG_EDB)
    return rc;
  /* The memory id is taken (by a note with this id): take the message back out. */
  st = sq_prep(c, SQ_MSG_DELETE);
  if (!st)
    return EG_EDB;
  bind_text(st, 1, m->id);
  r = sqlite3_step(st);
  sq_done(st);
  return r == SQLITE_DONE ? rc : EG_EDB;
}

/* Moves last_activity of every chat that got messages, once per chat: the inserted rows
   are sorted by chat, and each chat gets the newest created_at among them. */
static int cmp_by_chat(const void *a, const void *b) {
  const struct store_message_new *x = *(const struct store_message_new *const *)a;
  const struct store_message_new *y = *(const struct store_message_new *const *)b;
  return strcmp(x->chat_id, y->chat_id);
}

static int sq_touch_chats(struct sq_conn *c, struct store_message_new *m, size_t n,
                          const int *status) {
  const struct store_message_new **v = xmalloc(n * sizeof(*v));
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (status[i] == 0 && !m[i].existed)
      v[k++] = &m[i];
  qsort(v, k, sizeof(*v), cmp_by_chat);
  int rc = 0;
  for (size_t i = 0; i < k && rc == 0;) {
    int64_t t = v[i]->created_at;
    size_t j = i + 1;
    for (; j < k && strcmp(v[j]->chat_id, v[i]->chat_id) == 0; j++)
      if (v[j]->created_at > t)
        t = v[j]->created_at;
    sqlite3_stmt *st = sq_prep(c, SQ_CHAT_TOUCH);
    if (!st) {
      rc = EG_EDB;
      break;
    }
    bind_text(st, 1, v[i]->chat_id);
    sqlite3_bind_int64(st, 2, t);
    int r = sqlite3_step(st);
    rc = r == SQLITE_DONE ? 0 : sq_err(c->db, r, "chat touch");
    sq_done(st);
    i = j;
  }
  free(v);
  return rc;
}

/* One transaction for the batch. The fast path inserts the messages one by one, then all
   their memories with ONE statement (the messages added since the largest rowid seen at
   BEGIN, with the vectors staged in temp.batch_vec): FTS5 flushes its pending terms into a
   new segment at every statement savepoint, so a statement per memory would write a
   segment per row and keep merging them. If that statement fails on a taken memory id (a
   note with the same id), the transaction is rolled back and replayed on the slow path,
   memory by memory. */
static int sq_stage_vec(struct sq_conn *c, const struct store_message_new *m) {
  sqlite3_stmt *st = sq_prep(c, SQ_VEC_STAGE);
  if (!st)
    return EG_EDB;
  bind_text(st, 1, m->id);
  bind_text(st, 2, m->embed_model);
  if (!m->vec_derived)
    sqlite3_bind_blob(st, 3, m->vec, (int)(m->dims * sizeof(float)), SQLITE_STATIC);
  sqlite3_bind_int(st, 4, (int)m->dims);
  int r = sqlite3_step(st);
  sq_done(st);
  return r == SQLITE_DONE ? 0 : sq_err(c->db, r, "vector staging");
}

static int sq_msg_batch_try(struct sq_conn *c, struct store_message_new *m, size_t n,
                            int *status, bool slow) {
  int rc = sq_exec_st(c, SQ_BEGIN);
  if (rc != 0)
    return rc;
  sqlite3_int64 max_rowid = 0;
  if (!slow) {
    sqlite3_stmt *st = sq_prep(c, SQ_MSG_MAX_ROWID);
    if (!st) {
      rc = EG_EDB;
    } else {
      int r = sqlite3_step(st);
      if (r == SQLITE_ROW)
        max_rowid = sqlite3_column_int64(st, 0);
      else
        rc = sq_err(c->db, r, "max rowid");
      sq_done(st);
    }
  }
  bool staged = false;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (status[i] != 0)
      continue;
    status[i] = sq_msg_insert_one(c, &m[i], slow);
    if (status[i] == EG_EDB)
      rc = EG_EDB;
    else if (!slow && status[i] == 0 && !m[i].existed && m[i].content[0] && m[i].vec &&
             m[i].dims && m[i].embed_model) {
      rc = sq_stage_vec(c, &m[i]);
      staged = true;
    }
  }
  if (rc == 0 && !slow) {
    sqlite3_stmt *st = sq_prep(c, SQ_MEM_FROM_MSGS);
    if (!st) {
      rc = EG_EDB;
    } else {
      sqlite3_bind_int64(st, 1, max_rowid);
      int r = sqlite3_step(st);
      rc = r == SQLITE_DONE ? 0 : sq_err(c->db, r, "memories of the batch");
      sq_done(st);
    }
  }
  if (rc == 0 && staged)
    rc = sq_exec_st(c, SQ_VEC_CLEAR);
  if (rc == 0)
    rc = sq_touch_chats(c, m, n, status);
  if (rc == 0)
    rc = sq_exec_st(c, SQ_COMMIT);
  if (rc != 0 && !sqlite3_get_autocommit(c->db))
    (void)sq_exec_st(c, SQ_ROLLBACK);
  return rc;
}

/* nosync: the batch goes through the batch writer, whose commits do not fsync (sq_sync
   does that afterwards); the writer lock serialises both connections. */
static int sq_msg_insert_batch(struct store *s, struct store_message_new *m, size_t n,
                               int *status, bool nosync) {
  int *orig = xmalloc(n * sizeof(*orig));
  memcpy(orig, status, n * sizeof(*orig));
  struct sq_conn *c = sq_writer(s);
  if (nosync)
    c = &SQ(s)->bwriter;
  int rc = sq_msg_batch_try(c, m, n, status, false);
  if (rc == EG_EEXISTS) {
    memcpy(status, orig, n * sizeof(*orig));
    rc = sq_msg_batch_try(c, m, n, status, true);
  }
  sq_writer_put(s);
  free(orig);
  return rc;
}

/* fdatasync of the WAL: every commit that returned before is then on disk (the WAL holds
   it, or a checkpoint copied it into the database and synced that first: with
   synchronous=NORMAL, SQLite syncs the WAL before and the database after a checkpoint, and
   only restarts the WAL once it is wholly checkpointed). The -wal file exists once the
   database is in WAL mode and a connection is open; it is never unlinked while ours are. */
static int sq_sync(struct store *s) {
  struct sq_store *q = SQ(s);
  pthread_mutex_lock(&q->smu);
  if (q->wal_fd < 0) {
    size_t n = strlen(q->path) + 5;
    char *wal = xmalloc(n);
    snprintf(wal, n, "%s-wal", q->path);
    q->wal_fd = open(wal, O_RDONLY | O_CLOEXEC);
    if (q->wal_fd < 0)
      log_error("store: cannot open %s to sync it: %s", wal, strerror(errno));
    free(wal);
  }
  int fd = q->wal_fd;
  pthread_mutex_unlock(&q->smu);
  if (fd < 0)
    return EG_EIO;
  if (fdatasync(fd) != 0) {
    log_error("store: fdatasync of the sqlite WAL: %s", strerror(errno));
    return EG_EIO;
  }
  return 0;
}

static int sq_msg_get(struct store *s, const char *user_id, const char *id,
                      struct store_message *out) {
  struct sq_conn *c = sq_reader(s);
  if (!c)
    return EG_EDB;
  int rc = EG_EDB;
  sqlite3_stmt *st = sq_prep(c, SQ_MSG_GET);
  if (st) {
    bind_text(st, 1, id);
    bind_text(st, 2, user_id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
      row_msg(st, out);
      rc = 0;
    } else {
      rc = r == SQLITE_DONE ? EG_ENOTFOUND : sq_err(c->db, r, "message get");
    }
    sq_done(st);
  }
  sq_reader_put(s, c);
  return rc;
}

/* Appends up to limit messages of chat_id before (desc=true) or after the cursor
   (t, id) to out, in the statement's order. */
static int sq_msg_range(struct sq_conn *c, const char *chat_id, bool before, int64_t t,
                        const char *id, size_t limit, struct store_messages *out, size_t *cap) {
  sqlite3_stmt *st = sq_prep(c, before ? SQ_MSG_BEFORE : SQ_MSG_AFTER);
  if (!st)
    return EG_EDB;
  bind_text(st, 1, chat_id);
  sqlite3_bind_int64(st, 2, t);
  bind_text(st, 3, id);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)limit);
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    out->v = store__grow(out->v, out->n, cap, sizeof(*out->v));
    row_msg(st, &out->v[out->n++]);
  }
  int rc = r == SQLITE_DONE ? 0 : sq_err(c->db, r, "message range");
  sq_done(st);
  return rc;
}

static void msgs_reverse(struct store_messages *l, size_t from) {
  for (size_t i = from, j = l->n; i + 1 < j; i++, j--) {
    struct store_message t = l->v[i];
    l->v[i] = l->v[j - 1];
    l->v[j - 1] = t;
  }
}

static int sq_msg_list(struct store *s, const char *user_id, const char *chat_id,
                       const struct store_page *pg, struct store_messages *out) {
  struct sq_conn *c = sq_reader(s);
  if (!c)
    return EG_EDB;
  size_t cap = 0;
  int64_t t = INT64_MAX;
  const char *cur = "";
  int rc = sq_chat_get_on(c, user_id, chat_id, NULL);
  if (rc != 0)
    goto out;
  if (pg->before_id) {
    sqlite3_stmt *st = sq_prep(c, SQ_MSG_IN_CHAT);
    if (!st) {
      rc = EG_EDB;
      goto out;
    }
    bind_text(st, 1, pg->before_id);
    bind_text(st, 2, chat_id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
      t = sqlite3_column_int64(st, 0);
    rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? EG_ENOTFOUND : sq_err(c->db, r, "cursor");
    sq_done(st);
    if (rc != 0)
      goto out;
    cur = pg->before_id;
  } else if (pg->before_ms > 0) {
    t = pg->before_ms;
  }
  rc = sq_msg_range(c, chat_id, true, t, cur, pg->limit, out, &cap);
  if (rc == 0)
    msgs_reverse(out, 0);
out:
  sq_reader_put(s, c);
  if (rc != 0)
    store_messages_free(out);
  return rc;
}

static int sq_msg_last(struct store *s, const char *chat_id, size_t n,
                       struct store_messages *out) {
  struct sq_conn *c = sq_reader(s);
  if (!c)
    return EG_EDB;
  size_t cap = 0;
  int rc = sq_msg_range(c, chat_id, true, INT64_MAX, "", n, out, &cap);
  if (rc == 0)
    msgs_reverse(out, 0);
  sq_reader_put(s, c);
  if (rc != 0)
    store_messages_free(out);
  return rc;
}

static int sq_msg_neighbours(struct store *s, const char *user_id, const char *id,
                             size_t n_before, size_t n_after, struct store_messages *out) {
  struct sq_conn *c = sq_reader(s);
  if (!c)
    return EG_EDB;
  size_t cap = 0;
  struct store_message mid = {0};
  sqlite3_stmt *st = sq_prep(c, SQ_MSG_GET);
  int rc = EG_EDB;
  if (!st)
    goto out;
  bind_text(st, 1, id);
  bind_text(st, 2, user_id);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW)
    row_msg(st, &mid);
  rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? EG_ENOTFOUND : sq_err(c->db, r, "message");
  sq_done(st);
  if (rc != 0)
    goto out;
  if (n_before)
    rc = sq_msg_range(c, mid.chat_id, true, mid.created_at, mid.id, n_before, out, &cap);
  if (rc != 0)
    goto out;
  msgs_reverse(out, 0);
  out->v = store__grow(out->v, out->n, &cap, sizeof(*out->v));
  out->v[out->n++] = mid;
  memset(&mid, 0, sizeof(mid));
  struct store_message *self = &out->v[out->n - 1];
  char self_id[ID_LEN + 1], self_chat[ID_LEN + 1];
  int64_t self_t = self->created_at;
  memcpy(self_id, self->id, sizeof(self_id));
  memcpy(self_chat, self->chat_id, sizeof(self_chat));
  if (n_after)
    rc = sq_msg_range(c, self_chat, false, self_t, self_id, n_after, out, &cap);
out:
  store_message_clear(&mid);
  sq_reader_put(s, c);
  if (rc != 0)
    store_messages_free(out);
  return rc;
}

/* ---- memories ------------------------------------------------------------------------ */

static sqlite3_stmt *bind_mem_add(struct sq_conn *c, const void *arg) {
  const struct store_memory *m = arg;
  sqlite3_stmt *st = sq_prep(c, SQ_MEM_INSERT);
  if (!st)
    return NULL;
  bind_text(st, 1, m->id);
  bind_text(st, 2, m->user_id);
  sqlite3_bind_null(st, 3);
  bind_text(st, 4, m->role);
  bind_text(st, 5, m->text);
  sqlite3_bind_int64(st, 6, m->created_at);
  return st;
}

static int sq_mem_add(struct store *s, struct store_memory *m) {
  return sq_write1(s, bind_mem_add, m, NULL);
}

static int sq_mem_rows(struct store *s, enum sq_stmt id, const struct id2 *p, int64_t t,
                       size_t limit, struct store_memories *out) {
  struct sq_conn *c = sq_reader(s);
  if (!c)
    return EG_EDB;
  size_t cap = 0;
  int rc = EG_EDB;
  sqlite3_stmt *st = sq_prep(c, id);
  if (!st)
    goto out;
  if (id == SQ_MEM_PENDING) {
    bind_text(st, 1, p->a);
    bind_text(st, 2, p->b);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
  } else { /* SQ_MEM_LIST */
    bind_text(st, 1, p->a);
    sqlite3_bind_int64(st, 2, t);
    bind_text(st, 3, p->b);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)limit);
  }
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    out->v = store__grow(out->v, out->n, &cap, sizeof(*out->v));
    row_mem(st, &out->v[out->n++]);
  }
  rc = r == SQLITE_DONE ? 0 : sq_err(c->db, r, "memory rows");
  sq_done(st);
out:
  sq_reader_put(s, c);
  if (rc != 0)
    store_memories_free(out);
  return rc;
}

static int sq_mem_pending(struct store *s, const char *model, const char *after_id,
                          size_t limit, struct store_memories *out) {
  struct id2 p = {model, after_id ? after_id : "", NULL};
  return sq_mem_rows(s, SQ_MEM_PENDING, &p, 0, limit, out);
}

struct vec_arg {
  const char *id, *model;
  const float *vec;
  uint32_t dims;
};

static sqlite3_stmt *bind_set_vec(struct sq_conn *c, const void *arg) {
  const struct vec_arg *v = arg;
  sqlite3_stmt *st = sq_prep(c, SQ_MEM_SET_VEC);
  if (!st)
    return NULL;
  bind_text(st, 1, v->id);
  bind_text(st, 2, v->model);
  sqlite3_bind_blob(st, 3, v->vec, (int)(v->dims * sizeof(float)), SQLITE_STATIC);
  sqlite3_bind_int(st, 4, (int)v->dims);
  return st;
}

static int sq_mem_set_vector(struct store *s, const char *id, const char *model,
                             const float *vec, uint32_t dims) {
  int changes = 0;
  struct vec_arg v = {id, model, vec, dims};
  int rc = sq_write1(s, bind_set_vec, &v, &changes);
  return rc == 0 && changes == 0 ? EG_ENOTFOUND : rc;
}

static int sq_mem_load_all(struct store *s, const char *user_id, const char *model,
                           struct store_vectors *out) {
  struct sq_conn *c = sq_reader(s);
  if (!c)
    return EG_EDB;
  size_t cap = 0;
  int rc = EG_EDB;
  sqlite3_stmt *st = sq_prep(c, SQ_MEM_ALL);
  if (!st)
    goto out;
  bind_text(st, 1, user_id);
  bind_text(st, 2, model);
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    uint32_t dims = (uint32_t)sqlite3_column_int(st, 3);
    const void *blob = sqlite3_column_blob(st, 2);
    size_t bytes = (size_t)sqlite3_column_bytes(st, 2);
    if (dims == 0 || !blob || bytes != dims * sizeof(float))
      blob = NULL;
    store__vectors_push(
        out, &cap, (const char *)sqlite3_column_text(st, 0),
        (const char *)sqlite3_column_text(st, 4), (const char *)sqlite3_column_text(st, 5),
        (const char *)sqlite3_column_text(st, 6), sqlite3_column_int64(st, 1), blob, dims);
  }
  rc = r == SQLITE_DONE ? 0 : sq_err(c->db, r, "load memories");
  sq_done(st);
out:
  sq_reader_put(s, c);
  if (rc != 0)
    store_vectors_free(out);
  return rc;
}

static sqlite3_stmt *bind_mem_delete(struct sq_conn *c, const void *arg) {
  const struct id2 *p = arg;
  sqlite3_stmt *st = sq_prep(c, p->b ? SQ_MEM_DELETE : SQ_MEM_DELETE_ALL);
  if (!st)
    return NULL;
  if (p->b) {
    bind_text(st, 1, p->b);
    bind_text(st, 2, p->a);
  } else {
    bind_text(st, 1, p->a);
  }
  return st;
}

static int sq_mem_delete(struct store *s, const char *user_id, const char *id) {
  int changes = 0;
  struct id2 p = {user_id, id, NULL};
  int rc = sq_write1(s, bind_mem_delete, &p, &changes);
  return rc == 0 && changes == 0 ? EG_ENOTFOUND : rc;
}

static int sq_mem_delete_all(struct store *s, const char *user_id, size_t *deleted) {
  int changes = 0;
  struct id2 p = {user_id, NULL, NULL};
  int rc = sq_write1(s, bind_mem_delete, &p, &changes);
  *deleted = rc == 0 ? (size_t)changes : 0;
  return rc;
}

static int sq_mem_list(struct store *s, const char *user_id, const char *before_id,
                       size_t limit, struct store_memories *out) {
  int64_t t = INT64_MAX;
  if (before_id) {
    struct sq_conn *c = sq_reader(s);
    if (!c)
      return EG_EDB;
    int rc = EG_EDB;
    sqlite3_stmt *st = sq_prep(c, SQ_MEM_CURSOR);
    if (st) {
      bind_text(st, 1, before_id);
      bind_text(st, 2, user_id);
      int r = sqlite3_step(st);
      if (r == SQLITE_ROW)
        t = sqlite3_column_int64(st, 0);
      rc = r == SQLITE_ROW ? 0 : r == SQLITE_DONE ? EG_ENOTFOUND : sq_err(c->db, r, "cursor");
      sq_done(st);
    }
    sq_reader_put(s, c);
    if (rc != 0)
      return rc;
  }
  struct id2 p = {user_id, before_id ? before_id : "", NULL};
  return sq_mem_rows(s, SQ_MEM_LIST, &p, t, limit, out);
}

static int sq_mem_get_many(struct store *s, const char *user_id, const char *const *ids,
                           size_t n, struct store_memories *out) {
  struct sq_conn *c = sq_reader(s);
  if (!c)
    return EG_EDB;
  size_t cap = 0;
  int rc = 0;
  sqlite3_stmt *st = sq_prep(c, SQ_MEM_GET);
  if (!st) {
    rc = EG_EDB;
    goto out;
  }
  for (size_t i = 0; i < n && rc == 0; i++) {
    bind_text(st, 1, ids[i]);
    bind_text(st, 2, user_id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
      out->v = store__grow(out->v, out->n, &cap, sizeof(*out->v));
      row_mem(st, &out->v[out->n++]);
    } else if (r != SQLITE_DONE) {
      rc = sq_err(c->db, r, "memory get");
    }
    sq_done(st);
  }
out:
  sq_reader_put(s, c);
  if (rc != 0)
    store_memories_free(out);
  return rc;
}

static int sq_mem_search(struct store *s, const char *user_id, const char *const *terms,
                         size_t n_terms, size_t k, struct store_hits *out) {
  /* Every term is a double-quoted FTS5 string; terms hold no '"' (store__fts_terms), so
     nothing the user typed can become FTS5 syntax (column filters, NEAR, *, ^, AND/NOT). */
  struct buf q;
  buf_init(&q, 1 << 16);
  int rc = 0;
  /* The owner first: FTS5 intersects the user's posting list with the terms', so only
     this user's memories are ranked (the outer query checks user_id again). */
  rc = buf_printf(&q, "user_id : \"%s\" AND text : (", user_id);
  for (size_t i = 0; i < n_terms && rc == 0; i++)
    rc = buf_printf(&q, "%s\"%s\"", i ? " OR " : "", terms[i]);
  if (rc == 0)
    rc = buf_append_byte(&q, ')');
  if (rc != 0) {
    buf_free(&q);
    return EG_EINVAL;
  }
  struct sq_conn *c = sq_reader(s);
  if (!c) {
    buf_free(&q);
    return EG_EDB;
  }
  size_t cap = 0;
  sqlite3_stmt *st = sq_prep(c, SQ_MEM_SEARCH);
  if (!st) {
    rc = EG_EDB;
    goto out;
  }
  sqlite3_bind_text(st, 1, (const char *)q.data, (int)q.len, SQLITE_STATIC);
  bind_text(st, 2, user_id);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)k);
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    out->v = store__grow(out->v, out->n, &cap, sizeof(*out->v));
    struct store_hit *h = &out->v[out->n++];
    col_copy(st, 0, h->id, sizeof(h->id));
    h->score = -sqlite3_column_double(st, 1);
  }
  rc = r == SQLITE_DONE ? 0 : sq_err(c->db, r, "memory search");
  sq_done(st);
out:
  sq_reader_put(s, c);
  buf_free(&q);
  if (rc != 0)
    store_hits_free(out);
  return rc;
}

static const struct store_ops sq_ops = {
    .name = "sqlite",
    .close = sq_close,
    .migrate = sq_migrate,
    .ping = sq_ping,
    .pool_stats = sq_pool_stats,
    .user_create = sq_user_create,
    .user_get = sq_user_get,
    .user_delete = sq_user_delete,
    .user_list = sq_user_list,
    .chat_create = sq_chat_create,
    .chat_get = sq_chat_get,
    .chat_list = sq_chat_list,
    .chat_rename = sq_chat_rename,
    .chat_delete = sq_chat_delete,
    .message_insert_batch = sq_msg_insert_batch,
    .sync = sq_sync,
    .message_get = sq_msg_get,
    .message_list = sq_msg_list,
    .message_last = sq_msg_last,
    .message_neighbours = sq_msg_neighbours,
    .memory_add = sq_mem_add,
    .memory_pending = sq_mem_pending,
    .memory_set_vector = sq_mem_set_vector,
    .memory_load_all = sq_mem_load_all,
    .memory_delete = sq_mem_delete,
    .memory_delete_all = sq_mem_delete_all,
    .memory_list = sq_mem_list,
    .memory_get_many = sq_mem_get_many,
    .memory_search = sq_mem_search,
    .keyword_index = sq_keyword_index,
};
