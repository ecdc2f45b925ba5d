/*
 * memory: long-term memory of a user. Embedders (text -> vector), the builtin per-user
 * vector index (exact SIMD scan over int8 rows), and recall (fusion of vector and keyword
 * candidates into the few memories that go into a prompt).
 *
 * Pieces and threads:
 * - Embedders (struct mem_embedder) are asynchronous: mem_embed() starts a batch and the
 *   callback runs later on the embedder's libuv loop thread, never inside mem_embed().
 *   mem_embed() and mem_embedder_free() are called on that loop thread only. The `hash`
 *   embedder also has a pure synchronous form, mem_hash_embed(), callable from any thread.
 * - The vector index (struct mem_index) is thread-safe: any thread may search, insert and
 *   delete. A mutex guards the table of users and the LRU list; each user's rows have a
 *   rwlock (searches share it, inserts and deletes take it alone). Searches of large users
 *   cost milliseconds, so the app calls them from the thread pool (uv_queue_work), never on
 *   the loop thread.
 * - Recall fusion (mem_recall_fuse) is a pure function over (vector candidates, keyword
 *   candidates, options): no I/O, no globals, any thread.
 *
 * Models: every vector belongs to one embedding model (mem_embedder.model, e.g.
 * "hash-v1/768"). A user's index holds the vectors of one model only; a search with a query
 * from another model fails with EG_EINVAL instead of comparing unrelated vectors.
 *
 * Ownership: the caller owns every input; outputs are written into caller storage or are
 * freed with the function named next to them.
 */
#ifndef ENGRAM_MEMORY_H
#define ENGRAM_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/base.h"

/* The dimension of every built-in embedding (hash, gemini with outputDimensionality,
   and what the builtin index is tuned for). Other dimensions work too. */
#define MEM_DIM 768
/* Largest text an embedder looks at; longer texts are embedded from their first bytes. */
#define MEM_EMBED_MAX_TEXT (64 * 1024)
/* Largest model id, including the NUL. */
#define MEM_MODEL_MAX 64

/* ---- embedders ------------------------------------------------------------------- */

/* What a text is embedded for: stored memories are documents, the user's new message is
   the query (Gemini's RETRIEVAL_DOCUMENT / RETRIEVAL_QUERY; hash ignores it). */
enum mem_task { MEM_TASK_DOCUMENT, MEM_TASK_QUERY };

/* Called once per mem_embed() on the loop thread. On success (status 0) vecs holds
   n * dim floats, L2-normalised, row i for text i; it is valid only during the call
   (copy what you keep). On failure status is a negative EG_E* code and vecs is NULL:
   EG_EUPSTREAM (provider error), EG_ETIMEOUT, EG_ELIMIT (429 after retries),
   EG_ECANCELED (embedder freed first). */
typedef void (*mem_embed_cb)(void *ud, int status, const float *vecs, size_t n, int dim);

struct mem_embedder;

struct mem_embedder_ops {
  /* Start embedding texts[0..n) (lens[i] bytes each, UTF-8). Returns 0 (the callback will
     run) or EG_EINVAL (n == 0 or a NULL text; the callback will not run). */
  int (*embed)(struct mem_embedder *e, const char *const *texts, const size_t *lens, size_t n,
               enum mem_task task, mem_embed_cb cb, void *ud);
  /* Cancel what is pending (their callbacks run with EG_ECANCELED) and free. */
  void (*destroy)(struct mem_embedder *e);
};

struct mem_embedder {
  const struct mem_embedder_ops *ops;
  uv_loop_t *loop;
  char name[16];             /* "hash", "gemini", "openai" */
  char model[MEM_MODEL_MAX]; /* model id recorded next to every vector, e.g. "hash-v1/768" */
  int dim;
};

/* The offline default: 768-dim signed feature hashing of NFKC-casefolded, Snowball-stemmed
   words, 5-byte word prefixes and word pairs, sublinear tf, stopword down-weighting,
   L2-normalised (details and measured choices in hash.c). Deterministic on every machine.
   Batches are computed on the libuv thread pool. */
struct mem_embedder *mem_embedder_hash_new(uv_loop_t *loop);

