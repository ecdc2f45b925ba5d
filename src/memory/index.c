/*
 * The builtin vector index: one struct uix per loaded user, holding that user's memories
 * of one embedding model as compact rows (structure of arrays):
 *
 *   q[n * dim]   int8 vectors, v ~= q * scale (per-row scale, max-abs / 127)
 *   scale[n]     float
 *   id[n][12]    message ids in binary (24 hex chars -> 12 bytes)
 *   created[n]   creation time, wall-clock ms
 *   slots[m]     open-addressing map id -> row + 1 (m a power of two >= 2n, linear
 *                probing, backward-shift deletion)
 *
 * That is dim + 24 bytes per memory plus about 8 bytes of map: 800 B at 768 dimensions.
 *
 * Search: the query is quantised to int8 too; an exact int8 scan (AVX2 madd) keeps the
 * best C = max(4k, 32) rows in a min-heap, which are then re-scored with the float query
 * against the int8 rows (asymmetric, no query quantisation error) and the best k returned.
 *
 * Locking: ix->mu guards the user table, the LRU list, refcounts and the byte total. Each
 * uix has a rwlock for its rows. A uix leaves the table on eviction/drop/reload and is
 * freed when its last reference goes, so a search running on it is never cut short.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory.h"

#define NBUCKETS 1024
#define ID_BYTES 12
#define SCAN_BLOCK 64 /* rows scored per kernel call */
#ifndef CCAP
#define CCAP 32 /* least number of int8 candidates re-scored with the float query */
#endif

struct uix {
  struct uix *next;             /* bucket chain */
  struct uix *lru_prev, *lru_next; /* most recent at ix->lru_head */
  char *user;
  char model[MEM_MODEL_MAX];
  pthread_rwlock_t lock;
  int refs;     /* under ix->mu: table membership counts as one */
  bool in_table;
  size_t n, cap;
  int8_t *q;
  float *scale;
  uint8_t (*id)[ID_BYTES];
  int64_t *created;
  uint32_t *slots; /* row + 1, 0 = empty */
  size_t nslots;
  size_t bytes; /* accounted in ix->bytes (under ix->mu) */
};

struct mem_index {
  int dim;
  size_t budget;
  pthread_mutex_t mu;
  struct uix *buckets[NBUCKETS];
  struct uix *lru_head, *lru_tail;
  size_t users;
  size_t rows;
  size_t bytes;
  uint64_t evictions;
};

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static size_t str_hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; *s; s++) {
    h ^= (uint8_t)*s;
    h *= 0x100000001b3ULL;
  }
  return (size_t)(mix64(h) % NBUCKETS);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

static bool id_to_bin(const char *s, uint8_t out[ID_BYTES]) {
  if (s == NULL || strnlen(s, ID_LEN + 1) != ID_LEN || !id_valid(s, ID_LEN))
    return false;
  for (int i = 0; i < ID_BYTES; i++)
    out[i] = (uint8_t)(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
  return true;
}

static void bin_to_id(const uint8_t b[ID_BYTES], char out[ID_LEN + 1]) {
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < ID_BYTES; i++) {
    out[2 * i] = hx[b[i] >> 4];
    out[2 * i + 1] = hx[b[i] & 15];
  }
  out[ID_LEN] = 0;
}

static uint64_t id_hash(const uint8_t b[ID_BYTES]) {
  uint64_t x;
  uint32_t y;
  memcpy(&x, b, 8);
  memcpy(&y, b + 8, 4);
  return mix64(x ^ ((uint64_t)y << 17) ^ y);
}

/* ---- per-user rows ------------------------------------------------------------------- */

static size_t uix_bytes(const struct uix *u, int dim) {
  return u->cap * ((size_t)dim + sizeof(float) + ID_BYTES + sizeof(int64_t)) +
         u->nslots * sizeof(uint32_t);
}

static struct uix *uix_new(const char *user, const char *model) {
  struct uix *u = xcalloc(1, sizeof(*u));
  u->user = xstrdup(user);
  snprintf(u->model, sizeof(u->model), "%s", model);
  pthread_rwlock_init(&u->lock, NULL);
  return u;
}

