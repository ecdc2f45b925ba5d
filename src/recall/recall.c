/*
 * The recall service (see recall.h). Each operation is a small job that hops between the
 * loop thread (embedder calls, callbacks) and the thread pool (store and index work).
 */
#include "recall/recall.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_async.h"

struct recall {
  struct recall_deps d;
  struct mem_recall_opts fuse;
  struct recall_stats st;
  bool backfill_running, backfill_again;
  bool failed; /* an embedding or upsert failed since the last success */
  char backfill_after[ID_LEN + 1];
};

int recall_new(const struct recall_deps *d, struct recall **out) {
  if (d == NULL || d->loop == NULL || d->store == NULL || d->async == NULL ||
      d->embedder == NULL || (d->index == NULL && d->pinecone == NULL))
    return EG_EINVAL;
  struct recall *r = xcalloc(1, sizeof *r);
  r->d = *d;
  if (d->fuse)
    r->fuse = *d->fuse;
  else
    mem_recall_defaults(&r->fuse);
  if (r->d.backfill_batch == 0)
    r->d.backfill_batch = 64;
  *out = r;
  return 0;
}

void recall_free(struct recall *r) {
  free(r);
}

void recall_stats(const struct recall *r, struct recall_stats *st) {
  *st = r->st;
}

const struct mem_embedder *recall_embedder(const struct recall *r) {
  return r->d.embedder;
}

bool recall_builtin(const struct recall *r) {
  return r->d.pinecone == NULL && r->d.index;
}

/* The embedder (or Pinecone) answers again after failures: catch up on what is pending now
   rather than at the next timer tick. */
static void note_success(struct recall *r) {
  if (r->failed) {
    r->failed = false;
    recall_backfill_kick(r);
  }
}

static bool valid_user(const char *user_id) {
  return user_id != NULL && id_valid(user_id, strlen(user_id));
}

static enum mem_role role_of(const char *role) {
  if (!strcmp(role, "model"))
    return MEM_ROLE_MODEL;
  return !strcmp(role, "note") ? MEM_ROLE_NOTE : MEM_ROLE_USER;
}

static const char *role_name(enum mem_role r) {
  return r == MEM_ROLE_MODEL ? "model" : r == MEM_ROLE_NOTE ? "note" : "user";
}

/* One load per user at a time: the searches that find a user not loaded wait for the
   first one's load instead of each reading the same rows (striped by user). */
#define LOAD_STRIPES 64
static pthread_mutex_t load_mu[LOAD_STRIPES] = {[0 ... LOAD_STRIPES - 1] =
                                                    PTHREAD_MUTEX_INITIALIZER};

static size_t load_stripe(const char *user) {
  uint32_t h = 2166136261u;
  for (; *user; user++)
    h = (h ^ (uint8_t)*user) * 16777619u;
  return h % LOAD_STRIPES;
}

static int load_user(struct store *s, struct mem_index *ix, const char *model, int dim,
                     const char *user);

/* Loads the user's memories (and their vectors of model) into the index (blocking). */
static int ensure_loaded(struct store *s, struct mem_index *ix, const char *model, int dim,
                         const char *user) {
  if (mem_index_loaded(ix, user))
    return 0;
  pthread_mutex_t *mu = &load_mu[load_stripe(user)];
  pthread_mutex_lock(mu);
  int rc = mem_index_loaded(ix, user) ? 0 : load_user(s, ix, model, dim, user);
  pthread_mutex_unlock(mu);
  return rc;
}

static int load_user(struct store *s, struct mem_index *ix, const char *model, int dim,
                     const char *user) {
  struct store_vectors v;
  int rc = store_memory_load_all(s, user, model, &v);
  if (rc)
    return rc;
  struct mem_row *rows = xcalloc(v.n ? v.n : 1, sizeof *rows);
  bool dims_ok = v.dims == 0 || (int)v.dims == dim;
  /* The hash embedder's vectors are not stored (store_message_new.vec_derived): computed
     again here, a few microseconds each, as for a memory not embedded yet. */
  bool derive = !strcmp(model, MEM_HASH_MODEL) && dim == MEM_DIM;
  size_t nd = 0;
  for (size_t i = 0; derive && i < v.n; i++)
    nd += !(dims_ok && v.has_vec[i]);
  float *derived = nd ? xmalloc(nd * MEM_DIM * sizeof *derived) : NULL, *next = derived;
  for (size_t i = 0; i < v.n; i++) {
    memcpy(rows[i].id, v.ids[i], ID_LEN + 1);
    rows[i].created_at = v.created_at[i];
    rows[i].vec = dims_ok && v.has_vec[i] ? v.vec + i * v.dims : NULL;
    if (!rows[i].vec && derive) {
      mem_hash_embed(v.texts[i], strlen(v.texts[i]), next);
      rows[i].vec = next;
      next += MEM_DIM;
    }
    rows[i].text = v.texts[i];
    rows[i].chat_id = v.chat_ids[i];
    rows[i].role = role_of(v.roles[i]);
  }
  rc = mem_index_load(ix, user, model, rows, v.n);
  free(derived);
  free(rows);
  store_vectors_free(&v);
  return rc;
}