/* Remote embedders over httpc (src/httpc/httpc.h), on the same loop:
   - "gemini": POST {base_url}/v1beta/models/{model}:embedContent (one text) or
     :batchEmbedContents (up to 100 per request), x-goog-api-key, taskType
     RETRIEVAL_DOCUMENT / RETRIEVAL_QUERY, outputDimensionality = dim.
   - "openai": POST {base_url}/embeddings (base_url includes /v1), Authorization: Bearer
     when api_key is set, `dimensions` sent to text-embedding-3* models only; results are
     placed by their `index`.
   Vectors are L2-normalised; a response whose vectors do not have dim values fails with
   EG_EUPSTREAM. Retries (408/429/5xx, Retry-After) are httpc's, max_tries in all. Empty
   texts are not sent (zero vector). Model id: "<kind>:<model>/<dim>". The httpc client
   must outlive the embedder. */
struct httpc;
struct mem_remote_config {
  const char *kind;     /* "gemini" | "openai" */
  const char *base_url; /* NULL = the vendor's (Gemini: without /v1beta; OpenAI: with /v1) */
  const char *api_key;  /* NULL = none (local OpenAI-compatible servers) */
  const char *model;    /* NULL = gemini-embedding-001 / text-embedding-3-small */
  int dim;              /* 0 = MEM_DIM */
  size_t batch;         /* texts per request; 0 = 100 (gemini, also its maximum) / 256 */
  int max_tries;        /* 0 = 4 */
  uint32_t timeout_ms;  /* per attempt until the first byte; 0 = 30000 */
};
/* Returns 0 and *out, or EG_EINVAL (unknown kind, bad URL scheme, NULL loop/http). */
EG_WUR int mem_embedder_remote_new(uv_loop_t *loop, struct httpc *http,
                                   const struct mem_remote_config *cfg,
                                   struct mem_embedder **out);

/* Convenience wrappers over e->ops. */
EG_WUR int mem_embed(struct mem_embedder *e, const char *const *texts, const size_t *lens,
                     size_t n, enum mem_task task, mem_embed_cb cb, void *ud);
void mem_embedder_free(struct mem_embedder *e);

/* The `hash` embedding of one text into out[MEM_DIM] (pure; any thread). A text with no
   features (empty, only punctuation) gives the zero vector. */
void mem_hash_embed(const char *text, size_t len, float out[MEM_DIM]);
/* The keyword terms of a text: the hashes (mem_term_hash) of its stemmed content terms
   (the hash embedder's tokens, stopwords left out), in text order, repeats kept; at most
   max. Returns how many (pure; any thread). */
size_t mem_terms(const char *text, size_t len, uint64_t *out, size_t max);
uint64_t mem_term_hash(const char *stem, size_t len);
/* The hash embedder's text normalisation (NFKC, case folding, default-ignorables and NULs
   dropped; malloc'd, NUL-terminated, length in *out_len; NULL on invalid input). ascii_fast:
   ASCII texts take a direct path with the same output (exposed for the agreement test). */
uint8_t *mem__normalise(const char *s, size_t n, size_t *out_len, bool ascii_fast);
/* Model id of mem_hash_embed's vectors. */
#define MEM_HASH_MODEL "hash-v1/768"

/* ---- vector math (SIMD chosen at run time) --------------------------------------- */

/* Dot product of two float vectors. */
float mem_dot_f32(const float *a, const float *b, size_t n);
/* Quantise v[0..n) to int8 with one scale: v[i] ~= q[i] * scale. Returns the scale. */
float mem_quantize_i8(const float *v, size_t n, int8_t *q);
/* Scalar and AVX2 kernels, exposed for the agreement tests and benchmarks. */
float mem__quantize_i8_scalar(const float *v, size_t n, int8_t *q);
float mem__quantize_i8_avx2(const float *v, size_t n, int8_t *q);
float mem__dot_f32_scalar(const float *a, const float *b, size_t n);
float mem__dot_f32_avx2(const float *a, const float *b, size_t n);
int32_t mem__dot_i8_scalar(const int8_t *a, const int8_t *b, size_t n);
int32_t mem__dot_i8_avx2(const int8_t *a, const int8_t *b, size_t n);
float mem__dot_f32_i8_scalar(const float *a, const int8_t *b, size_t n);
float mem__dot_f32_i8_avx2(const float *a, const int8_t *b, size_t n);
/* out[r] = dot(q, rows + r * dim) for r < nrows (int8 rows in [-127, 127]). */
void mem__scan_i8_scalar(const int8_t *q, const int8_t *rows, size_t nrows, size_t dim,
                         int32_t *out);
