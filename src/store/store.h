/*
 * store: durable storage of users, chats, messages and memories, behind one interface with
 * two back ends: SQLite (the default, one file in the data folder) and PostgreSQL (libpq,
 * for several engram processes). The same test suite runs against both.
 *
 * Threads. Every function here is synchronous, blocking and thread-safe: call it from
 * worker threads (uv_queue_work, or the helpers of store_async.h), NEVER on the libuv loop
 * thread. SQLite: one writer connection (writes are serialised by a mutex) plus a small pool
 * of reader connections (WAL lets readers run beside the writer). PostgreSQL: a pool of
 * connections; a call that fails because its connection broke (server restart) resets
 * that connection and retries once when that is safe (every read; writes that failed
 * before COMMIT was sent; idempotent writes).
 *
 * Durability. A write that returned 0 is on disk and survives kill -9 of the process and,
 * with honest disks, power loss:
 *   - SQLite runs in WAL mode with synchronous=FULL: every COMMIT fsyncs the WAL. (WAL with
 *     synchronous=NORMAL would survive kill -9 too, because the WAL lives in the OS page
 *     cache, but a power loss could drop the last commits: acked messages would vanish.)
 *     The cost of one fsync per commit is paid back by group commit (store_async.h): one
 *     transaction, hence one fsync, for every message queued while the previous commit ran.
 *     The group-commit writer goes one step further: store_message_insert_batch_nosync()
 *     commits without waiting for the disk and store_sync() (on another thread, while the
 *     next batch is being written) fsyncs the WAL; only then are the batch's messages
 *     reported stored. Figures: bench/README.md "Store" (bench/store.sh).
 *   - PostgreSQL: synchronous_commit as the server has it (on by default).
 *
 * Data model. Ids are 24 lowercase hex chars from id_new() (base.h); times are wall-clock
 * milliseconds (clock_wall_ms()). Texts are UTF-8, NUL-terminated, with no NUL inside.
 *   users     id, email (normalised by the caller, unique), password_hash, first/last name,
 *             created_at.
 *   chats     id, user_id, title, last_activity, created_at. Inserting a message moves
 *             last_activity of its chat forward to the message's created_at.
 *   messages  id, chat_id, user_id, role ("user" | "model"), content, created_at,
 *             client_id (optional; UNIQUE(chat_id, client_id) makes retries idempotent),
 *             cancelled (a model message stopped by the user).
 *   memories  one per message (memory id = message id, created in the same transaction as
 *             the message when its content is not empty) plus user notes (role "note", no
 *             chat). Each has an embedding model and a float32 vector, both NULL until
 *             embedded (store_memory_set_vector). A full-text index covers the text.
 * Deleting a chat deletes its messages and their memories; deleting a user deletes
 * everything of theirs (messages through their chats: a message's user_id is always its
 * chat's user, which store_message_insert checks). Deleting a memory keeps its message.
 *
 * Keyword search. SQLite: FTS5 with tokenize='porter unicode61', ranked by bm25(), score =
 * -bm25() (higher is better). PostgreSQL: a tsvector column ('english' config) with a GIN
 * index, ranked by ts_rank_cd() (higher is better; scores of the two back ends are not on
 * the same scale). The query is user text, never FTS syntax: it is split into words
 * (runs of ASCII letters/digits and non-ASCII bytes), at most 32, each quoted, OR-ed.
 *
 * Schema. A schema_version table and numbered migrations, the same numbers on both back
 * ends, applied in order, each in its own transaction, by store_open() (and
 * store_migrate(), which is idempotent). PostgreSQL takes an advisory lock while migrating
 * so several processes may start at once.
 *
 * Return codes (all functions returning int): 0, or
 *   EG_EINVAL    bad argument (malformed id, empty required text, unknown role, bad URL),
 *   EG_ENOTFOUND no such row for this user (other users' rows are "not found" too),
 *   EG_EEXISTS   unique violation (email, explicit id taken),
 *   EG_EDB       any other database failure (logged with the back end's message),
 *   EG_ECLOSED   PostgreSQL unreachable (after the retry).
 *
 * Ownership. Inputs stay the caller's. Outputs are written into caller structs; their
 * heap strings and arrays are freed with the *_clear / *_free function next to them (safe
 * on zeroed structs, and the functions zero what they fill before filling it, so an output
 * struct needs no initialisation; it must be cleared after a 0 return only).
 *
 * Changes: additive only; each addition is noted here with its date.
 *   2026-11-25: migration 2 (index for store_memory_pending; no API change).
 *   2026-11-26: store_pool_stats (connection pool gauges for /metrics).
 */