/* ---- search ---------------------------------------------------------------------- */

struct search_job {
  struct recall *r;
  char user[ID_LEN + 1];
  char *query;
  float *vec; /* NULL: keyword side only */
  size_t k;
  char **exclude;
  size_t n_exclude;
  recall_search_cb cb;
  void *ud;
  struct recall_item *items;
  size_t n;
  bool use_pc; /* the vector side is pc_hits (Pinecone) */
  struct mem_hit *pc_hits;
  size_t n_pc;
};

void recall_items_free(struct recall_item *items, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(items[i].text);
    free(items[i].context);
  }
  free(items);
}

/* Appends "role: text\n", text cut at RECALL_CONTEXT_MAX bytes on a UTF-8 boundary. */
static void context_line(struct buf *b, const char *role, const char *text) {
  size_t len = strlen(text);
  if (len > RECALL_CONTEXT_MAX) {
    len = RECALL_CONTEXT_MAX;
    while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
      len--;
  }
  size_t at = b->len; /* (appends, not a printf: this runs for every recalled memory) */
  if (buf_append_str(b, role) != 0 || buf_append(b, ": ", 2) != 0 ||
      buf_append(b, text, len) != 0 || buf_append_byte(b, '\n') != 0) {
    b->len = at;
    if (b->data)
      b->data[at] = '\0';
    log_debug("recall: context line dropped (too long)");
  }
}

/* item->context from the turn before and after the item in its chat (blocking). */
static void fill_context(struct store *s, const char *user, struct recall_item *it) {
  if (it->chat_id[0] == '\0')
    return;
  struct store_messages nb = {0};
  if (store_message_neighbours(s, user, it->id, 1, 1, &nb) != 0)
    return;
  struct buf b;
  buf_init(&b, 4 * RECALL_CONTEXT_MAX);
  for (size_t i = 0; i < nb.n; i++)
    if (strcmp(nb.v[i].id, it->id) != 0 && nb.v[i].content && nb.v[i].content[0])
      context_line(&b, nb.v[i].role, nb.v[i].content);
  if (b.len) {
    b.len--; /* the last newline */
    it->context = xstrndup((const char *)b.data, b.len);
  }
  buf_free(&b);
  store_messages_free(&nb);
}

static void search_job_free(struct search_job *j) {
  recall_items_free(j->items, j->n);
  for (size_t i = 0; i < j->n_exclude; i++)
    free(j->exclude[i]);
  free(j->exclude);
  free(j->vec);
  free(j->pc_hits);
  free(j->query);
  free(j);
}

static const struct store_memory *find_mem(const struct store_memories *m, const char *id) {
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->v[i].id, id) == 0)
      return &m->v[i];
  return NULL;
}

static void fill_cand(struct mem_cand *c, const struct store_memory *m, float score) {
  c->id = m->id;
  c->chat_id = m->chat_id;
  c->text = m->text;
  c->role = strcmp(m->role, "model") == 0 ? MEM_ROLE_MODEL : MEM_ROLE_USER;
  c->created_at = m->created_at;
  c->score = score;
}

/* How many candidates each side gives for k results. */
static size_t cand_count(size_t k, size_t n_exclude) {
  size_t kc = 4 * k + n_exclude + 16;
  return kc > 400 ? 400 : kc;
}

/* The search over the user's memories in RAM (the builtin index), loading them first when
   needed (blocking). */