static void uix_free(struct uix *u) {
  pthread_rwlock_destroy(&u->lock);
  free(u->user);
  free(u->q);
  free(u->scale);
  free(u->id);
  free(u->created);
  free(u->slots);
  free(u);
}

static void uix_reserve(struct uix *u, size_t cap, int dim) {
  if (cap <= u->cap)
    return;
  u->q = xrealloc(u->q, cap * (size_t)dim);
  u->scale = xrealloc(u->scale, cap * sizeof(float));
  u->id = xrealloc(u->id, cap * ID_BYTES);
  u->created = xrealloc(u->created, cap * sizeof(int64_t));
  u->cap = cap;
}

static void slots_rebuild(struct uix *u, size_t want) {
  size_t m = 16;
  while (m < want * 2)
    m *= 2;
  free(u->slots);
  u->slots = xcalloc(m, sizeof(uint32_t));
  u->nslots = m;
  for (size_t r = 0; r < u->n; r++) {
    size_t i = (size_t)id_hash(u->id[r]) & (m - 1);
    while (u->slots[i] != 0)
      i = (i + 1) & (m - 1);
    u->slots[i] = (uint32_t)(r + 1);
  }
}

/* Returns the slot holding id, or the empty slot where it would go. */
static size_t slot_find(const struct uix *u, const uint8_t id[ID_BYTES]) {
  size_t mask = u->nslots - 1;
  size_t i = (size_t)id_hash(id) & mask;
  while (u->slots[i] != 0 && memcmp(u->id[u->slots[i] - 1], id, ID_BYTES) != 0)
    i = (i + 1) & mask;
  return i;
}

static void slot_delete(struct uix *u, size_t i) {
  size_t mask = u->nslots - 1;
  u->slots[i] = 0;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (u->slots[j] == 0)
      return;
    size_t home = (size_t)id_hash(u->id[u->slots[j] - 1]) & mask;
    /* Move j back to i when its home is not cyclically in (i, j]. */
    bool in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!in_range) {
      u->slots[i] = u->slots[j];
      u->slots[j] = 0;
      i = j;
    }
  }
}

static void row_set(struct uix *u, size_t r, int dim, const uint8_t id[ID_BYTES],
                    const struct mem_row *row) {
  u->scale[r] = mem_quantize_i8(row->vec, (size_t)dim, u->q + r * (size_t)dim);
  memcpy(u->id[r], id, ID_BYTES);
  u->created[r] = row->created_at;
}

/* ---- table and LRU (under ix->mu) ------------------------------------------------------ */

static void lru_unlink(struct mem_index *ix, struct uix *u) {
  if (u->lru_prev)
    u->lru_prev->lru_next = u->lru_next;
  else
    ix->lru_head = u->lru_next;
  if (u->lru_next)
    u->lru_next->lru_prev = u->lru_prev;
  else
    ix->lru_tail = u->lru_prev;
  u->lru_prev = u->lru_next = NULL;
}

static void lru_push_front(struct mem_index *ix, struct uix *u) {
  u->lru_prev = NULL;
  u->lru_next = ix->lru_head;
  if (ix->lru_head)
    ix->lru_head->lru_prev = u;
  ix->lru_head = u;
  if (ix->lru_tail == NULL)
    ix->lru_tail = u;
}

static struct uix *table_find(struct mem_index *ix, const char *user) {
  for (struct uix *u = ix->buckets[str_hash(user)]; u; u = u->next)
    if (strcmp(u->user, user) == 0)
      return u;
  return NULL;
}

static void unref_locked(struct uix *u) {
  if (--u->refs == 0)
    uix_free(u);
}

/* Takes u out of the table (its table reference goes). */
static void table_remove(struct mem_index *ix, struct uix *u) {
  struct uix **pp = &ix->buckets[str_hash(u->user)];
  while (*pp != u)
    pp = &(*pp)->next;
  *pp = u->next;
  u->next = NULL;
  lru_unlink(ix, u);
  u->in_table = false;
  ix->users--;
  ix->rows -= u->n;
  ix->bytes -= u->bytes;
  u->bytes = 0;
  unref_locked(u);
}