#ifndef ENGRAM_STORE_H
#define ENGRAM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* Largest embedding model id (with NUL), the same as MEM_MODEL_MAX in memory.h. */
#define STORE_MODEL_MAX 64
/* Largest page any list function returns (a larger limit is clamped). */
#define STORE_PAGE_MAX 1000
/* Longest role name with NUL ("user", "model", "note"). */
#define STORE_ROLE_MAX 8

struct store;

/* ---- opening ------------------------------------------------------------------------- */

/* Opens a store and applies the pending migrations.
   url: "postgres://..." or "postgresql://..." -> PostgreSQL (libpq connection URI);
        "sqlite:PATH" or any other non-empty string -> SQLite file PATH;
        NULL or "" -> SQLite file <data_dir>/engram.db (data_dir is created if missing;
        NULL data_dir means ".").
   Returns 0 and *out, or EG_EINVAL, EG_EDB, EG_ECLOSED (PostgreSQL unreachable), EG_EIO. */
EG_WUR int store_open(const char *url, const char *data_dir, struct store **out);
/* Closes every connection and frees. No call may be running. NULL is fine. */
void store_close(struct store *s);

/* "sqlite" or "postgres". */
const char *store_backend(const struct store *s);
/* A printable description for the start-up log line, without password:
   "sqlite /data/engram.db" or "postgres 127.0.0.1:5432/engram". Valid until close. */
const char *store_describe(const struct store *s);

/* Applies the migrations not applied yet (idempotent) and writes the schema version now
   in effect to *version (may be NULL). */
EG_WUR int store_migrate(struct store *s, int *version);
/* The newest migration number this build knows. */
int store_schema_latest(void);
/* Cheap round trip to the database (health checks). */
EG_WUR int store_ping(struct store *s);

/* The connection pool now. Unlike everything else here it never blocks (it reads
   counters, takes no lock): call it from any thread, the loop thread included. The
   figures are read one by one, so under load they may not add up exactly. */
struct store_pool_stats {
  unsigned size;           /* connections the pool may open: SQLite readers, PostgreSQL pool */
  unsigned open;           /* of them open now */
  unsigned in_use;         /* of them handed to a call now */
  unsigned waiters;        /* calls waiting for one of them */
  unsigned writer_size;    /* SQLite: 1 (the writer connection); PostgreSQL: 0 */
  unsigned writer_in_use;  /* SQLite: 1 while a write holds the writer */
  unsigned writer_waiters; /* SQLite: writes waiting for the writer */
  uint64_t reconnects;     /* PostgreSQL: broken connections reset since start; SQLite: 0 */
};
void store_pool_stats(struct store *s, struct store_pool_stats *out);

/* ---- users --------------------------------------------------------------------------- */

struct store_user {
  char id[ID_LEN + 1];
  char *email;
  char *password_hash;
  char *first_name;
  char *last_name;
  int64_t created_at;
};
void store_user_clear(struct store_user *u);

struct store_user_new {
  char id[ID_LEN + 1];       /* in/out: "" -> a new id is written here */
  const char *email;         /* normalised by the caller (auth); required */
  const char *password_hash; /* argon2id string; required */
  const char *first_name;    /* NULL -> "" */
  const char *last_name;     /* NULL -> "" */
  int64_t created_at;        /* in/out: 0 -> now */
};

/* EG_EEXISTS when the email (or the explicit id) is taken. */
EG_WUR int store_user_create(struct store *s, struct store_user_new *u);
EG_WUR int store_user_get(struct store *s, const char *id, struct store_user *out);
EG_WUR int store_user_get_by_email(struct store *s, const char *email, struct store_user *out);
/* Deletes the user and everything of theirs. EG_ENOTFOUND if absent. */
EG_WUR int store_user_delete(struct store *s, const char *id);