static int search_index(struct store *s, struct mem_index *ix, const char *model, int dim,
                        const struct mem_recall_opts *o, const char *user, const char *query,
                        const float *vec, size_t kc, bool neighbours,
                        struct recall_item **items_out, size_t *n_out) {
  struct mem_found *found = xcalloc(o->k, sizeof *found);
  size_t n = 0;
  int rc = 0;
  for (int attempt = 0; attempt < 2; attempt++) {
    rc = ensure_loaded(s, ix, model, dim, user);
    if (rc)
      break;
    rc = mem_index_recall(ix, user, model, vec, query, kc, o, neighbours, found, &n);
    if (rc == EG_EINVAL && vec) { /* the user's vectors are another model's: reload */
      mem_index_drop(ix, user);
      continue;
    }
    if (rc != EG_ENOTFOUND) /* evicted between load and search: once more */
      break;
  }
  if (rc) {
    mem_found_free(found, n);
    free(found);
    return rc;
  }
  struct recall_item *items = xcalloc(n ? n : 1, sizeof *items);
  for (size_t i = 0; i < n; i++) {
    struct recall_item *it = &items[i];
    const struct mem_found *f = &found[i];
    memcpy(it->id, f->id, sizeof it->id);
    memcpy(it->chat_id, f->chat_id, sizeof it->chat_id);
    snprintf(it->role, sizeof it->role, "%s", role_name(f->role));
    it->text = f->text; /* moved */
    it->created_at = f->created_at;
    it->score = f->score;
    if (f->before || f->after) {
      struct buf b;
      buf_init(&b, 4 * RECALL_CONTEXT_MAX);
      if (f->before && f->before[0])
        context_line(&b, role_name(f->before_role), f->before);
      if (f->after && f->after[0])
        context_line(&b, role_name(f->after_role), f->after);
      if (b.len) {
        b.len--; /* the last newline */
        it->context = xstrndup((const char *)b.data, b.len);
      }
      buf_free(&b);
    }
    free(f->before);
    free(f->after);
  }
  free(found);
  *items_out = items;
  *n_out = n;
  return 0;
}

/* The search; the vector side is pre[0..npre) when use_pre (Pinecone's hits), else the
   index (when vec). */
static int search_core(struct store *s, struct mem_index *ix, const char *model, int dim,
                       const struct mem_recall_opts *fuse, const char *user, const char *query,
                       const float *vec, bool use_pre, const struct mem_hit *pre, size_t npre,
                       bool neighbours, size_t k, const char *const *exclude, size_t n_exclude,
                       struct recall_item **items_out, size_t *n_out) {
  *items_out = NULL;
  *n_out = 0;
  size_t kc = cand_count(k, n_exclude);
  struct mem_recall_opts o;
  if (fuse)
    o = *fuse;
  else
    mem_recall_defaults(&o);
  o.k = k;
  o.exclude = exclude;
  o.n_exclude = n_exclude;
  o.query = query;    /* the date boost for time questions */
  if (!use_pre && ix) /* (the index leaves excluded ids out before it counts) */
    return search_index(s, ix, model, dim, &o, user, query, vec, cand_count(k, 0), neighbours,
                        items_out, n_out);
  /* Pinecone: its hits (pre) and the store's keyword search. */
  struct mem_hit *vh = xcalloc(kc, sizeof *vh);
  size_t nv = 0;
  int rc = 0;
  for (size_t i = 0; i < npre && nv < kc; i++)
    vh[nv++] = pre[i];
  struct store_hits kh = {0};
  rc = store_memory_search(s, user, query, kc, &kh);
  if (rc) {
    free(vh);
    return rc;
  }
  const char **ids = xcalloc(nv + kh.n + 1, sizeof *ids);
  size_t nids = 0;
  for (size_t i = 0; i < nv; i++)
    ids[nids++] = vh[i].id;
  for (size_t i = 0; i < kh.n; i++)
    ids[nids++] = kh.v[i].id;
  struct store_memories mems = {0};
  if (nids)
    rc = store_memory_get_many(s, user, ids, nids, &mems);
  if (rc == 0 && mems.n) {
    struct mem_cand *vc = xcalloc(nv + 1, sizeof *vc),
                    *kcand = xcalloc(kh.n + 1, sizeof *kcand);
    size_t nvc = 0, nkc = 0;
    for (size_t i = 0; i < nv; i++) {
      const struct store_memory *m = find_mem(&mems, vh[i].id);
      if (m)
        fill_cand(&vc[nvc++], m, vh[i].score);
    }
    for (size_t i = 0; i < kh.n; i++) {
      const struct store_memory *m = find_mem(&mems, kh.v[i].id);
      if (m)
        fill_cand(&kcand[nkc++], m, (float)kh.v[i].score);
    }
    struct mem_recalled *out = xcalloc(k ? k : 1, sizeof *out);
    size_t n = mem_recall_fuse(vc, nvc, kcand, nkc, &o, out);
    struct recall_item *items = xcalloc(n ? n : 1, sizeof *items);
    size_t ni = 0;
    for (size_t i = 0; i < n; i++) {
      const struct store_memory *m = find_mem(&mems, out[i].id);
      if (m == NULL) /* cannot happen: every candidate came from mems */
        continue;
      struct recall_item *it = &items[ni++];
      memcpy(it->id, m->id, sizeof it->id);
      memcpy(it->chat_id, m->chat_id, sizeof it->chat_id);
      snprintf(it->role, sizeof it->role, "%s", m->role);
      it->text = xstrdup(m->text ? m->text : "");
      it->created_at = m->created_at;
      it->score = out[i].score;
      if (neighbours)
        fill_context(s, user, it);
    }
    *items_out = items;
    *n_out = ni;
    free(out);
    free(vc);
    free(kcand);
  }
  store_memories_free(&mems);
  free(ids);
  store_hits_free(&kh);
  free(vh);
  return rc;
}