static void evict_over_budget(struct mem_index *ix, const struct uix *keep) {
  if (ix->budget == 0)
    return;
  struct uix *u = ix->lru_tail;
  while (ix->bytes > ix->budget && u != NULL) {
    struct uix *prev = u->lru_prev;
    if (u != keep) {
      table_remove(ix, u);
      ix->evictions++;
    }
    u = prev;
  }
}

/* Looks user up, marks it recently used and takes a reference (NULL when absent). */
static struct uix *acquire(struct mem_index *ix, const char *user) {
  pthread_mutex_lock(&ix->mu);
  struct uix *u = table_find(ix, user);
  if (u != NULL) {
    u->refs++;
    lru_unlink(ix, u);
    lru_push_front(ix, u);
  }
  pthread_mutex_unlock(&ix->mu);
  return u;
}

/* Drops a reference; when u is still in the table, re-accounts its size and rows. */
static void release(struct mem_index *ix, struct uix *u, size_t old_n, size_t new_bytes) {
  pthread_mutex_lock(&ix->mu);
  if (u->in_table) {
    ix->rows = ix->rows - old_n + u->n;
    ix->bytes = ix->bytes - u->bytes + new_bytes;
    u->bytes = new_bytes;
    evict_over_budget(ix, u);
  }
  unref_locked(u);
  pthread_mutex_unlock(&ix->mu);
}

/* ---- API ------------------------------------------------------------------------------ */

struct mem_index *mem_index_new(int dim, size_t budget_bytes) {
  if (dim <= 0)
    return NULL;
  struct mem_index *ix = xcalloc(1, sizeof(*ix));
  ix->dim = dim;
  ix->budget = budget_bytes;
  pthread_mutex_init(&ix->mu, NULL);
  return ix;
}

void mem_index_free(struct mem_index *ix) {
  if (ix == NULL)
    return;
  pthread_mutex_lock(&ix->mu);
  while (ix->lru_head != NULL)
    table_remove(ix, ix->lru_head);
  pthread_mutex_unlock(&ix->mu);
  pthread_mutex_destroy(&ix->mu);
  free(ix);
}

static bool valid_name(const char *s, size_t max) {
  return s != NULL && s[0] != 0 && strnlen(s, max) < max;
}

int mem_index_load(struct mem_index *ix, const char *user, const char *model,
                   const struct mem_row *rows, size_t n) {
  if (!valid_name(user, 256) || !valid_name(model, MEM_MODEL_MAX) || (n > 0 && rows == NULL))
    return EG_EINVAL;
  if (n >= UINT32_MAX / 2)
    return EG_ETOOBIG;
  struct uix *u = uix_new(user, model);
  uix_reserve(u, n ? n : 1, ix->dim);
  slots_rebuild(u, n);
  for (size_t i = 0; i < n; i++) {
    uint8_t id[ID_BYTES];
    if (rows[i].vec == NULL || !id_to_bin(rows[i].id, id))
      continue;
    size_t s = slot_find(u, id);
    size_t r;
    if (u->slots[s] != 0) {
      r = u->slots[s] - 1; /* duplicate id: the later row wins */
    } else {
      r = u->n++;
      u->slots[s] = (uint32_t)(r + 1);
    }
    row_set(u, r, ix->dim, id, &rows[i]);
  }
  u->refs = 1;
  u->in_table = true;
  u->bytes = uix_bytes(u, ix->dim);
  pthread_mutex_lock(&ix->mu);
  struct uix *old = table_find(ix, user);
  if (old != NULL)
    table_remove(ix, old);
  size_t b = str_hash(user);
  u->next = ix->buckets[b];
  ix->buckets[b] = u;
  lru_push_front(ix, u);
  ix->users++;
  ix->rows += u->n;
  ix->bytes += u->bytes;
  evict_over_budget(ix, u);
  pthread_mutex_unlock(&ix->mu);
  return 0;
}

bool mem_index_loaded(struct mem_index *ix, const char *user) {
  if (!valid_name(user, 256))
    return false;
  struct uix *u = acquire(ix, user);
  if (u == NULL)
    return false;
  pthread_mutex_lock(&ix->mu);
  unref_locked(u);
  pthread_mutex_unlock(&ix->mu);
  return true;
}