struct store_users {
  struct store_user *v;
  size_t n;
};
void store_users_free(struct store_users *l);
/* Users ordered by id (= creation order), those with id > after_id (NULL or "" = from the
   start), at most limit. For operator tools. */
EG_WUR int store_user_list(struct store *s, const char *after_id, size_t limit,
                           struct store_users *out);

/* ---- chats --------------------------------------------------------------------------- */

struct store_chat {
  char id[ID_LEN + 1];
  char user_id[ID_LEN + 1];
  char *title;
  int64_t last_activity;
  int64_t created_at;
};
void store_chat_clear(struct store_chat *c);

struct store_chats {
  struct store_chat *v;
  size_t n;
};
void store_chats_free(struct store_chats *l);

/* Creates a chat. id: "" -> a new id is written into c->id (in/out). created_at: 0 -> now;
   last_activity = created_at. title may be "" (the API decides defaults).
   EG_ENOTFOUND when the user does not exist; EG_EEXISTS when an explicit id is taken. */
EG_WUR int store_chat_create(struct store *s, struct store_chat *c);
/* The chat if it belongs to user_id, else EG_ENOTFOUND. */
EG_WUR int store_chat_get(struct store *s, const char *user_id, const char *chat_id,
                          struct store_chat *out);
/* The user's chats, most recent activity first (ties: larger id first). Paging: pass the
   last chat of the previous page as before_id (NULL or "" = first page); limit 0 means
   STORE_PAGE_MAX. EG_ENOTFOUND when before_id is not a chat of this user. */
EG_WUR int store_chat_list(struct store *s, const char *user_id, const char *before_id,
                           size_t limit, struct store_chats *out);
/* Renames a chat of user_id. EG_ENOTFOUND otherwise. */
EG_WUR int store_chat_rename(struct store *s, const char *user_id, const char *chat_id,
                             const char *title);
/* Deletes a chat of user_id with its messages and their memories. EG_ENOTFOUND otherwise. */
EG_WUR int store_chat_delete(struct store *s, const char *user_id, const char *chat_id);

/* ---- messages ------------------------------------------------------------------------ */

struct store_message {
  char id[ID_LEN + 1];
  char chat_id[ID_LEN + 1];
  char user_id[ID_LEN + 1];
  char role[STORE_ROLE_MAX]; /* "user" | "model" */
  char *content;
  char *client_id; /* NULL when none */
  int64_t created_at;
  bool cancelled;
};
void store_message_clear(struct store_message *m);

struct store_messages {
  struct store_message *v;
  size_t n;
};
void store_messages_free(struct store_messages *l);

/* A message to insert. The strings are the caller's and are only read. */
struct store_message_new {
  char id[ID_LEN + 1];   /* in/out: "" -> new id; on a client_id repeat: the stored id */
  const char *chat_id;   /* required; must be a chat of user_id */
  const char *user_id;   /* required */
  const char *role;      /* "user" | "model" */
  const char *content;   /* required; may be "" (a model message cancelled at once) */
  const char *client_id; /* NULL or "" = none; at most 128 bytes */
  bool cancelled;
  /* Optional: the memory's vector, stored with it (vec[0..dims) float32 of embed_model);
     NULL = not embedded yet (store_memory_set_vector later). */
  const float *vec;
  uint32_t dims;
  const char *embed_model;
  /* With vec: embed_model derives the vector from the text at no real cost (the hash
     embedder), so only embed_model and dims are stored, not the vector: the memory counts
     as embedded by embed_model, and a loader without its vector computes it again. Saves
     dims * 4 bytes per memory (3 KB at 768) in every write, the WAL and the checkpoints. */
  bool vec_derived;
  int64_t created_at; /* in/out: 0 -> now */
  bool existed;       /* out: true when (chat_id, client_id) was stored before; id, and
                         created_at are then the stored message's and nothing was written */
};

