/*
 * store internals: the back-end vtable (in the manner of sqlite3_io_methods) and helpers
 * shared by sqlite.c and pg.c. Not for use outside src/store.
 *
 * store.c validates arguments (ids are 24 hex chars, roles known, texts present, limits
 * clamped) before calling an op, so the back ends can trust their inputs.
 */
#ifndef ENGRAM_STORE_INT_H
#define ENGRAM_STORE_INT_H

#include "store/store.h"

#define STORE_CLIENT_ID_MAX 128
#define STORE_FTS_TERMS_MAX 32

struct store_ops {
  const char *name; /* "sqlite" | "postgres" */
  void (*close)(struct store *s);
  int (*migrate)(struct store *s, int *version);
  int (*ping)(struct store *s);

  int (*user_create)(struct store *s, struct store_user_new *u);
  int (*user_get)(struct store *s, const char *id, const char *email, struct store_user *out);
  int (*user_delete)(struct store *s, const char *id);
  int (*user_list)(struct store *s, const char *after_id, size_t limit,
                   struct store_users *out);

  int (*chat_create)(struct store *s, struct store_chat *c);
  int (*chat_get)(struct store *s, const char *user_id, const char *chat_id,
                  struct store_chat *out);
  int (*chat_list)(struct store *s, const char *user_id, const char *before_id, size_t limit,
                   struct store_chats *out);
  int (*chat_rename)(struct store *s, const char *user_id, const char *chat_id,
                     const char *title);
  int (*chat_delete)(struct store *s, const char *user_id, const char *chat_id);

  /* nosync: may commit without waiting for the disk (see store_message_insert_batch_nosync);
     only back ends with a `sync` op are asked to. */
  int (*message_insert_batch)(struct store *s, struct store_message_new *m, size_t n,
                              int *status, bool nosync);
  /* Optional: fsync what earlier nosync commits wrote. NULL: commits are durable. */
  int (*sync)(struct store *s);
  int (*message_get)(struct store *s, const char *user_id, const char *id,
                     struct store_message *out);
  int (*message_list)(struct store *s, const char *user_id, const char *chat_id,
                      const struct store_page *page, struct store_messages *out);
  int (*message_last)(struct store *s, const char *chat_id, size_t n,
                      struct store_messages *out);
  int (*message_neighbours)(struct store *s, const char *user_id, const char *id,
                            size_t n_before, size_t n_after, struct store_messages *out);

  int (*memory_add)(struct store *s, struct store_memory *m);
  int (*memory_pending)(struct store *s, const char *model, const char *after_id, size_t limit,
                        struct store_memories *out);
  int (*memory_set_vector)(struct store *s, const char *id, const char *model, const float *vec,
                           uint32_t dims);
  int (*memory_load_all)(struct store *s, const char *user_id, const char *model,
                         struct store_vectors *out);
  int (*memory_delete)(struct store *s, const char *user_id, const char *id);
  int (*memory_delete_all)(struct store *s, const char *user_id, size_t *deleted);
  int (*memory_list)(struct store *s, const char *user_id, const char *before_id, size_t limit,
                     struct store_memories *out);
  int (*memory_get_many)(struct store *s, const char *user_id, const char *const *ids, size_t n,
                         struct store_memories *out);
  /* terms: sanitised words (letters, digits, non-ASCII bytes only), 1..32 of them. */
  int (*memory_search)(struct store *s, const char *user_id, const char *const *terms,
                       size_t n_terms, size_t k, struct store_hits *out);
  /* Optional: start (on) or stop (off) keeping the keyword index of memory_search. NULL:
     the index is part of the table and always kept (PostgreSQL). */
  int (*keyword_index)(struct store *s, bool on);
  /* Non-blocking (see store_pool_stats). */
  void (*pool_stats)(struct store *s, struct store_pool_stats *out);
};

/* The common head of every back end's store struct. */
struct store {
  const struct store_ops *ops;
  char desc[256];
  bool keyword_off; /* store_keyword_index(s, false): memory_search answers EG_EUNSUPPORTED */
};

/* Back-end constructors (they apply the migrations). */
int store__sqlite_open(const char *path, struct store **out);
int store__pg_open(const char *url, struct store **out);

/* The SQLite VFS of the store's writer connections (sqlite_walbuf.c: the unix VFS, with
   each commit's WAL frames written by a few large pwrites), registered on first call; NULL when
   it cannot be (the default VFS is used then). Thread-safe. */
const char *store__walbuf_vfs(void);

/* Counters of that VFS since the process started, over all its -wal files: xWrite calls
   (writes), writes that reached the file (pwrites: flushes included), buffer flushes and
   commit frames seen. */
struct store_walbuf_stats {
  uint64_t writes, pwrites, flushes, commits;
};
void store__walbuf_stats(struct store_walbuf_stats *out);

/* Splits user text into at most STORE_FTS_TERMS_MAX words (runs of ASCII letters and
   digits and bytes >= 0x80, at most 64 bytes each, ASCII lowered), written as
   NUL-terminated strings into buf (which needs strlen(q) + STORE_FTS_TERMS_MAX + 1 bytes);
   terms[i] point into buf. Returns the count. Duplicates are dropped. */
size_t store__fts_terms(const char *q, char *buf, const char **terms);

/* Growing arrays for list outputs. */
void *store__grow(void *v, size_t n, size_t *cap, size_t elem);

/* Copies an id-sized string (<= 24 chars) into dst[25]. */
void store__id_copy(char dst[ID_LEN + 1], const char *src);
/* Copies a short string, truncating to cap - 1. */
void store__str_copy(char *dst, size_t cap, const char *src);
void store__vectors_push(struct store_vectors *v, size_t *cap, const char *id, const char *chat,
                         const char *role, const char *text, int64_t created_at,
                         const void *vec, uint32_t dims);

#endif