int mem_index_add(struct mem_index *ix, const char *user, const char *model,
                  const struct mem_row *row) {
  uint8_t id[ID_BYTES];
  if (!valid_name(user, 256) || !valid_name(model, MEM_MODEL_MAX) || row == NULL ||
      row->vec == NULL || !id_to_bin(row->id, id))
    return EG_EINVAL;
  struct uix *u = acquire(ix, user);
  if (u == NULL)
    return EG_ENOTFOUND;
  int rc = 0;
  pthread_rwlock_wrlock(&u->lock);
  size_t old_n = u->n;
  if (strcmp(u->model, model) != 0) {
    rc = EG_EINVAL;
    goto out;
  }
  if (u->n + 1 >= UINT32_MAX / 2) {
    rc = EG_ETOOBIG;
    goto out;
  }
  size_t s = slot_find(u, id);
  if (u->slots[s] != 0) {
    row_set(u, u->slots[s] - 1, ix->dim, id, row);
    goto out;
  }
  if (u->n == u->cap)
    uix_reserve(u, u->cap + u->cap / 2 + 16, ix->dim);
  size_t r = u->n++;
  row_set(u, r, ix->dim, id, row);
  if (u->n * 2 > u->nslots) {
    slots_rebuild(u, u->n * 2);
  } else {
    u->slots[s] = (uint32_t)(r + 1);
  }
out:;
  size_t nb = uix_bytes(u, ix->dim);
  pthread_rwlock_unlock(&u->lock);
  release(ix, u, old_n, nb);
  return rc;
}

int mem_index_remove(struct mem_index *ix, const char *user, const char *id_hex) {
  uint8_t id[ID_BYTES];
  if (!valid_name(user, 256) || !id_to_bin(id_hex, id))
    return EG_ENOTFOUND;
  struct uix *u = acquire(ix, user);
  if (u == NULL)
    return EG_ENOTFOUND;
  int rc = 0;
  pthread_rwlock_wrlock(&u->lock);
  size_t old_n = u->n;
  size_t s = slot_find(u, id);
  if (u->slots[s] == 0) {
    rc = EG_ENOTFOUND;
  } else {
    size_t r = u->slots[s] - 1;
    size_t last = u->n - 1;
    slot_delete(u, s);
    if (r != last) {
      /* Move the last row into the hole and repoint its slot. */
      size_t ls = slot_find(u, u->id[last]);
      memcpy(u->q + r * (size_t)ix->dim, u->q + last * (size_t)ix->dim, (size_t)ix->dim);
      u->scale[r] = u->scale[last];
      memcpy(u->id[r], u->id[last], ID_BYTES);
      u->created[r] = u->created[last];
      u->slots[ls] = (uint32_t)(r + 1);
    }
    u->n--;
  }
  size_t nb = uix_bytes(u, ix->dim);
  pthread_rwlock_unlock(&u->lock);
  release(ix, u, old_n, nb);
  return rc;
}

void mem_index_drop(struct mem_index *ix, const char *user) {
  if (!valid_name(user, 256))
    return;
  pthread_mutex_lock(&ix->mu);
  struct uix *u = table_find(ix, user);
  if (u != NULL)
    table_remove(ix, u);
  pthread_mutex_unlock(&ix->mu);
}

/* Min-heap of (score, row) on score; the root is the weakest kept candidate. */
struct cand {
  float s;
  uint32_t r;
};

static void heap_sift_down(struct cand *h, size_t n, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    if (l < n && h[l].s < h[m].s)
      m = l;
    if (l + 1 < n && h[l + 1].s < h[m].s)
      m = l + 1;
    if (m == i)
      return;
    struct cand t = h[i];
    h[i] = h[m];
    h[m] = t;
    i = m;
  }
}

static void heap_push(struct cand *h, size_t *n, size_t cap, struct cand c) {
  if (*n < cap) {
    size_t i = (*n)++;
    h[i] = c;
    while (i > 0) {
      size_t p = (i - 1) / 2;
      if (h[p].s <= h[i].s)
        break;
      struct cand t = h[p];
      h[p] = h[i];
      h[i] = t;
      i = p;
    }
  } else if (c.s > h[0].s) {
    h[0] = c;
    heap_sift_down(h, cap, 0);
  }
}