void mem__scan_i8_avx2(const int8_t *q, const int8_t *rows, size_t nrows, size_t dim,
                       int32_t *out);
/* The index keeps its int8 vectors by columns of 4 dimensions ("quads"): row r's values
   of dimensions 4i..4i+3 are at col_i[4r..4r+3], each column holding every row. acc[r] +=
   dot(q[0..4), row r's quad) for r < n. A sparse query (the hash embedder's) reads only
   the columns of its nonzero quads, each front to back. */
void mem__quad_col_scalar(const int8_t *col, const int8_t q[4], size_t n, int32_t *acc);
void mem__quad_col_avx2(const int8_t *col, const int8_t q[4], size_t n, int32_t *acc);
/* The index's fused search scan over one block of n <= 32 rows starting at row r0: for
   nq quads (cols[i] the column of quad i, qw[i] its 4 query bytes as one int32), dots[j] +=
   sum_i dot(qw[i], row r0 + j's quad i) (the int32 of mem__quad_col; nq may be 0), then
   returns the mask of rows j whose (float)dots[j] * scale[r0 + j] > thr (bit j). The AVX2
   form keeps the 32 sums in registers over all quads. */
uint32_t mem__quads32_scalar(const int8_t *const *cols, const int32_t *qw, size_t nq, size_t r0,
                             size_t n, const float *scale, float thr, int32_t dots[32]);
uint32_t mem__quads32_avx2(const int8_t *const *cols, const int32_t *qw, size_t nq, size_t r0,
                           size_t n, const float *scale, float thr, int32_t dots[32]);
/* True when the AVX2+FMA kernels are in use (CPU support and not disabled by
   ENGRAM_NO_AVX2=1 in the environment). */
bool mem_simd_avx2(void);

/* ---- the builtin vector index ---------------------------------------------------- */

/* One memory as the index keeps it: the message id (24 hex chars), its creation time, its
   vector when it has one of the user's model (int8 with a per-row scale), its text (for
   the keyword side and for what recall returns), its chat and role. RAM per memory:
   dim + 56 bytes of row, the text, about 6 bytes per distinct term of it, 12 bytes of
   maps and, from 1,024 memories, 8 bytes per nonzero value of a sparse vector and 6 per
   row (by dimension for the scan, by row for re-scoring; about 1,200 B for a 100-byte
   text at 768 dimensions with the hash embedder). */
enum mem_role { MEM_ROLE_USER, MEM_ROLE_MODEL, MEM_ROLE_NOTE };
struct mem_row {
  char id[ID_LEN + 1];
  int64_t created_at;  /* wall-clock ms */
  const float *vec;    /* dim floats, or NULL: not embedded by this model (yet): the keyword
                          side still finds it (input only) */
  const char *text;    /* NULL = "" (input only) */
  const char *chat_id; /* 24 hex chars, or NULL/"" for notes (input only) */
  enum mem_role role;
};

struct mem_hit {
  char id[ID_LEN + 1];
  int64_t created_at;
  float score; /* cosine similarity for normalised vectors */
};

struct mem_index;

/* A new, empty index for vectors of dim dimensions, holding at most budget_bytes of rows
   (0 = unlimited). Users are loaded whole; when a load or insert passes the budget, the
   least recently used other users are evicted whole (they reload on next use). */
struct mem_index *mem_index_new(int dim, size_t budget_bytes);
void mem_index_free(struct mem_index *ix);

/* Replace the rows of user (model as recorded with the vectors) by rows[0..n), oldest
   first (a chat's turns are linked in that order: mem_index_recall's neighbours). Rows
   with an id that is not 24 hex chars are skipped. Returns 0 or EG_EINVAL (bad user or
   model). */
EG_WUR int mem_index_load(struct mem_index *ix, const char *user, const char *model,
                          const struct mem_row *rows, size_t n);
/* True when user is loaded (and marks it recently used). */
bool mem_index_loaded(struct mem_index *ix, const char *user);
/* Add one memory of a loaded user, newer than those it has; for an id it already has, only
   the vector is set (when row->vec; text, chat and role never change). Returns 0,
   EG_ENOTFOUND (user not loaded: the row reaches the index with the next load from the
   store), EG_EINVAL (bad id, or a vector while model differs from the user's: the caller
   reloads the user after re-embedding). */