int recall_search_sync(struct store *s, struct mem_index *ix, const char *model, int dim,
                       const struct mem_recall_opts *fuse, const char *user, const char *query,
                       const float *vec, size_t k, const char *const *exclude, size_t n_exclude,
                       struct recall_item **items_out, size_t *n_out) {
  return search_core(s, ix, model, dim, fuse, user, query, vec, false, NULL, 0, false, k,
                     exclude, n_exclude, items_out, n_out);
}

int recall_search_blocking(struct recall *r, struct store *s, const char *user_id,
                           const char *query, const float *vec, size_t k,
                           const char *const *exclude, size_t n_exclude,
                           struct recall_item **items, size_t *n) {
  *items = NULL;
  *n = 0;
  if (!recall_builtin(r) || !valid_user(user_id) || query == NULL)
    return EG_EINVAL;
  if (k == 0)
    k = r->fuse.k ? r->fuse.k : 3;
  if (k > STORE_PAGE_MAX)
    k = STORE_PAGE_MAX;
  __atomic_fetch_add(&r->st.searches, 1, __ATOMIC_RELAXED);
  return search_core(s, r->d.index, r->d.embedder->model, r->d.embedder->dim, &r->fuse, user_id,
                     query, vec, false, NULL, 0, r->d.neighbours, k, exclude, n_exclude, items,
                     n);
}

static int search_work(struct store *s, void *arg) {
  struct search_job *j = arg;
  struct recall *r = j->r;
  return search_core(s, r->d.index, r->d.embedder->model, r->d.embedder->dim, &r->fuse, j->user,
                     j->query, j->vec, j->use_pc, j->pc_hits, j->n_pc, r->d.neighbours, j->k,
                     (const char *const *)j->exclude, j->n_exclude, &j->items, &j->n);
}

static void search_done(void *arg, int status) {
  struct search_job *j = arg;
  __atomic_fetch_add(&j->r->st.searches, 1, __ATOMIC_RELAXED);
  j->cb(j->ud, status, status ? NULL : j->items, status ? 0 : j->n);
  search_job_free(j);
}

static void search_run(struct search_job *j) {
  int rc = store_async_run(j->r->d.async, search_work, search_done, j);
  if (rc) {
    j->cb(j->ud, rc, NULL, 0);
    search_job_free(j);
  }
}

static void on_pc_hits(void *ud, int status, const struct mem_hit *hits, size_t n) {
  struct search_job *j = ud;
  if (status == 0) {
    j->pc_hits = xmemdup(hits, (n ? n : 1) * sizeof *hits);
    j->n_pc = n;
  } else {
    log_warn("recall: Pinecone query failed (%s): keyword side only", eg_strerror(status));
  }
  search_run(j);
}

/* The query vector is known (or not): the vector side, then the store. */
static void search_submit(struct search_job *j) {
  struct recall *r = j->r;
  if (r->d.pinecone == NULL) {
    search_run(j);
    return;
  }
  j->use_pc = true; /* never the index, even without a vector */
  if (j->vec == NULL || mem_pinecone_query(r->d.pinecone, j->user, r->d.embedder->model, j->vec,
                                           r->d.embedder->dim, cand_count(j->k, j->n_exclude),
                                           on_pc_hits, j) != 0)
    search_run(j);
}

static void on_query_vec(void *ud, int status, const float *vecs, size_t n, int dim) {
  struct search_job *j = ud;
  if (status == 0 && n == 1 && dim == j->r->d.embedder->dim) {
    j->vec = xmemdup(vecs, (size_t)dim * sizeof *vecs);
    note_success(j->r);
  } else {
    j->r->st.embed_failures++, j->r->failed = true;
    log_warn("recall: query embedding failed (%s): keyword side only", eg_strerror(status));
  }
  search_submit(j);
}

int recall_search(struct recall *r, const char *user_id, const char *query, const float *vec,
                  size_t k, const char *const *exclude, size_t n_exclude, recall_search_cb cb,
                  void *ud) {
  if (!valid_user(user_id) || query == NULL || cb == NULL)
    return EG_EINVAL;
  struct search_job *j = xcalloc(1, sizeof *j);
  j->r = r;
  memcpy(j->user, user_id, ID_LEN + 1);
  j->query = xstrdup(query);
  j->k = k ? k : (r->fuse.k ? r->fuse.k : 3);
  if (j->k > STORE_PAGE_MAX)
    j->k = STORE_PAGE_MAX;
  j->exclude = xcalloc(n_exclude + 1, sizeof *j->exclude);
  for (size_t i = 0; i < n_exclude; i++)
    if (exclude[i])
      j->exclude[j->n_exclude++] = xstrdup(exclude[i]);
  j->cb = cb;
  j->ud = ud;
  if (vec) {
    j->vec = xmemdup(vec, (size_t)r->d.embedder->dim * sizeof *vec);
    search_submit(j);
    return 0;
  }
  size_t len = strlen(query);
  const char *text = query;
  if (len == 0) {
    search_submit(j); /* nothing to embed: the keyword side answers (nothing) */
    return 0;
  }
  int rc = mem_embed(r->d.embedder, &text, &len, 1, MEM_TASK_QUERY, on_query_vec, j);
  if (rc) {
    search_job_free(j);
    return rc;
  }
  return 0;
}