struct rescored {
  float s;
  int64_t created;
  uint32_t r;
};

static int cmp_rescored(const void *a, const void *b) {
  const struct rescored *x = a, *y = b;
  if (x->s != y->s)
    return x->s > y->s ? -1 : 1;
  if (x->created != y->created)
    return x->created > y->created ? -1 : 1;
  return x->r < y->r ? -1 : x->r > y->r;
}

int mem_index_search(struct mem_index *ix, const char *user, const char *model,
                     const float *query, size_t k, const char *const *exclude,
                     size_t n_exclude, struct mem_hit *out, size_t *n_out) {
  *n_out = 0;
  if (!valid_name(user, 256) || model == NULL || query == NULL || k < 1)
    return EG_EINVAL;
  struct uix *u = acquire(ix, user);
  if (u == NULL)
    return EG_ENOTFOUND;
  int rc = 0;
  size_t dim = (size_t)ix->dim;
  int8_t *qq = xmalloc(dim);
  float qscale = mem_quantize_i8(query, dim, qq);
  uint8_t(*ex)[ID_BYTES] = n_exclude ? xmalloc(n_exclude * ID_BYTES) : NULL;
  size_t nex = 0;
  for (size_t i = 0; i < n_exclude; i++)
    if (id_to_bin(exclude[i], ex[nex]))
      nex++;
  size_t ccap = EG_MAX(4 * k, (size_t)CCAP);
  struct cand *heap = xmalloc(ccap * sizeof(*heap));
  size_t hn = 0;
  bool avx2 = mem_simd_avx2();

  pthread_rwlock_rdlock(&u->lock);
  if (strcmp(u->model, model) != 0) {
    rc = EG_EINVAL;
    goto unlock;
  }
  int32_t dots[SCAN_BLOCK];
  for (size_t r = 0; r < u->n; r++) {
    size_t b = r % SCAN_BLOCK;
    if (b == 0) {
      size_t nb = EG_MIN((size_t)SCAN_BLOCK, u->n - r);
      if (avx2)
        mem__scan_i8_avx2(qq, u->q + r * dim, nb, dim, dots);
      else
        mem__scan_i8_scalar(qq, u->q + r * dim, nb, dim, dots);
    }
    float s = (float)dots[b] * u->scale[r];
    if (hn == ccap && !(s > heap[0].s))
      continue;
    bool skip = false;
    for (size_t e = 0; e < nex; e++) {
      if (memcmp(u->id[r], ex[e], ID_BYTES) == 0) {
        skip = true;
        break;
      }
    }
    if (!skip)
      heap_push(heap, &hn, ccap, (struct cand){s, (uint32_t)r});
  }
  (void)qscale;
  struct rescored *rs = xmalloc((hn ? hn : 1) * sizeof(*rs));
  for (size_t i = 0; i < hn; i++) {
    size_t r = heap[i].r;
    const int8_t *row = u->q + r * dim;
    float d = avx2 ? mem__dot_f32_i8_avx2(query, row, dim)
                   : mem__dot_f32_i8_scalar(query, row, dim);
    rs[i] = (struct rescored){d * u->scale[r], u->created[r], (uint32_t)r};
  }
  qsort(rs, hn, sizeof(*rs), cmp_rescored);
  size_t m = EG_MIN(k, hn);
  for (size_t i = 0; i < m; i++) {
    bin_to_id(u->id[rs[i].r], out[i].id);
    out[i].created_at = rs[i].created;
    out[i].score = rs[i].s;
  }
  *n_out = m;
  free(rs);
unlock:
  pthread_rwlock_unlock(&u->lock);
  pthread_mutex_lock(&ix->mu);
  unref_locked(u);
  pthread_mutex_unlock(&ix->mu);
  free(heap);
  free(ex);
  free(qq);
  return rc;
}

void mem_index_stats(struct mem_index *ix, struct mem_index_stats *st) {
  pthread_mutex_lock(&ix->mu);
  st->users = ix->users;
  st->rows = ix->rows;
  st->bytes = ix->bytes;
  st->budget = ix->budget;
  st->evictions = ix->evictions;
  pthread_mutex_unlock(&ix->mu);
}