/* Inserts one message (its own transaction): the message, its memory (when content is not
   empty) and the chat's last_activity, atomically. Returns 0 (also for a client_id repeat:
   see m->existed), EG_ENOTFOUND (no such chat of this user), EG_EINVAL, EG_EEXISTS
   (explicit id taken by another message). */
EG_WUR int store_message_insert(struct store *s, struct store_message_new *m);
/* Inserts n messages in ONE transaction (group commit). status[i] gets what
   store_message_insert would have returned for m[i]; a row that fails does not fail the
   others. Returns 0 when the transaction committed (look at status[]), or a negative code
   when nothing was written (then every status[i] holds that code too). */
EG_WUR int store_message_insert_batch(struct store *s, struct store_message_new *m, size_t n,
                                      int *status);
/* The same, but the transaction may still be only in the OS page cache when this returns:
   it is durable once a store_sync() that started after this returned has returned 0.
   (SQLite: the commit runs with synchronous=NORMAL, see "Durability"; back ends whose
   commits are durable anyway do what store_message_insert_batch does.) */
EG_WUR int store_message_insert_batch_nosync(struct store *s, struct store_message_new *m,
                                             size_t n, int *status);
/* Makes every commit that returned before this call durable (SQLite: fdatasync of the WAL).
   Thread-safe; may run while another thread writes. 0, or EG_EIO when the disk refused
   (those commits may be lost on a power failure: do not report them stored). */
EG_WUR int store_sync(struct store *s);
/* True when store_message_insert_batch_nosync() defers durability to store_sync(). */
bool store_sync_deferred(const struct store *s);

/* One message of user_id (any of their chats). */
EG_WUR int store_message_get(struct store *s, const char *user_id, const char *message_id,
                             struct store_message *out);

/* Paging of a chat, oldest first. Returns the `limit` messages just before the cursor, in
   chronological order (created_at, then id):
     before_id: a message id of this chat -> messages older than it;
     before_ms: > 0 -> messages with created_at < before_ms (used when before_id is empty);
     neither -> the newest `limit` messages.
   limit 0 means STORE_PAGE_MAX. EG_ENOTFOUND when the chat is not user_id's or before_id
   is not a message of this chat. */
struct store_page {
  const char *before_id;
  int64_t before_ms;
  size_t limit;
};
EG_WUR int store_message_list(struct store *s, const char *user_id, const char *chat_id,
                              const struct store_page *page, struct store_messages *out);
/* The last n messages of a chat, oldest first (the prompt window). No ownership check:
   the caller has already checked the chat. */
EG_WUR int store_message_last(struct store *s, const char *chat_id, size_t n,
                              struct store_messages *out);
/* Context around a message of user_id: up to n_before messages before it, the message
   itself, and up to n_after after it, in its chat, oldest first. EG_ENOTFOUND otherwise. */
EG_WUR int store_message_neighbours(struct store *s, const char *user_id,
                                    const char *message_id, size_t n_before, size_t n_after,
                                    struct store_messages *out);

/* ---- memories ------------------------------------------------------------------------ */

struct store_memory {
  char id[ID_LEN + 1];
  char user_id[ID_LEN + 1];
  char chat_id[ID_LEN + 1];  /* "" for notes */
  char role[STORE_ROLE_MAX]; /* "user" | "model" | "note" */
  char *text;
  int64_t created_at;
  char model[STORE_MODEL_MAX]; /* "" while not embedded */
  float *vector;               /* NULL unless the function says it loads vectors */
  uint32_t dims;               /* 0 while not embedded */
};
void store_memory_clear(struct store_memory *m);

struct store_memories {
  struct store_memory *v;
  size_t n;
};
void store_memories_free(struct store_memories *l);

/* Adds a note (POST /api/memory): role "note", no chat. m->id "" -> new id (in/out; for a
   given created_at use id_new_at() so ids keep sorting by time); m->created_at 0 -> now.
   Reads m->user_id, m->text (required, non-empty), m->created_at; the other fields are
   ignored. EG_ENOTFOUND (no such user), EG_EEXISTS (id taken). */