/* ---- remember -------------------------------------------------------------------- */

struct rem_job {
  struct recall *r;
  char user[ID_LEN + 1];
  char id[ID_LEN + 1];
  char chat[ID_LEN + 1]; /* read from the store before a Pinecone upsert */
  char *text;
  int64_t created_at;
  float *vec;
  recall_done_cb cb;
  void *ud;
};

static void rem_job_free(struct rem_job *j) {
  free(j->text);
  free(j->vec);
  free(j);
}

static int rem_work(struct store *s, void *arg) {
  struct rem_job *j = arg;
  struct recall *r = j->r;
  const char *model = r->d.embedder->model;
  int rc = store_memory_set_vector(s, j->id, model, j->vec, (uint32_t)r->d.embedder->dim);
  if (rc)
    return rc;
  if (r->d.pinecone)
    return 0;
  struct mem_row row = {.created_at = j->created_at, .vec = j->vec, .text = j->text};
  memcpy(row.id, j->id, sizeof row.id);
  rc = mem_index_add(r->d.index, j->user, model, &row);
  if (rc == EG_EINVAL) /* the user's index holds another model: reload it next time */
    mem_index_drop(r->d.index, j->user);
  return 0; /* EG_ENOTFOUND: not loaded; the next load reads the vector from the store */
}

static void rem_done(void *arg, int status) {
  struct rem_job *j = arg;
  if (status == 0)
    j->r->st.remembered++;
  else if (status != EG_ENOTFOUND)
    log_warn("recall: storing a vector failed: %s", eg_strerror(status));
  if (j->cb)
    j->cb(j->ud, status);
  rem_job_free(j);
}

static void rem_store(struct rem_job *j) {
  int rc = store_async_run(j->r->d.async, rem_work, rem_done, j);
  if (rc) {
    if (j->cb)
      j->cb(j->ud, rc);
    rem_job_free(j);
  }
}

static void rem_fail(struct rem_job *j, int status) {
  if (j->cb)
    j->cb(j->ud, status);
  rem_job_free(j);
}

/* A vector Pinecone refuses (all zeros: an empty or punctuation-only text). Such memories
   are only recorded in the store: no search can find them by vector anyway. */
static bool zero_vec(const float *v, int dim) {
  for (int i = 0; i < dim; i++)
    if (v[i] != 0.0f)
      return false;
  return true;
}

static void on_rem_upserted(void *ud, int status) {
  struct rem_job *j = ud;
  if (status) {
    /* Not recorded in the store either: the memory stays pending for the backfill. */
    j->r->st.embed_failures++, j->r->failed = true;
    log_warn("recall: Pinecone upsert failed (%s); left for the backfill", eg_strerror(status));
    rem_fail(j, status);
    return;
  }
  note_success(j->r);
  rem_store(j);
}

static int rem_chat_work(struct store *s, void *arg) {
  struct rem_job *j = arg;
  const char *ids[1] = {j->id};
  struct store_memories m = {0};
  int rc = store_memory_get_many(s, j->user, ids, 1, &m);
  if (rc == 0 && m.n == 0)
    rc = EG_ENOTFOUND;
  if (rc == 0)
    memcpy(j->chat, m.v[0].chat_id, sizeof j->chat);
  store_memories_free(&m);
  return rc;
}

static void rem_chat_done(void *arg, int status) {
  struct rem_job *j = arg;
  struct recall *r = j->r;
  if (status) {
    rem_fail(j, status);
    return;
  }
  struct mem_pc_record rec = {.id = j->id,
                              .user = j->user,
                              .chat = j->chat,
                              .text = j->text,
                              .created_at = j->created_at,
                              .vec = j->vec};
  int rc = mem_pinecone_upsert(r->d.pinecone, r->d.embedder->model, &rec, 1, r->d.embedder->dim,
                               on_rem_upserted, j);
  if (rc)
    rem_fail(j, rc);
}

/* The vector is known: with Pinecone, upsert it (with the memory's chat from the store)
   before recording it in the store; else record it and add it to the index. */
