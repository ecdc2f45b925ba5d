/*
 * recall: a user's long-term memory as one service over the store (texts, vectors, the
 * keyword index), the embedder and the in-process vector index (src/memory).
 *
 * - recall_remember(): add a stored memory to the user's index when that is loaded (its
 *   words at once), embed it as a document, record its vector and model in the store (or
 *   take the vector already stored with its message) and give it to the index. Embedding failures are not
 *   fatal: the memory stays pending in the store and the backfill embeds it later.
 * - recall_search(): the memories of ONE user most relevant to a query: the query is
 *   embedded (or its vector given), then on the thread pool the user's memories are loaded
 *   into the index when needed (one load per user at a time) and the index answers in RAM:
 *   its vector side and its keyword side (BM25 over the user's own memories) each give
 *   candidates, mem_recall_fuse() merges them (excluded ids never come back), with the
 *   texts and neighbouring turns from the same rows. With Pinecone the vector side is
 *   Pinecone's and the keyword side the store's full-text index (texts read back from
 *   the store, checked to be this user's).
 * - recall_forget()/recall_forget_all()/recall_note(): delete or add memories in the store
 *   and the index together.
 * - The backfill: recall_backfill_kick() starts a pass (when none runs) that embeds every
 *   memory without a vector of the current model, in batches, oldest first: memories
 *   whose embedding failed, and all of them after the embedder changed (vectors of
 *   different models are never compared: the index of a user only holds one model's).
 *   The app kicks it at start and on a timer.
 *
 * - With Pinecone (recall_deps.pinecone) the vector side is the Pinecone index instead of the
 *   in-process one; the store still records every vector (switching back to builtin or
 *   re-embedding needs no Pinecone). Pinecone failures degrade like embedding failures:
 *   keyword-only answers, memories pending until the backfill upserts them.
 * - After failures, the first embedding (or upsert) that works again kicks the backfill.
 *
 * Threads: every function is called on the loop thread; callbacks run there. Store and
 * index work runs on the thread pool through store_async_run().
 * Ownership: inputs are copied; results passed to callbacks are valid during the call.
 * Return codes: 0 (the callback will run), EG_EINVAL (bad arguments), EG_ECLOSED (closing).
 */
#ifndef ENGRAM_RECALL_H
#define ENGRAM_RECALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/base.h"
#include "memory/memory.h"

struct store;
struct store_async;

struct recall_deps {
  uv_loop_t *loop;
  struct store *store;
  struct store_async *async;
  struct mem_embedder *embedder;
  struct mem_index *index;
  const struct mem_recall_opts *fuse; /* NULL = mem_recall_defaults */
  size_t backfill_batch;              /* 0 = 64 */
  /* NULL = builtin vectors (the index). Else the vector side is Pinecone: searches query it
     (filter user and model), remember/backfill upsert there ({user, chat, text}) before the
     vector is recorded in the store (a memory whose upsert failed stays pending for the
     backfill), forget deletes by id, forget-all by filter. index is then unused. Must
     outlive the recall's in-flight work (free it after closing the store_async). */
  struct mem_pinecone *pinecone;
  /* Fill recall_item.context with each hit's neighbouring turns (bench/README.md "Memory":
     +0.06 recall@3 when the prompt shows them). Off: context stays NULL. */
  bool neighbours;
};

struct recall;

EG_WUR int recall_new(const struct recall_deps *d, struct recall **out);
/* Frees; nothing may be in flight (close the store_async first). */
void recall_free(struct recall *r);

struct recall_item {
  char id[ID_LEN + 1];
  char chat_id[ID_LEN + 1]; /* "" for notes */
  char role[8];             /* "user" | "model" | "note" */
  char *text;
  int64_t created_at;
  float score; /* fused, 0..1 */
  /* With recall_deps.neighbours: the turn before and the turn after the hit in its chat
     (store_message_neighbours), one "user: ..." / "model: ..." line each (each cut at
     RECALL_CONTEXT_MAX bytes on a UTF-8 boundary), for the prompt next to text; NULL when
     not asked for, for notes, or when the hit has no neighbours. text stays the memory's
     own text (what ai-response.memories shows). Freed by recall_items_free; a caller that
     copies an item must copy or drop context. */
  char *context;
};
#define RECALL_CONTEXT_MAX 1000