EG_WUR int store_memory_add(struct store *s, struct store_memory *m);

/* Memories that have no vector of `model` (never embedded, or embedded by another model),
   any user, oldest first, id > after_id (NULL/"" = from the start), at most limit.
   Text is loaded, vectors are not. For backfill and re-embedding. */
EG_WUR int store_memory_pending(struct store *s, const char *model, const char *after_id,
                                size_t limit, struct store_memories *out);
/* Stores the vector (dims float32, native byte order = little-endian) of a memory and its
   model. EG_ENOTFOUND when the memory is gone (deleted meanwhile: not an error to log). */
EG_WUR int store_memory_set_vector(struct store *s, const char *memory_id, const char *model,
                                   const float *vec, uint32_t dims);

/* Every memory of one user, oldest first (created_at, then id), for the in-process index:
   row i is ids[i], chat_ids[i] ("" for notes), roles[i], texts[i], created_at[i], and its
   vector vec[i*dims .. (i+1)*dims) when has_vec[i] (embedded by `model` with dims values;
   dims is taken from the first such row, vectors of another length are left out). */
struct store_vectors {
  size_t n;
  uint32_t dims;
  char (*ids)[ID_LEN + 1];
  char (*chat_ids)[ID_LEN + 1];
  char (*roles)[STORE_ROLE_MAX];
  char **texts;
  int64_t *created_at;
  float *vec;
  bool *has_vec;
};
void store_vectors_free(struct store_vectors *v);
EG_WUR int store_memory_load_all(struct store *s, const char *user_id, const char *model,
                                 struct store_vectors *out);

/* Deletes one memory of user_id (its message, if any, stays). EG_ENOTFOUND otherwise. */
EG_WUR int store_memory_delete(struct store *s, const char *user_id, const char *memory_id);
/* Deletes every memory of user_id (messages stay). *deleted (may be NULL) gets how many. */
EG_WUR int store_memory_delete_all(struct store *s, const char *user_id, size_t *deleted);

/* The user's memories, newest first (created_at, then id). before_id: the last memory of
   the previous page (NULL/"" = first page); limit 0 means STORE_PAGE_MAX. No vectors.
   EG_ENOTFOUND when before_id is not a memory of this user. */
EG_WUR int store_memory_list(struct store *s, const char *user_id, const char *before_id,
                             size_t limit, struct store_memories *out);
/* The memories of user_id among ids[0..n), in the order of ids; ids that are not this
   user's (or do not exist) are skipped. No vectors. */
EG_WUR int store_memory_get_many(struct store *s, const char *user_id, const char *const *ids,
                                 size_t n, struct store_memories *out);

/* Keyword search over ONE user's memories: best first, at most k (0 -> 10, clamped to
   STORE_PAGE_MAX). A query without words gives no hits (0, out->n == 0). */
struct store_hit {
  char id[ID_LEN + 1];
  double score; /* higher is better; see "Keyword search" above */
};
struct store_hits {
  struct store_hit *v;
  size_t n;
};
void store_hits_free(struct store_hits *h);
EG_WUR int store_memory_search(struct store *s, const char *user_id, const char *query,
                               size_t k, struct store_hits *out);

/* The keyword index behind store_memory_search costs every memory written (SQLite: an
   FTS5 table kept by triggers, about a fifth of the writer's work per memory), and only
   the Pinecone mode's keyword side reads it. store_keyword_index(s, false) stops keeping
   it: SQLite drops its FTS5 table, and store_memory_search answers EG_EUNSUPPORTED on
   either back end. store_keyword_index(s, true) keeps it again; SQLite then builds it
   from every memory at once (FTS5 'rebuild': seconds for a million memories), so the
   memories written meanwhile are found. Call it at start-up, before other threads use
   the store. The state is the file's on SQLite: a store opened after a process turned
   the index off starts with it off (store_keyword_index_on says so); PostgreSQL keeps its
   index (a generated column) always, and starts on. Returns 0, EG_EDB. */
EG_WUR int store_keyword_index(struct store *s, bool on);
bool store_keyword_index_on(const struct store *s);

#endif