static void rem_submit(struct rem_job *j) {
  if (j->r->d.pinecone == NULL || zero_vec(j->vec, j->r->d.embedder->dim)) {
    rem_store(j);
    return;
  }
  int rc = store_async_run(j->r->d.async, rem_chat_work, rem_chat_done, j);
  if (rc)
    rem_fail(j, rc);
}

static void on_doc_vec(void *ud, int status, const float *vecs, size_t n, int dim) {
  struct rem_job *j = ud;
  if (status || n != 1 || dim != j->r->d.embedder->dim) {
    /* The memory stays without a vector: the backfill embeds it later. */
    j->r->st.embed_failures++, j->r->failed = true;
    log_warn("recall: embedding failed (%s); left for the backfill",
             eg_strerror(status ? status : EG_EUPSTREAM));
    if (j->cb)
      j->cb(j->ud, status ? status : EG_EUPSTREAM);
    rem_job_free(j);
    return;
  }
  j->vec = xmemdup(vecs, (size_t)dim * sizeof *vecs);
  if (j->r->d.pinecone == NULL)
    note_success(j->r);
  rem_submit(j);
}

/* The memory's row in the index: text, chat and role now; its vector when known. */
static void index_row(struct recall *r, const struct recall_memory *m, const float *vec) {
  if (r->d.pinecone || r->d.index == NULL)
    return;
  struct mem_row row = {.created_at = m->created_at,
                        .vec = vec,
                        .text = m->text,
                        .chat_id = m->chat_id,
                        .role = role_of(m->role ? m->role : "user")};
  memcpy(row.id, m->id, sizeof row.id);
  if (mem_index_add(r->d.index, m->user_id, r->d.embedder->model, &row) == EG_EINVAL)
    mem_index_drop(r->d.index, m->user_id); /* another model's vectors: reload next time */
}

int recall_remember(struct recall *r, const struct recall_memory *m, recall_done_cb cb,
                    void *ud) {
  if (m == NULL || !valid_user(m->user_id) || m->id == NULL ||
      !id_valid(m->id, strlen(m->id)) || m->text == NULL || (m->vec_stored && !m->vec))
    return EG_EINVAL;
  /* Known to the keyword side at once (the user's index is only touched when loaded). */
  index_row(r, m, m->vec_stored ? m->vec : NULL);
  if (m->vec_stored) {
    r->st.remembered++;
    if (cb)
      cb(ud, 0);
    return 0;
  }
  struct rem_job *j = xcalloc(1, sizeof *j);
  j->r = r;
  memcpy(j->user, m->user_id, ID_LEN + 1);
  memcpy(j->id, m->id, ID_LEN + 1);
  j->text = xstrdup(m->text);
  j->created_at = m->created_at;
  j->cb = cb;
  j->ud = ud;
  if (m->vec) {
    j->vec = xmemdup(m->vec, (size_t)r->d.embedder->dim * sizeof *m->vec);
    rem_submit(j);
    return 0;
  }
  size_t len = strlen(m->text);
  const char *t = m->text;
  int rc = mem_embed(r->d.embedder, &t, &len, 1, MEM_TASK_DOCUMENT, on_doc_vec, j);
  if (rc) {
    rem_job_free(j);
    return rc;
  }
  return 0;
}

/* ---- forget, notes, invalidation ------------------------------------------------- */

struct small_job {
  struct recall *r;
  char user[ID_LEN + 1];
  char id[ID_LEN + 1];
  char *text;
  int64_t created_at;
  size_t count;
  recall_done_cb done_cb;
  recall_count_cb count_cb;
  recall_note_cb note_cb;
  void *ud;
};

static int forget_work(struct store *s, void *arg) {
  struct small_job *j = arg;
  int rc = store_memory_delete(s, j->user, j->id);
  if (rc == 0 && j->r->d.index)
    mem_index_remove(j->r->d.index, j->user, j->id);
  return rc;
}

static void on_pc_forgot(void *ud, int status) {
  struct small_job *j = ud;
  if (status) /* a stray vector is harmless: searches keep only memories in the store */
    log_warn("recall: Pinecone delete failed: %s", eg_strerror(status));
  if (j->done_cb)
    j->done_cb(j->ud, 0);
  if (j->count_cb)
    j->count_cb(j->ud, 0, j->count);
  free(j);
}

static void forget_done(void *arg, int status) {
  struct small_job *j = arg;
  if (status == 0 && j->r->d.pinecone) {
    const char *ids[1] = {j->id};
    if (mem_pinecone_delete(j->r->d.pinecone, ids, 1, on_pc_forgot, j) == 0)
      return;
  }
  if (j->done_cb)
    j->done_cb(j->ud, status);
  free(j);
}