EG_WUR int mem_index_add(struct mem_index *ix, const char *user, const char *model,
                         const struct mem_row *row);
/* Remove one memory. Returns 0 or EG_ENOTFOUND (user not loaded or no such id). */
int mem_index_remove(struct mem_index *ix, const char *user, const char *id);
/* Forget a user entirely (forget-all, model change, cache invalidation from Redis). */
void mem_index_drop(struct mem_index *ix, const char *user);

/* Exact top-k vector search of one user's memories: an int8 scan (query quantised too)
   keeps the best max(2k, 32) candidates (by score, then the older row), then re-scores
   them with the float query against the int8 rows. Memories without a vector are not
   candidates. Ids in exclude[0..n_exclude) never come back. Hits are written best first into
   out[0..k); *n_out gets how many. Returns 0, EG_ENOTFOUND (user not loaded: load from the
   store and retry), EG_EINVAL (model differs from the user's vectors, k < 1). */
EG_WUR int mem_index_search(struct mem_index *ix, const char *user, const char *model,
                            const float *query, size_t k, const char *const *exclude,
                            size_t n_exclude, struct mem_hit *out, size_t *n_out);
/* Keyword search (BM25, k1 1.2, b 0.75, over the user's own memories: document count,
   lengths and frequencies are this user's) of query's content terms (mem_terms). Hits
   best first into out[0..k), score = BM25. Same return codes (no model check). */
EG_WUR int mem_index_keyword(struct mem_index *ix, const char *user, const char *query,
                             size_t k, const char *const *exclude, size_t n_exclude,
                             struct mem_hit *out, size_t *n_out);

/* A memory found by mem_index_recall; text/before/after are malloc'd (mem_found_free). */
struct mem_found {
  char id[ID_LEN + 1];
  char chat_id[ID_LEN + 1]; /* "" for notes */
  enum mem_role role;
  int64_t created_at;
  float score; /* fused */
  char *text;
  /* With neighbours: the memories just before and after it in its chat, or NULL. */
  char *before, *after;
  enum mem_role before_role, after_role;
};
void mem_found_free(struct mem_found *f, size_t n);
struct mem_recall_opts;
/* The whole recall of one user in RAM: the vector side (when vec) and the keyword side
   (mem_index_keyword) give kc candidates each, mem_recall_fuse(o) merges them (o->k
   results at most, o->exclude never). out[0..o->k) best first, *n_out how many. Returns
   0, EG_ENOTFOUND (not loaded), EG_EINVAL (vec given and model differs, o->k < 1). */
EG_WUR int mem_index_recall(struct mem_index *ix, const char *user, const char *model,
                            const float *vec, const char *query, size_t kc,
                            const struct mem_recall_opts *o, bool neighbours,
                            struct mem_found *out, size_t *n_out);

struct mem_index_stats {
  size_t users;
  size_t rows;
  size_t bytes; /* RAM of the rows (vectors, scales, ids, times) */
  size_t budget;
  uint64_t evictions;
};
void mem_index_stats(struct mem_index *ix, struct mem_index_stats *st);

/* ---- Pinecone vector store ------------------------------------------------------- */

/* The `pinecone` vector store (REST data plane over httpc, on the loop thread; callbacks
   run there, never inside the starting call). Every vector carries metadata {user, chat,
   text, model, createdAt}; queries filter on user AND model ({$and:[{user:{$eq}},
   {model:{$eq}}]}) and drop any match whose metadata is not that user's and model's.
   Upserts go 100 vectors per request, deletes 1000 ids per request. Retries on
   408/429/5xx. The calls return 0 (the callback will run) or EG_EINVAL (bad arguments:
   no callback). Callback status: 0, EG_EAUTH (401), EG_EINVAL (400), EG_ELIMIT (429 after
   the last try), EG_EUPSTREAM (5xx, malformed body), EG_ETIMEOUT, EG_EIO, EG_ECANCELED
   (mem_pinecone_free). The httpc client must outlive the store. */