/* status 0 and items[0..n), best first; or a negative EG_E* code (n == 0). */
typedef void (*recall_search_cb)(void *ud, int status, const struct recall_item *items,
                                 size_t n);
/* Searches user's memories for query (k results at most, 0 = the default 3). vec: the
   query's embedding by this embedder (MEM_TASK_QUERY) when the caller already has it, or
   NULL to embed here. A query whose embedding fails is answered from the keyword side. */
EG_WUR int recall_search(struct recall *r, const char *user_id, const char *query,
                         const float *vec, size_t k, const char *const *exclude,
                         size_t n_exclude, recall_search_cb cb, void *ud);

/* The search itself, blocking (pool threads, operator commands): the user's index is
   loaded from the store when needed, vector (when vec) and keyword candidates are fused.
   *items (free with recall_items_free) gets at most k results, best first; context is
   not filled (operator commands show the memories alone). */
struct mem_recall_opts;
EG_WUR int recall_search_sync(struct store *s, struct mem_index *ix, const char *model, int dim,
                              const struct mem_recall_opts *fuse, const char *user,
                              const char *query, const float *vec, size_t k,
                              const char *const *exclude, size_t n_exclude,
                              struct recall_item **items, size_t *n);
void recall_items_free(struct recall_item *items, size_t n);
/* recall_search() for a caller already on a thread-pool thread with the store (e.g. in a
   store_async_run() work function, next to other store work): vec is the query's
   embedding (NULL = keyword side only), context is filled as recall_search() does. Only
   with the builtin index (recall_builtin(); else EG_EINVAL). *items: free with
   recall_items_free. The recall's stats count it. */
EG_WUR int recall_search_blocking(struct recall *r, struct store *s, const char *user_id,
                                  const char *query, const float *vec, size_t k,
                                  const char *const *exclude, size_t n_exclude,
                                  struct recall_item **items, size_t *n);

typedef void (*recall_done_cb)(void *ud, int status);
/* A stored memory to remember (the strings are copied). */
struct recall_memory {
  const char *user_id, *id;
  const char *chat_id; /* NULL or "" for notes */
  const char *role;    /* "user" | "model" | "note" */
  const char *text;
  int64_t created_at;
  /* Its document embedding when known (the hash embedder gives the same vector for
     queries and documents), else NULL: embedded here. */
  const float *vec;
  /* vec is already in the store (inserted with the message): only the index learns it. */
  bool vec_stored;
};
/* Embeds and records one memory (see above). The memory is in the user's index (when
   loaded: its keyword side at once, its vector once known) before this returns. cb may be
   NULL; with vec_stored it runs before recall_remember returns. */
EG_WUR int recall_remember(struct recall *r, const struct recall_memory *m, recall_done_cb cb,
                           void *ud);
/* Deletes one memory of user_id (EG_ENOTFOUND if it is not theirs) / all of them. */
EG_WUR int recall_forget(struct recall *r, const char *user_id, const char *memory_id,
                         recall_done_cb cb, void *ud);
typedef void (*recall_count_cb)(void *ud, int status, size_t n);
EG_WUR int recall_forget_all(struct recall *r, const char *user_id, recall_count_cb cb,
                             void *ud);
/* Adds a note (role "note") and remembers it. cb gets the new memory's id. */
typedef void (*recall_note_cb)(void *ud, int status, const char *id, int64_t created_at);
EG_WUR int recall_note(struct recall *r, const char *user_id, const char *text,
                       int64_t created_at, recall_note_cb cb, void *ud);
/* The user's index is stale (chat deleted, another node wrote): drop it; it reloads from
   the store on next use. */
void recall_invalidate(struct recall *r, const char *user_id);

/* Starts a backfill pass unless one runs. */
void recall_backfill_kick(struct recall *r);

struct recall_stats {
  uint64_t searches, remembered, embed_failures, backfilled;
};
void recall_stats(const struct recall *r, struct recall_stats *st);

const struct mem_embedder *recall_embedder(const struct recall *r);
/* True when the vector side is the builtin index (not Pinecone): a vector recorded in the
   store is then all a memory needs (e.g. stored with its message, recall_memory.vec_stored),
   and recall_search_blocking() works. */
bool recall_builtin(const struct recall *r);

#endif
