/*
 * Embedder plumbing and the asynchronous `hash` embedder: a batch is copied, embedded on
 * the libuv thread pool (uv_queue_work) and its callback runs on the loop thread. Freeing
 * the embedder cancels what has not started; batches already running finish on the pool
 * and report EG_ECANCELED; the embedder's memory goes with the last of them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory.h"

int mem_embed(struct mem_embedder *e, const char *const *texts, const size_t *lens, size_t n,
              enum mem_task task, mem_embed_cb cb, void *ud) {
  if (e == NULL || cb == NULL)
    return EG_EINVAL;
  return e->ops->embed(e, texts, lens, n, task, cb, ud);
}

void mem_embedder_free(struct mem_embedder *e) {
  if (e != NULL)
    e->ops->destroy(e);
}

struct hash_embedder {
  struct mem_embedder base;
  size_t pending;
  bool destroyed;
};

struct hash_job {
  uv_work_t work;
  struct hash_embedder *he;
  char **texts;
  size_t *lens;
  size_t n;
  float *vecs;
  mem_embed_cb cb;
  void *ud;
};

static void hash_work(uv_work_t *w) {
  struct hash_job *j = EG_CONTAINER_OF(w, struct hash_job, work);
  for (size_t i = 0; i < j->n; i++)
    mem_hash_embed(j->texts[i], j->lens[i], j->vecs + i * MEM_DIM);
}

static void hash_after(uv_work_t *w, int status) {
  struct hash_job *j = EG_CONTAINER_OF(w, struct hash_job, work);
  struct hash_embedder *he = j->he;
  if (status != 0 || he->destroyed)
    j->cb(j->ud, EG_ECANCELED, NULL, 0, MEM_DIM);
  else
    j->cb(j->ud, 0, j->vecs, j->n, MEM_DIM);
  for (size_t i = 0; i < j->n; i++)
    free(j->texts[i]);
  free(j->texts);
  free(j->lens);
  free(j->vecs);
  free(j);
  if (--he->pending == 0 && he->destroyed)
    free(he);
}

static int hash_embed(struct mem_embedder *e, const char *const *texts, const size_t *lens,
                      size_t n, enum mem_task task, mem_embed_cb cb, void *ud) {
  (void)task;
  struct hash_embedder *he = (struct hash_embedder *)e;
  if (n == 0 || texts == NULL || lens == NULL || he->destroyed)
    return EG_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (texts[i] == NULL)
      return EG_EINVAL;
  struct hash_job *j = xcalloc(1, sizeof(*j));
  j->he = he;
  j->n = n;
  j->cb = cb;
  j->ud = ud;
  j->texts = xmalloc(n * sizeof(char *));
  j->lens = xmalloc(n * sizeof(size_t));
  j->vecs = xmalloc(n * MEM_DIM * sizeof(float));
  for (size_t i = 0; i < n; i++) {
    size_t l = EG_MIN(lens[i], (size_t)MEM_EMBED_MAX_TEXT);
    j->texts[i] = xmemdup(texts[i], l ? l : 1);
    j->lens[i] = l;
  }
  int rc = uv_queue_work(e->loop, &j->work, hash_work, hash_after);
  if (rc != 0) {
    for (size_t i = 0; i < n; i++)
      free(j->texts[i]);
    free(j->texts);
    free(j->lens);
    free(j->vecs);
    free(j);
    return EG_EINTERNAL;
  }
  he->pending++;
  return 0;
}

static void hash_destroy(struct mem_embedder *e) {
  struct hash_embedder *he = (struct hash_embedder *)e;
  he->destroyed = true;
  if (he->pending == 0)
    free(he);
  /* Pending jobs: uv_cancel is best effort; cancelled or not, hash_after reports
     EG_ECANCELED and frees the embedder after the last one. */
}

static const struct mem_embedder_ops hash_ops = {hash_embed, hash_destroy};

struct mem_embedder *mem_embedder_hash_new(uv_loop_t *loop) {
  struct hash_embedder *he = xcalloc(1, sizeof(*he));
  he->base.ops = &hash_ops;
  he->base.loop = loop;
  snprintf(he->base.name, sizeof(he->base.name), "hash");
  snprintf(he->base.model, sizeof(he->base.model), "%s", MEM_HASH_MODEL);
  he->base.dim = MEM_DIM;
  return &he->base;
}