int recall_forget(struct recall *r, const char *user_id, const char *memory_id,
                  recall_done_cb cb, void *ud) {
  if (!valid_user(user_id) || memory_id == NULL || !id_valid(memory_id, strlen(memory_id)))
    return EG_EINVAL;
  struct small_job *j = xcalloc(1, sizeof *j);
  j->r = r;
  memcpy(j->user, user_id, ID_LEN + 1);
  memcpy(j->id, memory_id, ID_LEN + 1);
  j->done_cb = cb;
  j->ud = ud;
  int rc = store_async_run(r->d.async, forget_work, forget_done, j);
  if (rc)
    free(j);
  return rc;
}

static int forget_all_work(struct store *s, void *arg) {
  struct small_job *j = arg;
  int rc = store_memory_delete_all(s, j->user, &j->count);
  if (j->r->d.index)
    mem_index_drop(j->r->d.index, j->user);
  return rc;
}

static void forget_all_done(void *arg, int status) {
  struct small_job *j = arg;
  if (status == 0 && j->r->d.pinecone &&
      mem_pinecone_delete_user(j->r->d.pinecone, j->user, on_pc_forgot, j) == 0)
    return;
  if (j->count_cb)
    j->count_cb(j->ud, status, j->count);
  free(j);
}

int recall_forget_all(struct recall *r, const char *user_id, recall_count_cb cb, void *ud) {
  if (!valid_user(user_id))
    return EG_EINVAL;
  struct small_job *j = xcalloc(1, sizeof *j);
  j->r = r;
  memcpy(j->user, user_id, ID_LEN + 1);
  j->count_cb = cb;
  j->ud = ud;
  int rc = store_async_run(r->d.async, forget_all_work, forget_all_done, j);
  if (rc)
    free(j);
  return rc;
}

static int note_work(struct store *s, void *arg) {
  struct small_job *j = arg;
  struct store_memory m = {0};
  memcpy(m.user_id, j->user, sizeof m.user_id);
  m.text = j->text;
  m.created_at = j->created_at;
  if (j->created_at > 0)
    id_new_at(m.id, (uint32_t)(j->created_at / 1000));
  int rc = store_memory_add(s, &m);
  if (rc == 0) {
    memcpy(j->id, m.id, sizeof j->id);
    j->created_at = m.created_at;
  }
  return rc;
}

static void note_done(void *arg, int status) {
  struct small_job *j = arg;
  if (status == 0) {
    struct recall_memory m = {.user_id = j->user,
                              .id = j->id,
                              .role = "note",
                              .text = j->text,
                              .created_at = j->created_at};
    int rc = recall_remember(j->r, &m, NULL, NULL);
    if (rc)
      log_warn("recall: note not embedded now (%s); left for the backfill", eg_strerror(rc));
  }
  j->note_cb(j->ud, status, status ? NULL : j->id, j->created_at);
  free(j->text);
  free(j);
}

int recall_note(struct recall *r, const char *user_id, const char *text, int64_t created_at,
                recall_note_cb cb, void *ud) {
  if (!valid_user(user_id) || text == NULL || *text == '\0' || cb == NULL)
    return EG_EINVAL;
  struct small_job *j = xcalloc(1, sizeof *j);
  j->r = r;
  memcpy(j->user, user_id, ID_LEN + 1);
  j->text = xstrdup(text);
  j->created_at = created_at;
  j->note_cb = cb;
  j->ud = ud;
  int rc = store_async_run(r->d.async, note_work, note_done, j);
  if (rc) {
    free(j->text);
    free(j);
  }
  return rc;
}

void recall_invalidate(struct recall *r, const char *user_id) {
  if (valid_user(user_id) && r->d.index)
    mem_index_drop(r->d.index, user_id);
}

/* ---- backfill -------------------------------------------------------------------- */

struct fill_job {
  struct recall *r;
  struct store_memories batch;
  float *vecs;
  size_t stored;
};

static void backfill_step(struct recall *r);

static void backfill_end(struct recall *r) {
  r->backfill_running = false;
  if (r->backfill_again) {
    r->backfill_again = false;
    recall_backfill_kick(r);
  }
}

static int fill_store_work(struct store *s, void *arg) {
  struct fill_job *j = arg;
  struct recall *r = j->r;
  int dim = r->d.embedder->dim;
  for (size_t i = 0; i < j->batch.n; i++) {
    const struct store_memory *m = &j->batch.v[i];
    const float *v = j->vecs + i * (size_t)dim;
    if (store_memory_set_vector(s, m->id, r->d.embedder->model, v, (uint32_t)dim) != 0)
      continue;
    j->stored++;
    if (r->d.pinecone)
      continue;
    struct mem_row row = {.created_at = m->created_at,
                          .vec = v,
                          .text = m->text,
                          .chat_id = m->chat_id,
                          .role = role_of(m->role)};
    memcpy(row.id, m->id, sizeof row.id);
    if (mem_index_add(r->d.index, m->user_id, r->d.embedder->model, &row) == EG_EINVAL)
      mem_index_drop(r->d.index, m->user_id);
  }
  return 0;
}