struct mem_pinecone_config {
  const char *host;       /* index host ("idx-abc.svc.us-east1-gcp.pinecone.io" gets
                             https://) or a full http(s):// URL (tests) */
  const char *api_key;    /* required */
  const char *name_space; /* NULL = "" (the default namespace) */
  int max_tries;          /* 0 = 4 */
  uint32_t timeout_ms;    /* per attempt until the first byte; 0 = 15000 */
};
struct mem_pinecone;
struct mem_pc_record {
  const char *id; /* 24 hex chars (the message id) */
  const char *user;
  const char *chat; /* NULL = "" (notes) */
  const char *text; /* NULL = "" */
  int64_t created_at;
  const float *vec; /* dim floats */
};
typedef void (*mem_pc_done_cb)(void *ud, int status);
/* hits: best first, valid during the call. */
typedef void (*mem_pc_query_cb)(void *ud, int status, const struct mem_hit *hits, size_t n);

EG_WUR int mem_pinecone_new(uv_loop_t *loop, struct httpc *http,
                            const struct mem_pinecone_config *cfg, struct mem_pinecone **out);
/* Cancels what is in flight (callbacks get EG_ECANCELED on later loop turns) and frees. */
void mem_pinecone_free(struct mem_pinecone *pc);
EG_WUR int mem_pinecone_upsert(struct mem_pinecone *pc, const char *model,
                               const struct mem_pc_record *recs, size_t n, int dim,
                               mem_pc_done_cb cb, void *ud);
EG_WUR int mem_pinecone_query(struct mem_pinecone *pc, const char *user, const char *model,
                              const float *vec, int dim, size_t top_k, mem_pc_query_cb cb,
                              void *ud);
EG_WUR int mem_pinecone_delete(struct mem_pinecone *pc, const char *const *ids, size_t n,
                               mem_pc_done_cb cb, void *ud);
/* Forget-all: deletes every vector whose metadata user is `user` (filter delete). */
EG_WUR int mem_pinecone_delete_user(struct mem_pinecone *pc, const char *user,
                                    mem_pc_done_cb cb, void *ud);

/* ---- recall ---------------------------------------------------------------------- */

/* One candidate from a search (vector side: cosine; keyword side: BM25, higher = better,
   i.e. the negated SQLite bm25() value). Text pointers are borrowed. */
struct mem_cand {
  const char *id;      /* 24 hex chars, NUL-terminated */
  const char *chat_id; /* may be NULL */
  const char *text;    /* may be NULL */
  enum mem_role role;
  int64_t created_at; /* wall-clock ms */
  float score;
};

/* A recalled memory: the borrowed pointers of the candidate it came from plus the fused
   score (0..1, higher is better). */
struct mem_recalled {
  const char *id;
  const char *chat_id;
  const char *text;
  enum mem_role role;
  int64_t created_at;
  float score;
  float vec_score; /* the candidate's own scores (0 when absent from that side) */
  float kw_score;
};

struct mem_recall_opts {
  size_t k;                   /* how many memories (default 3) */
  const char *const *exclude; /* ids never returned: the current message, the window */
  size_t n_exclude;
  float w_vec;     /* weight of the vector side (default mem_recall_defaults) */
  float w_kw;      /* weight of the keyword side */
  float min_score; /* fused scores below are dropped (0 = keep all) */
  /* Time questions (added 2026-11-25): when query asks "when / what date / what time /
     which day ...", candidates whose text holds a date or time expression get their fused
     score multiplied by 1 + date_boost. NULL query = off. */
  const char *query;
  float date_boost;
};
/* The date heuristics, exposed for tests: a question about time; a text with a date or
   time expression (month or weekday names, 10:30, 2019, 3rd, 12/05, tomorrow, next week). */
bool mem__time_question(const char *q);
bool mem__has_date(const char *text);

/* The measured defaults (bench/eval_recall.c; bench/README.md "Memory"). */
void mem_recall_defaults(struct mem_recall_opts *o);

/* Fuse: each side's scores are normalised by that side's best score, combined as
   w_vec * v + w_kw * b, duplicates merged by id, excluded ids dropped, sorted by fused
   score then by recency (newer first) then by id. Writes at most o->k results to out and
   returns how many. Candidates with a NULL or malformed id are ignored. */
size_t mem_recall_fuse(const struct mem_cand *vec, size_t n_vec, const struct mem_cand *kw,
                       size_t n_kw, const struct mem_recall_opts *o, struct mem_recalled *out);

#endif