static void fill_job_free(struct fill_job *j) {
  store_memories_free(&j->batch);
  free(j->vecs);
  free(j);
}

static void fill_store_done(void *arg, int status) {
  struct fill_job *j = arg;
  struct recall *r = j->r;
  r->st.backfilled += j->stored;
  if (status == 0 && j->batch.n)
    memcpy(r->backfill_after, j->batch.v[j->batch.n - 1].id, ID_LEN + 1);
  bool more = status == 0 && j->batch.n == r->d.backfill_batch;
  fill_job_free(j);
  if (more)
    backfill_step(r);
  else
    backfill_end(r);
}

static void fill_store(struct fill_job *j) {
  struct recall *r = j->r;
  if (store_async_run(r->d.async, fill_store_work, fill_store_done, j) != 0) {
    fill_job_free(j);
    backfill_end(r);
  }
}

static void on_fill_upserted(void *ud, int status) {
  struct fill_job *j = ud;
  if (status) {
    log_warn("recall: backfill Pinecone upsert failed (%s); will retry later",
             eg_strerror(status));
    struct recall *r = j->r;
    fill_job_free(j);
    backfill_end(r);
    return;
  }
  fill_store(j);
}

static void on_fill_vecs(void *ud, int status, const float *vecs, size_t n, int dim) {
  struct fill_job *j = ud;
  struct recall *r = j->r;
  if (status || n != j->batch.n || dim != r->d.embedder->dim) {
    r->st.embed_failures++, r->failed = true;
    log_warn("recall: backfill embedding failed (%s); will retry later",
             eg_strerror(status ? status : EG_EUPSTREAM));
    fill_job_free(j);
    backfill_end(r);
    return;
  }
  j->vecs = xmemdup(vecs, n * (size_t)dim * sizeof *vecs);
  if (r->d.pinecone) {
    struct mem_pc_record *recs = xcalloc(n, sizeof *recs);
    size_t nr = 0;
    for (size_t i = 0; i < n; i++) {
      const struct store_memory *m = &j->batch.v[i];
      const float *v = j->vecs + i * (size_t)dim;
      if (zero_vec(v, dim))
        continue;
      recs[nr++] = (struct mem_pc_record){.id = m->id,
                                          .user = m->user_id,
                                          .chat = m->chat_id,
                                          .text = m->text,
                                          .created_at = m->created_at,
                                          .vec = v};
    }
    int rc = nr ? mem_pinecone_upsert(r->d.pinecone, r->d.embedder->model, recs, nr, dim,
                                      on_fill_upserted, j)
                : EG_ENOTFOUND;
    free(recs);
    if (rc == 0)
      return;
    if (rc != EG_ENOTFOUND) {
      fill_job_free(j);
      backfill_end(r);
      return;
    }
  }
  fill_store(j);
}

static int fill_load_work(struct store *s, void *arg) {
  struct fill_job *j = arg;
  return store_memory_pending(s, j->r->d.embedder->model, j->r->backfill_after,
                              j->r->d.backfill_batch, &j->batch);
}

static void fill_load_done(void *arg, int status) {
  struct fill_job *j = arg;
  struct recall *r = j->r;
  if (status || j->batch.n == 0) {
    if (status)
      log_warn("recall: backfill could not list pending memories: %s", eg_strerror(status));
    fill_job_free(j);
    backfill_end(r);
    return;
  }
  const char **texts = xcalloc(j->batch.n, sizeof *texts);
  size_t *lens = xcalloc(j->batch.n, sizeof *lens);
  for (size_t i = 0; i < j->batch.n; i++) {
    texts[i] = j->batch.v[i].text ? j->batch.v[i].text : "";
    lens[i] = strlen(texts[i]);
  }
  int rc =
      mem_embed(r->d.embedder, texts, lens, j->batch.n, MEM_TASK_DOCUMENT, on_fill_vecs, j);
  free(texts);
  free(lens);
  if (rc) {
    fill_job_free(j);
    backfill_end(r);
  }
}

static void backfill_step(struct recall *r) {
  struct fill_job *j = xcalloc(1, sizeof *j);
  j->r = r;
  if (store_async_run(r->d.async, fill_load_work, fill_load_done, j) != 0) {
    free(j);
    backfill_end(r);
  }
}

void recall_backfill_kick(struct recall *r) {
  if (r->backfill_running) {
    r->backfill_again = true;
    return;
  }
  r->backfill_running = true;
  r->backfill_after[0] = '\0';
  backfill_step(r);
}
