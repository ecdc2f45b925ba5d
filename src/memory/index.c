/*
 * The builtin memory index: one struct uix per loaded user, holding that user's memories
 * (all of them: the vector side only sees those with a vector of the user's model) as
 * compact rows (structure of arrays):
 *
 *   q            int8 vectors, v ~= q * scale (per-row scale, max-abs / 127), by columns
 *                of 4 dimensions (memory.h "quads"), cap rows each: a query reads only the
 *                columns where it is not zero (the hash embedder's queries: about 20 of
 *                192), each sequentially; a dense query all of them
 *   scale[n]     float
 *   id[n][12]    message ids in binary (24 hex chars -> 12 bytes)
 *   created[n]   creation time, wall-clock ms
 *   flags[n]     F_VEC (has a vector), F_DEAD (removed: a tombstone until the next load),
 *                F_DENSE (in drow)
 *   role[n], chat[n][12], toff/tlen[n] (text in the arena), dl[n] (terms, for BM25)
 *   prev/next[n] the memories before and after it in its chat (NO_ROW at the ends)
 *   slots[m]     open-addressing map id -> row + 1 (m a power of two >= 2n, linear
 *                probing, backward-shift deletion)
 *   vl[dim]      from SPARSE_MIN_ROWS rows: per dimension, the rows of the sparse vectors
 *                (at most dim / 8 nonzero values) with a nonzero value there, and the
 *                values; drow[] the rows with denser vectors; sp_*: the same values by
 *                row (dimensions ascending), for re-scoring the candidates
 *
 * The keyword side: an inverted index of the users's own memories: term hash (mem_terms)
 * -> postings (row, tf), scored with BM25 over this user's statistics. Postings of removed
 * rows stay (skipped) until the user is reloaded; the user is dropped for a reload once
 * tombstones outnumber the live rows.
 *
 * Vector search: the query is quantised to int8 too; an exact int8 dot product of every row
 * with it (the quads with short dimension lists summed from the lists, the others from the
 * columns, AVX2 madd, 32 rows in registers) keeps the best C = max(2k, 32) rows by (int8
 * score, then row), which are then re-scored with the float query (its nonzero dimensions)
 * against the int8 rows (asymmetric, no query quantisation error). Searches use per-thread
 * scratch buffers, not allocations of the user's size.
 *
 * Locking: ix->mu guards the user table, the LRU list, refcounts and the byte total. Each
 * uix has a rwlock for its rows. A uix leaves the table on eviction/drop/reload and is
 * freed when its last reference goes, so a search running on it is never cut short.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory.h"

#define NBUCKETS 1024
#define ID_BYTES 12
#define NO_ROW UINT32_MAX
#define F_VEC 1
#define F_DEAD 2
#define F_DENSE 4          /* its vector is too dense for the dimension lists: in drow */
#define DOC_TERMS_MAX 4096 /* terms of one memory indexed */
#define QUERY_TERMS_MAX 64 /* terms of a query used */
#define BM25_K1 1.2f
#define BM25_B 0.75f
#ifndef CCAP
#define CCAP 32 /* least number of int8 candidates re-scored with the float query */
#endif

struct plist { /* the postings of one term */
  uint64_t h;
  uint32_t n, cap;
  uint32_t *row;
  uint16_t *tf;
};

struct vlist { /* the rows with a nonzero int8 value in one dimension, and the values */
  uint32_t n, cap;
  uint32_t *row;
  int8_t *val;
};

struct cslot { /* chat -> its newest row */
  uint64_t h;
  uint32_t row; /* NO_ROW = empty */
};

struct uix {
  struct uix *next;                /* bucket chain */
  struct uix *lru_prev, *lru_next; /* most recent at ix->lru_head */
  char *user;
  char model[MEM_MODEL_MAX];
  pthread_rwlock_t lock;
  int refs; /* under ix->mu: table membership counts as one */
  bool in_table;
  size_t n, cap;
  int8_t *q;
  float *scale;
  uint8_t (*id)[ID_BYTES];
  int64_t *created;
  uint8_t *flags, *role;
  uint8_t (*chat)[ID_BYTES];
  uint32_t *toff, *tlen, *prev, *next_in_chat;
  uint16_t *dl;
  char *arena;
  size_t alen, acap;
  uint32_t *slots; /* row + 1, 0 = empty */
  size_t nslots;
  struct plist *pl;
  size_t npl, capl;
  uint32_t *tslots; /* term -> pl index + 1, 0 = empty */
  size_t ntslots;
  struct cslot *cslots;
  size_t ncslots, ncs;
  struct vlist *vl; /* dim lists (NULL until the first vector): the sparse rows' values */
  size_t nvl;       /* dim once vl is there */
  size_t vpostings; /* sum of the lists' caps */
  uint32_t *drow;   /* the rows with a vector too dense for the lists */
  size_t ndrow, cdrow;
  /* With the lists: each sparse row's nonzero values again, by row (dimensions ascending),
     sp_dim/sp_val[sp_off[r] .. + sp_n[r]), for the re-scoring of the candidates (a few
     cache lines per row instead of one per nonzero dimension in the columns). Entries of
     replaced vectors stay until the next load or compaction. */
  uint32_t *sp_off;
  uint16_t *sp_n;
  uint16_t *sp_dim;
  int8_t *sp_val;
  size_t sp_len, sp_cap;
  uint64_t total_dl;
  size_t live, dead, postings;
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

/* 1 + the value of a lowercase hex digit, 0 for any other byte (id_valid's alphabet). */
static const uint8_t hexval1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,
    ['6'] = 7,  ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12,
    ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16};

/* A valid id (id_valid: 24 lowercase hex digits, then the NUL) in binary. */
static bool id_to_bin(const char *s, uint8_t out[ID_BYTES]) {
  if (s == NULL)
    return false;
  for (int i = 0; i < ID_BYTES; i++) {
    int hi = hexval1[(uint8_t)s[2 * i]];
    if (hi == 0)
      return false; /* (a NUL too: nothing past it is read) */
    int lo = hexval1[(uint8_t)s[2 * i + 1]];
    if (lo == 0)
      return false;
    out[i] = (uint8_t)((hi - 1) << 4 | (lo - 1));
  }
  return s[ID_LEN] == '\0';
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

#define ROW_EXTRA (2 + ID_BYTES + 4 * sizeof(uint32_t) + sizeof(uint16_t))

static size_t dim4(int dim) {
  return ((size_t)dim + 3) & ~(size_t)3;
}

static size_t uix_bytes(const struct uix *u, int dim) {
  return u->cap * dim4(dim) +
         u->cap * (sizeof(float) + ID_BYTES + sizeof(int64_t) + ROW_EXTRA) +
         u->nslots * sizeof(uint32_t) + u->acap + u->capl * sizeof(struct plist) +
         u->postings * (sizeof(uint32_t) + sizeof(uint16_t)) + u->ntslots * sizeof(uint32_t) +
         u->ncslots * sizeof(struct cslot) + u->nvl * sizeof(struct vlist) +
         u->vpostings * (sizeof(uint32_t) + 1) + u->cdrow * sizeof(uint32_t) +
         (u->sp_off ? u->cap * (sizeof(uint32_t) + sizeof(uint16_t)) : 0) +
         u->sp_cap * (sizeof(uint16_t) + 1);
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
  free(u->flags);
  free(u->role);
  free(u->chat);
  free(u->toff);
  free(u->tlen);
  free(u->prev);
  free(u->next_in_chat);
  free(u->dl);
  free(u->arena);
  free(u->slots);
  for (size_t i = 0; i < u->npl; i++) {
    free(u->pl[i].row);
    free(u->pl[i].tf);
  }
  free(u->pl);
  free(u->tslots);
  free(u->cslots);
  free(u->drow);
  free(u->sp_off);
  free(u->sp_n);
  free(u->sp_dim);
  free(u->sp_val);
  for (size_t d = 0; d < u->nvl; d++) {
    free(u->vl[d].row);
    free(u->vl[d].val);
  }
  free(u->vl);
  free(u);
}

static void uix_reserve(struct uix *u, size_t cap, int dim) {
  if (cap <= u->cap)
    return;
  /* Column i moves from u->q + i * 4 * u->cap to q + i * 4 * cap; rows past n are 0. */
  size_t nquads = dim4(dim) / 4;
  int8_t *q = xcalloc(nquads * cap, 4);
  for (size_t i = 0; i < nquads && u->q; i++)
    memcpy(q + i * 4 * cap, u->q + i * 4 * u->cap, 4 * u->n);
  free(u->q);
  u->q = q;
  u->scale = xrealloc(u->scale, cap * sizeof(float));
  u->id = xrealloc(u->id, cap * ID_BYTES);
  u->created = xrealloc(u->created, cap * sizeof(int64_t));
  u->flags = xrealloc(u->flags, cap);
  u->role = xrealloc(u->role, cap);
  u->chat = xrealloc(u->chat, cap * ID_BYTES);
  u->toff = xrealloc(u->toff, cap * sizeof(uint32_t));
  u->tlen = xrealloc(u->tlen, cap * sizeof(uint32_t));
  u->prev = xrealloc(u->prev, cap * sizeof(uint32_t));
  u->next_in_chat = xrealloc(u->next_in_chat, cap * sizeof(uint32_t));
  u->dl = xrealloc(u->dl, cap * sizeof(uint16_t));
  if (u->sp_off) {
    u->sp_off = xrealloc(u->sp_off, cap * sizeof(uint32_t));
    u->sp_n = xrealloc(u->sp_n, cap * sizeof(uint16_t));
  }
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
    if (u->flags[r] & F_DEAD)
      continue;
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

/* Row r's int8 values (dim4(dim) of them, zero padded) to and from the columns. */
static void q_put(struct uix *u, size_t r, int dim, const int8_t *v) {
  for (size_t i = 0; i < dim4(dim) / 4; i++)
    memcpy(u->q + i * 4 * u->cap + 4 * r, v + 4 * i, 4);
}

static void q_get(const struct uix *u, size_t r, int dim, int8_t *v) {
  for (size_t i = 0; i < dim4(dim) / 4; i++)
    memcpy(v + 4 * i, u->q + i * 4 * u->cap + 4 * r, 4);
}

static int8_t q_at(const struct uix *u, size_t r, size_t d) {
  return u->q[(d / 4) * 4 * u->cap + 4 * r + d % 4];
}

/* -- the sparse side of the vectors: per dimension, the rows with a nonzero value there --
   A row with at most SPARSE_NNZ(dim) nonzero values (the hash embedder's: about 20 of
   768) is in the lists of its dimensions; a denser one is in drow. A sparse query then
   adds up only the lists of its own nonzero dimensions (vec_search_sparse). Removed rows
   stay in the lists (skipped, as in the scan) until the next load or compaction. */
#define SPARSE_NNZ(dim) ((size_t)(dim) / 8)
#define SPARSE_MIN_ROWS 1024
#define QUADS_PASS 8 /* column quads summed per pass over the rows (more: slower) */
#ifndef SPARSE_GAIN
#define SPARSE_GAIN 4 /* the lists when their postings are under 1/4 of the column bytes */
#endif

static size_t nnz_i8(const int8_t *v, int dim) {
  size_t n = 0;
  for (int d = 0; d < dim; d++)
    n += v[d] != 0;
  return n;
}

static void vpost_add(struct uix *u, size_t r, int dim, const int8_t *v) {
  size_t nnz = nnz_i8(v, dim);
  if (nnz > SPARSE_NNZ(dim)) {
    if (u->ndrow == u->cdrow) {
      u->cdrow = u->cdrow ? 2 * u->cdrow : 16;
      u->drow = xrealloc(u->drow, u->cdrow * sizeof(*u->drow));
    }
    u->drow[u->ndrow++] = (uint32_t)r;
    u->flags[r] |= F_DENSE;
    return;
  }
  bool by_row = dim <= UINT16_MAX + 1; /* (dimension numbers as uint16) */
  if (by_row && u->sp_off == NULL) {
    u->sp_off = xcalloc(u->cap, sizeof(uint32_t));
    u->sp_n = xcalloc(u->cap, sizeof(uint16_t));
  }
  if (by_row && u->sp_len + nnz > u->sp_cap) {
    size_t cap = u->sp_cap ? u->sp_cap : 4096;
    while (cap < u->sp_len + nnz)
      cap *= 2;
    u->sp_dim = xrealloc(u->sp_dim, cap * sizeof(uint16_t));
    u->sp_val = xrealloc(u->sp_val, cap);
    u->sp_cap = cap;
  }
  if (by_row) {
    u->sp_off[r] = (uint32_t)u->sp_len;
    u->sp_n[r] = (uint16_t)nnz;
  }
  for (int d = 0; d < dim; d++) {
    if (v[d] == 0)
      continue;
    struct vlist *l = &u->vl[d];
    if (l->n == l->cap) {
      uint32_t cap = l->cap ? 2 * l->cap : 8;
      l->row = xrealloc(l->row, cap * sizeof(*l->row));
      l->val = xrealloc(l->val, cap);
      u->vpostings += cap - l->cap;
      l->cap = cap;
    }
    l->row[l->n] = (uint32_t)r;
    l->val[l->n++] = v[d];
    if (by_row) {
      u->sp_dim[u->sp_len] = (uint16_t)d;
      u->sp_val[u->sp_len++] = v[d];
    }
  }
}

/* Takes row r (whose int8 values are v) out of the lists or drow (a vector replaced). */
static void vpost_remove(struct uix *u, size_t r, int dim, const int8_t *v) {
  if (u->vl == NULL)
    return;
  if (nnz_i8(v, dim) > SPARSE_NNZ(dim)) {
    u->flags[r] &= (uint8_t)~F_DENSE;
    for (size_t i = 0; i < u->ndrow; i++) {
      if (u->drow[i] == r) {
        u->drow[i] = u->drow[--u->ndrow];
        return;
      }
    }
    return;
  }
  for (int d = 0; d < dim; d++) {
    if (v[d] == 0)
      continue;
    struct vlist *l = &u->vl[d];
    for (uint32_t i = 0; i < l->n; i++) {
      if (l->row[i] == r) { /* the order in a list does not matter (integer sums) */
        l->row[i] = l->row[l->n - 1];
        l->val[i] = l->val[l->n - 1];
        l->n--;
        break;
      }
    }
  }
}

/* Row r (int8 values v) now has its vector: into the lists. Small users have none (their
   columns are quick to scan, and the lists cost dim * 24 bytes): they are built from the
   columns when the user reaches SPARSE_MIN_ROWS rows. */
static void vpost_row(struct uix *u, size_t r, int dim, const int8_t *v) {
  if (u->vl != NULL) {
    vpost_add(u, r, dim, v);
    return;
  }
  if (u->n < SPARSE_MIN_ROWS)
    return;
  u->vl = xcalloc((size_t)dim, sizeof(*u->vl));
  u->nvl = (size_t)dim;
  int8_t *w = xmalloc(dim4(dim));
  for (size_t i = 0; i < u->n; i++) {
    if (!(u->flags[i] & F_VEC) || i == r)
      continue;
    q_get(u, i, dim, w);
    vpost_add(u, i, dim, w);
  }
  free(w);
  vpost_add(u, r, dim, v);
}

static void row_set_vec(struct uix *u, size_t r, int dim, const float *vec) {
  int8_t v[4096];
  int8_t *p = dim4(dim) <= sizeof v ? v : xmalloc(dim4(dim));
  if (u->flags[r] & F_VEC) { /* a new vector for the row: the old one leaves the lists */
    q_get(u, r, dim, p);
    vpost_remove(u, r, dim, p);
  }
  bool was_zero = !(u->flags[r] & F_VEC); /* (a row without a vector is zeros in q) */
  memset(p, 0, dim4(dim));
  u->scale[r] = mem_quantize_i8(vec, (size_t)dim, p);
  if (was_zero) { /* only the nonzero quads: a cache line of a column each */
    for (size_t i = 0; i < dim4(dim) / 4; i++) {
      int32_t w;
      memcpy(&w, p + 4 * i, 4);
      if (w != 0)
        memcpy(u->q + i * 4 * u->cap + 4 * r, &w, 4);
    }
  } else {
    q_put(u, r, dim, p);
  }
  vpost_row(u, r, dim, p);
  if (p != v)
    free(p);
  u->flags[r] |= F_VEC;
}

/* -- keyword postings -- */

static size_t tslot_find(const struct uix *u, uint64_t h) {
  size_t mask = u->ntslots - 1;
  size_t i = (size_t)h & mask;
  while (u->tslots[i] != 0 && u->pl[u->tslots[i] - 1].h != h)
    i = (i + 1) & mask;
  return i;
}

static void tslots_grow(struct uix *u) {
  size_t m = u->ntslots ? u->ntslots * 2 : 64;
  free(u->tslots);
  u->tslots = xcalloc(m, sizeof(uint32_t));
  u->ntslots = m;
  for (size_t p = 0; p < u->npl; p++) {
    size_t i = (size_t)u->pl[p].h & (m - 1);
    while (u->tslots[i] != 0)
      i = (i + 1) & (m - 1);
    u->tslots[i] = (uint32_t)(p + 1);
  }
}

static void post_add(struct uix *u, uint64_t h, uint32_t row, uint32_t tf) {
  if ((u->npl + 1) * 2 > u->ntslots)
    tslots_grow(u);
  size_t s = tslot_find(u, h);
  if (u->tslots[s] == 0) {
    if (u->npl == u->capl) {
      u->capl = u->capl ? u->capl * 2 : 64;
      u->pl = xrealloc(u->pl, u->capl * sizeof(*u->pl));
    }
    u->pl[u->npl] = (struct plist){.h = h};
    u->tslots[s] = (uint32_t)(++u->npl);
  }
  struct plist *p = &u->pl[u->tslots[s] - 1];
  if (p->n == p->cap) {
    uint32_t cap = p->cap ? p->cap * 2 : 4;
    p->row = xrealloc(p->row, cap * sizeof(uint32_t));
    p->tf = xrealloc(p->tf, cap * sizeof(uint16_t));
    u->postings += cap - p->cap;
    p->cap = cap;
  }
  p->row[p->n] = row;
  p->tf[p->n] = (uint16_t)(tf > UINT16_MAX ? UINT16_MAX : tf);
  p->n++;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Indexes the terms of row r's text. */
static void row_terms(struct uix *u, size_t r, const char *text, size_t len) {
  static _Thread_local uint64_t terms[DOC_TERMS_MAX];
  size_t nt = mem_terms(text, len, terms, DOC_TERMS_MAX);
  if (nt > 64) {
    qsort(terms, nt, sizeof(terms[0]), cmp_u64);
  } else { /* a chat message's few terms: an insertion sort */
    for (size_t i = 1; i < nt; i++) {
      uint64_t x = terms[i];
      size_t j = i;
      for (; j > 0 && terms[j - 1] > x; j--)
        terms[j] = terms[j - 1];
      terms[j] = x;
    }
  }
  for (size_t a = 0; a < nt;) {
    size_t b = a + 1;
    while (b < nt && terms[b] == terms[a])
      b++;
    post_add(u, terms[a], (uint32_t)r, (uint32_t)(b - a));
    a = b;
  }
  u->dl[r] = (uint16_t)(nt > UINT16_MAX ? UINT16_MAX : nt);
  u->total_dl += u->dl[r];
}

/* -- chats: each row linked to the previous and next row of its chat -- */

static bool chat_none(const uint8_t c[ID_BYTES]) {
  static const uint8_t zero[ID_BYTES];
  return memcmp(c, zero, ID_BYTES) == 0;
}

static size_t cslot_find(const struct uix *u, const uint8_t chat[ID_BYTES]) {
  uint64_t h = id_hash(chat);
  size_t mask = u->ncslots - 1;
  size_t i = (size_t)h & mask;
  while (u->cslots[i].row != NO_ROW && memcmp(u->chat[u->cslots[i].row], chat, ID_BYTES) != 0)
    i = (i + 1) & mask;
  return i;
}

static void cslots_grow(struct uix *u) {
  size_t m = u->ncslots ? u->ncslots * 2 : 16;
  struct cslot *old = u->cslots;
  size_t oldn = u->ncslots;
  u->cslots = xmalloc(m * sizeof(*u->cslots));
  for (size_t i = 0; i < m; i++)
    u->cslots[i].row = NO_ROW;
  u->ncslots = m;
  for (size_t i = 0; i < oldn; i++)
    if (old[i].row != NO_ROW)
      u->cslots[cslot_find(u, u->chat[old[i].row])] = old[i];
  free(old);
}

static void chat_link(struct uix *u, size_t r) {
  u->prev[r] = u->next_in_chat[r] = NO_ROW;
  if (chat_none(u->chat[r]))
    return;
  if ((u->ncs + 1) * 2 > u->ncslots)
    cslots_grow(u);
  size_t i = cslot_find(u, u->chat[r]);
  if (u->cslots[i].row == NO_ROW) {
    u->ncs++;
  } else {
    uint32_t last = u->cslots[i].row;
    if (u->created[last] > u->created[r])
      return; /* an older turn arriving late (backfill): left unlinked */
    if (!(u->flags[last] & F_DEAD)) {
      u->prev[r] = last;
      u->next_in_chat[last] = (uint32_t)r;
    }
  }
  u->cslots[i] = (struct cslot){id_hash(u->chat[r]), (uint32_t)r};
}

/* A new row: everything but the vector. */
static void row_new(struct uix *u, size_t r, const uint8_t id[ID_BYTES],
                    const struct mem_row *row) {
  memcpy(u->id[r], id, ID_BYTES);
  u->created[r] = row->created_at;
  u->flags[r] = 0;
  u->scale[r] = 0;
  u->role[r] = (uint8_t)row->role;
  if (row->chat_id == NULL || !id_to_bin(row->chat_id, u->chat[r]))
    memset(u->chat[r], 0, ID_BYTES);
  const char *text = row->text ? row->text : "";
  size_t len = strlen(text);
  if (len > UINT32_MAX / 2)
    len = 0;
  if (u->alen + len + 1 > u->acap) {
    size_t cap = u->acap ? u->acap : 4096;
    while (cap < u->alen + len + 1)
      cap *= 2;
    u->arena = xrealloc(u->arena, cap);
    u->acap = cap;
  }
  memcpy(u->arena + u->alen, text, len);
  u->arena[u->alen + len] = 0;
  u->toff[r] = (uint32_t)u->alen;
  u->tlen[r] = (uint32_t)len;
  u->alen += len + 1;
  row_terms(u, r, text, len);
  chat_link(u, r);
  u->live++;
}

/* Tombstones row r (its slot is already deleted). */
static void row_kill(struct uix *u, size_t r) {
  u->flags[r] |= F_DEAD;
  uint32_t p = u->prev[r], nx = u->next_in_chat[r];
  if (p != NO_ROW)
    u->next_in_chat[p] = nx;
  if (nx != NO_ROW)
    u->prev[nx] = p;
  if (!chat_none(u->chat[r])) {
    size_t i = cslot_find(u, u->chat[r]);
    if (u->cslots[i].row == r && p != NO_ROW)
      u->cslots[i].row = p;
  }
  u->total_dl -= u->dl[r];
  u->live--;
  u->dead++;
}

static const char *row_text(const struct uix *u, size_t r) {
  return u->arena + u->toff[r];
}

#define SWAP_FIELD(a, b, f)                                                                    \
  do {                                                                                         \
    __typeof__((a)->f) t_ = (a)->f;                                                            \
    (a)->f = (b)->f;                                                                           \
    (b)->f = t_;                                                                               \
  } while (0)

/* Swaps the rows and maps of a and b (not their names, locks or table links). */
static void uix_swap_data(struct uix *a, struct uix *b) {
  SWAP_FIELD(a, b, n);
  SWAP_FIELD(a, b, cap);
  SWAP_FIELD(a, b, q);
  SWAP_FIELD(a, b, scale);
  SWAP_FIELD(a, b, id);
  SWAP_FIELD(a, b, created);
  SWAP_FIELD(a, b, flags);
  SWAP_FIELD(a, b, role);
  SWAP_FIELD(a, b, chat);
  SWAP_FIELD(a, b, toff);
  SWAP_FIELD(a, b, tlen);
  SWAP_FIELD(a, b, prev);
  SWAP_FIELD(a, b, next_in_chat);
  SWAP_FIELD(a, b, dl);
  SWAP_FIELD(a, b, arena);
  SWAP_FIELD(a, b, alen);
  SWAP_FIELD(a, b, acap);
  SWAP_FIELD(a, b, slots);
  SWAP_FIELD(a, b, nslots);
  SWAP_FIELD(a, b, pl);
  SWAP_FIELD(a, b, npl);
  SWAP_FIELD(a, b, capl);
  SWAP_FIELD(a, b, tslots);
  SWAP_FIELD(a, b, ntslots);
  SWAP_FIELD(a, b, cslots);
  SWAP_FIELD(a, b, ncslots);
  SWAP_FIELD(a, b, ncs);
  SWAP_FIELD(a, b, total_dl);
  SWAP_FIELD(a, b, live);
  SWAP_FIELD(a, b, dead);
  SWAP_FIELD(a, b, postings);
  SWAP_FIELD(a, b, vl);
  SWAP_FIELD(a, b, nvl);
  SWAP_FIELD(a, b, vpostings);
  SWAP_FIELD(a, b, drow);
  SWAP_FIELD(a, b, ndrow);
  SWAP_FIELD(a, b, cdrow);
  SWAP_FIELD(a, b, sp_off);
  SWAP_FIELD(a, b, sp_n);
  SWAP_FIELD(a, b, sp_dim);
  SWAP_FIELD(a, b, sp_val);
  SWAP_FIELD(a, b, sp_len);
  SWAP_FIELD(a, b, sp_cap);
}

/* Rebuilds u (write-locked) without its tombstones. */
static void uix_compact(struct uix *u, int dim) {
  struct uix *t = uix_new(u->user, u->model);
  uix_reserve(t, u->live ? u->live : 1, dim);
  slots_rebuild(t, u->live);
  for (size_t r = 0; r < u->n; r++) {
    if (u->flags[r] & F_DEAD)
      continue;
    char chat[ID_LEN + 1] = "";
    if (!chat_none(u->chat[r]))
      bin_to_id(u->chat[r], chat);
    struct mem_row row = {.created_at = u->created[r],
                          .text = row_text(u, r),
                          .chat_id = chat,
                          .role = (enum mem_role)u->role[r]};
    size_t nr = t->n++;
    row_new(t, nr, u->id[r], &row);
    if (u->flags[r] & F_VEC) {
      int8_t *v = xmalloc(dim4(dim));
      q_get(u, r, dim, v);
      q_put(t, nr, dim, v);
      vpost_row(t, nr, dim, v);
      free(v);
      t->scale[nr] = u->scale[r];
      t->flags[nr] |= F_VEC;
    }
    t->slots[slot_find(t, u->id[r])] = (uint32_t)(nr + 1);
  }
  uix_swap_data(u, t);
  uix_free(t);
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
  ix->rows -= u->live;
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
    ix->rows = ix->rows - old_n + u->live;
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
    if (!id_to_bin(rows[i].id, id))
      continue;
    size_t s = slot_find(u, id);
    size_t r;
    if (u->slots[s] != 0) {
      r = u->slots[s] - 1; /* duplicate id: the first row's text stays, a vector is set */
    } else {
      r = u->n++;
      u->slots[s] = (uint32_t)(r + 1);
      row_new(u, r, id, &rows[i]);
    }
    if (rows[i].vec)
      row_set_vec(u, r, ix->dim, rows[i].vec);
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
  ix->rows += u->live;
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
      !id_to_bin(row->id, id))
    return EG_EINVAL;
  struct uix *u = acquire(ix, user);
  if (u == NULL)
    return EG_ENOTFOUND;
  int rc = 0;
  pthread_rwlock_wrlock(&u->lock);
  size_t old_live = u->live;
  if (row->vec && strcmp(u->model, model) != 0) {
    rc = EG_EINVAL;
    goto out;
  }
  if (u->n + 1 >= UINT32_MAX / 2) {
    rc = EG_ETOOBIG;
    goto out;
  }
  size_t s = slot_find(u, id);
  if (u->slots[s] != 0) {
    if (row->vec)
      row_set_vec(u, u->slots[s] - 1, ix->dim, row->vec);
    goto out;
  }
  if (u->n == u->cap)
    uix_reserve(u, u->cap + u->cap / 2 + 16, ix->dim);
  size_t r = u->n++;
  row_new(u, r, id, row);
  if (row->vec)
    row_set_vec(u, r, ix->dim, row->vec);
  if (u->n * 2 > u->nslots) {
    slots_rebuild(u, u->n * 2);
  } else {
    u->slots[s] = (uint32_t)(r + 1);
  }
out:;
  size_t nb = uix_bytes(u, ix->dim);
  pthread_rwlock_unlock(&u->lock);
  release(ix, u, old_live, nb);
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
  size_t old_live = u->live;
  size_t s = slot_find(u, id);
  if (u->slots[s] == 0) {
    rc = EG_ENOTFOUND;
  } else {
    size_t r = u->slots[s] - 1;
    slot_delete(u, s);
    row_kill(u, r);
  }
  if (u->dead > u->live + 64) /* tombstones outnumber the rows */
    uix_compact(u, ix->dim);
  size_t nb = uix_bytes(u, ix->dim);
  pthread_rwlock_unlock(&u->lock);
  release(ix, u, old_live, nb);
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

/* Best first: by score, then the newer, then the lower row (a total order: rows differ). */
static inline bool rescored_before(const struct rescored *x, const struct rescored *y) {
  if (x->s != y->s)
    return x->s > y->s;
  if (x->created != y->created)
    return x->created > y->created;
  return x->r < y->r;
}

/* Sorts the few candidates of a search best first (an insertion sort: tens of them, no
   calls through a comparison pointer; the order is total, so the same as any sort's). */
static void rescored_sort(struct rescored *a, size_t n) {
  for (size_t i = 1; i < n; i++) {
    struct rescored x = a[i];
    size_t j = i;
    while (j > 0 && rescored_before(&x, &a[j - 1])) {
      a[j] = a[j - 1];
      j--;
    }
    a[j] = x;
  }
}

/* Per-thread scratch buffers of the searches (grown, never shrunk; freed when the thread
   exits), so a search allocates nothing of the user's size. */
enum {
  SC_QQ,
  SC_COLS,
  SC_QW,
  SC_NZ,
  SC_HEAP,
  SC_RS,
  SC_ACC,
  SC_TOUCHED,
  SC_DOTS,
  SC_VR,
  SC_FUSED,
  SC_N
};
struct scratch {
  void *p[SC_N];
  size_t cap[SC_N];
};
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local struct scratch *scratch_tls;

static void scratch_free(void *arg) {
  struct scratch *sc = arg;
  for (int i = 0; i < SC_N; i++)
    free(sc->p[i]);
  free(sc);
}

static void scratch_key_init(void) {
  if (pthread_key_create(&scratch_key, scratch_free) != 0)
    abort();
}

/* The thread's buffer i with room for at least bytes (its contents are kept when it does
   not grow; a grown buffer is zeroed). */
static void *scratch(int i, size_t bytes) {
  struct scratch *sc = scratch_tls;
  if (sc == NULL) {
    pthread_once(&scratch_once, scratch_key_init);
    sc = xcalloc(1, sizeof *sc);
    if (pthread_setspecific(scratch_key, sc) != 0)
      abort();
    scratch_tls = sc;
  }
  if (bytes > sc->cap[i]) {
    size_t cap = EG_MAX(bytes, sc->cap[i] * 2);
    free(sc->p[i]);
    sc->p[i] = xcalloc(1, cap);
    sc->cap[i] = cap;
  }
  return sc->p[i];
}

/* Ids to exclude: in binary, then (under the user's lock) as the user's live rows, with a
   1,024-bit filter on the row number (a chat window's 21 rows: ~2% false hits). */
struct excl {
  uint8_t (*id)[ID_BYTES];
  size_t n;
  uint32_t *row;
  size_t nrow;
  uint64_t filter[16]; /* bit r % 1024 of every excluded row r */
};

static void excl_init(struct excl *e, const char *const *ids, size_t n) {
  e->id = n ? xmalloc(n * (ID_BYTES + sizeof(uint32_t))) : NULL;
  e->row = n ? (uint32_t *)(e->id + n) : NULL;
  e->n = e->nrow = 0;
  memset(e->filter, 0, sizeof e->filter);
  for (size_t i = 0; i < n; i++)
    if (id_to_bin(ids[i], e->id[e->n]))
      e->n++;
}

/* The rows of the excluded ids in u (locked): an id names one live row at most. */
static void excl_rows(struct excl *e, const struct uix *u) {
  e->nrow = 0;
  memset(e->filter, 0, sizeof e->filter);
  if (u->nslots == 0)
    return;
  for (size_t i = 0; i < e->n; i++) {
    size_t s = slot_find(u, e->id[i]);
    if (u->slots[s] == 0)
      continue;
    uint32_t r = u->slots[s] - 1;
    e->row[e->nrow++] = r;
    e->filter[r >> 6 & 15] |= 1ull << (r & 63);
  }
}

static bool excluded(const struct excl *e, uint32_t r) {
  if (!(e->filter[r >> 6 & 15] >> (r & 63) & 1))
    return false;
  for (size_t i = 0; i < e->nrow; i++)
    if (e->row[i] == r)
      return true;
  return false;
}

/* The best cap candidates by (score, then lower row): a buffer of 4 * cap that is cut back
   to its best cap (a selection, not a sort) when full; the cap-th best of what was seen is
   then the bar: a row is kept only when better than it (rows may come in any order). */
struct topk {
  struct cand *b;
  size_t n, cap;
  struct cand bar; /* the cap-th best at the last cut ({-INFINITY, UINT32_MAX} before) */
};

static inline bool cand_better(struct cand a, struct cand b) {
  return a.s > b.s || (a.s == b.s && a.r < b.r);
}

/* Puts the best m (1 <= m <= n) of b[0..n) first, in no order (quickselect; cand_better is
   a total order: rows differ). */
static void cand_select(struct cand *b, size_t n, size_t m) {
  size_t lo = 0, hi = n; /* the best m: b[0..lo) and the best m - lo of b[lo..hi) */
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    struct cand piv = b[mid];
    b[mid] = b[hi - 1];
    b[hi - 1] = piv;
    size_t st = lo;
    for (size_t i = lo; i < hi - 1; i++) { /* (branchless: the outcomes are coin tosses) */
      struct cand x = b[i];
      size_t better = (size_t)(x.s > piv.s) | ((size_t)(x.s == piv.s) & (size_t)(x.r < piv.r));
      b[i] = b[st]; /* b[st] is worse than piv unless st == i */
      b[st] = x;
      st += better;
    }
    b[hi - 1] = b[st];
    b[st] = piv; /* b[lo..st) better than piv, b(st..hi) worse */
    if (m == st || m == st + 1)
      return;
    if (m < st)
      hi = st;
    else
      lo = st + 1;
  }
}

static void topk_cut(struct topk *t) {
  cand_select(t->b, t->n, t->cap);
  t->n = t->cap;
  struct cand bar = t->b[0];
  for (size_t i = 1; i < t->cap; i++)
    if (cand_better(bar, t->b[i]))
      bar = t->b[i];
  t->bar = bar;
}

/* One row of the int8 scan: kept unless it cannot beat the bar. */
static inline void scan_row(const struct uix *u, const struct excl *ex, struct topk *t,
                            size_t r, int32_t dot) {
  if ((u->flags[r] & (F_VEC | F_DEAD)) != F_VEC) /* no vector, or removed */
    return;
  float s = (float)dot * u->scale[r];
  if (!cand_better((struct cand){s, (uint32_t)r}, t->bar) || excluded(ex, (uint32_t)r))
    return;
  t->b[t->n++] = (struct cand){s, (uint32_t)r};
  if (t->n == 4 * t->cap)
    topk_cut(t);
}

/* The int8 scan (u read-locked) into top: every row with a vector, in order, with its dot
   product with the quantised query qq (integer sums, however computed: the same). A quad
   of the query whose dimensions' lists hold more than a quarter as many rows as the user
   has (a word in most memories; the rows in drow count too) is read from its column
   (mem__quads32, 32 rows in registers); the other quads from the lists of their nonzero
   dimensions (the rows in drow from their columns), summed first into a per-thread row array.
   Without the lists (a user with no vector yet), every quad from its column. Rows whose score
   is not above top's bar are skipped 32 at a time. */
static void vec_scan(const struct uix *u, int dim, const int8_t *qq, const struct excl *ex,
                     struct topk *top) {
  size_t nquads = dim4(dim) / 4;
  const int8_t **cols = scratch(SC_COLS, nquads * sizeof(*cols)); /* the column quads */
  int32_t *qw = scratch(SC_QW, nquads * sizeof(*qw));
  uint32_t *lq = scratch(SC_NZ, nquads * sizeof(*lq)); /* the list quads */
  size_t nc = 0, nl = 0;
  for (size_t i = 0; i < nquads; i++) {
    int32_t w;
    memcpy(&w, qq + 4 * i, 4);
    if (w == 0)
      continue;
    size_t post = 0;
    for (size_t d = 4 * i; d < 4 * i + 4 && u->vl != NULL && d < (size_t)dim; d++)
      if (qq[d] != 0)
        post += u->vl[d].n;
    if (u->vl != NULL && (post + u->ndrow) * SPARSE_GAIN <= u->n) {
      lq[nl++] = (uint32_t)i;
    } else {
      cols[nc] = u->q + i * 4 * u->cap;
      qw[nc++] = w;
    }
  }
  if (nc + nl == 0 || u->n == 0)
    return; /* the zero query, or no rows: no candidates */
  int32_t *acc = scratch(SC_DOTS, u->n * sizeof(int32_t)); /* zeros between searches */
  for (size_t i = 0; i < nl; i++) {
    for (size_t d = 4 * lq[i]; d < 4 * (size_t)lq[i] + 4 && d < (size_t)dim; d++) {
      if (qq[d] == 0)
        continue;
      /* (locals: the stores to acc could alias the list's fields) */
      const uint32_t *row = u->vl[d].row;
      const int8_t *val = u->vl[d].val;
      uint32_t n = u->vl[d].n;
      int32_t qd = qq[d];
      for (uint32_t j = 0; j < n; j++)
        acc[row[j]] += qd * val[j];
    }
  }
  for (size_t i = 0; i < u->ndrow && nl > 0; i++) {
    size_t r = u->drow[i];
    int32_t sum = 0;
    for (size_t j = 0; j < nl; j++) {
      const int8_t *c = u->q + (size_t)lq[j] * 4 * u->cap + 4 * r, *q4 = qq + 4 * (size_t)lq[j];
      sum += q4[0] * c[0] + q4[1] * c[1] + q4[2] * c[2] + q4[3] * c[3];
    }
    acc[r] += sum;
  }
  uint32_t (*kern)(const int8_t *const *, const int32_t *, size_t, size_t, size_t,
                   const float *, float, int32_t *) =
      mem_simd_avx2() ? mem__quads32_avx2 : mem__quads32_scalar;
  /* Newest rows first: in a chat the recent turns are the likeliest candidates, so the bar
     rises early and the older rows mostly stay below it. (The kernel's test is s > thr:
     thr just under the bar lets a row tying with it through, to cand_better.) */
  /* More than QUADS_PASS column quads (a dense query): all but the last QUADS_PASS are
     first added into acc, QUADS_PASS columns per pass (so many columns read at once
     would defeat the prefetchers). */
  size_t last = nc > QUADS_PASS ? nc - QUADS_PASS : 0;
  for (size_t g = 0; g < last; g += QUADS_PASS) {
    size_t gn = EG_MIN((size_t)QUADS_PASS, last - g);
    for (size_t r0 = 0; r0 < u->n; r0 += 32)
      (void)kern(cols + g, qw + g, gn, r0, EG_MIN((size_t)32, u->n - r0), u->scale, INFINITY,
                 acc + r0);
  }
  for (size_t b = (u->n + 31) / 32; b-- > 0;) {
    size_t r0 = 32 * b, bn = EG_MIN((size_t)32, u->n - r0);
    int32_t *dots = acc + r0;
    float thr = nextafterf(top->bar.s, -INFINITY);
    uint32_t m = kern(cols + last, qw + last, nc - last, r0, bn, u->scale, thr, dots);
    while (m) {
      unsigned j = (unsigned)__builtin_ctz(m);
      m &= m - 1;
      scan_row(u, ex, top, r0 + j, dots[j]);
    }
  }
  memset(acc, 0, u->n * sizeof(int32_t));
}

/* Vector candidates of u (read-locked): at most k, best first, into out: the int8 scan
   (vec_scan) keeps the best C = max(2k, 32) rows by int8 score (then by row), which are
   re-scored with the float query. */
static size_t vec_search(const struct mem_index *ix, const struct uix *u, const float *query,
                         size_t k, const struct excl *ex, struct rescored *out) {
  int dim = ix->dim;
  size_t d4 = dim4(dim);
  int8_t *qq = scratch(SC_QQ, d4);
  memset(qq + (size_t)dim, 0, d4 - (size_t)dim);
  (void)mem_quantize_i8(query, (size_t)dim, qq);
  size_t ccap = EG_MAX(2 * k, (size_t)CCAP);
  struct topk top = {
      scratch(SC_HEAP, 4 * ccap * sizeof(struct cand)), 0, ccap, {-INFINITY, UINT32_MAX}};
  vec_scan(u, dim, qq, ex, &top);
  uint32_t *nz = scratch(SC_NZ, (size_t)dim * sizeof(*nz)); /* the query's nonzero dims */
  size_t nnz = 0;
  for (size_t d = 0; d < (size_t)dim; d++)
    if (query[d] != 0.0f)
      nz[nnz++] = (uint32_t)d;
  if (top.n > ccap)
    topk_cut(&top);
  const struct cand *heap = top.b;
  size_t hn = top.n;
  struct rescored *rs = scratch(SC_RS, (hn ? hn : 1) * sizeof(*rs));
  for (size_t i = 0; i < hn; i++) {
    size_t r = heap[i].r;
    float d = 0;
    if (u->sp_off != NULL && !(u->flags[r] & F_DENSE)) {
      /* The row's own nonzero values, dimensions ascending: the same nonzero terms in the
         same order as over the query's nonzero dimensions (the others add a zero, which
         leaves the float sum as it is), so the same score. */
      const uint16_t *dd = u->sp_dim + u->sp_off[r];
      const int8_t *vv = u->sp_val + u->sp_off[r];
      for (size_t j = 0, m = u->sp_n[r]; j < m; j++)
        d += query[dd[j]] * (float)vv[j];
    } else {
      for (size_t j = 0; j < nnz; j++)
        d += query[nz[j]] * (float)q_at(u, r, nz[j]);
    }
    rs[i] = (struct rescored){d * u->scale[r], u->created[r], (uint32_t)r};
  }
  rescored_sort(rs, hn);
  size_t m = EG_MIN(k, hn);
  memcpy(out, rs, m * sizeof(*out));
  return m;
}

/* BM25's length normalisation of a memory of dl terms. */
static inline float bm25_norm(float dl, float avgdl) {
  return BM25_K1 * (1.0f - BM25_B + BM25_B * dl / avgdl);
}

/* A posting's BM25 term score. */
static inline float bm25_term(float idf, float tf, float norm) {
  return idf * tf * (BM25_K1 + 1.0f) / (tf + norm);
}

#define KW_TAB 128 /* memories of fewer terms than this get their term scores from a table */

/* Keyword candidates of u (read-locked) for the query terms: at most k, best first. */
static size_t kw_search(const struct uix *u, const uint64_t *terms, size_t nt, size_t k,
                        const struct excl *ex, struct rescored *out) {
  if (nt == 0 || u->live == 0 || u->ntslots == 0 || k == 0)
    return 0;
  /* acc is all zeros between searches: only the touched rows are written, and reset. */
  float *acc = scratch(SC_ACC, u->n * sizeof(float));
  uint32_t *touched = scratch(SC_TOUCHED, u->n * sizeof(uint32_t));
  size_t ntouched = 0;
  float n_docs = (float)u->live;
  float avgdl = (float)u->total_dl / n_docs;
  if (avgdl <= 0)
    avgdl = 1;
  /* A term in many memories: its score for tf 1 by memory length from a table (the same
     float operations, so the same values), not a division per posting. */
  float norm[KW_TAB], w1[KW_TAB];
  bool have_norm = false;
  for (size_t t = 0; t < nt; t++) {
    bool dup = false;
    for (size_t p = 0; p < t && !dup; p++)
      dup = terms[p] == terms[t];
    size_t s = tslot_find(u, terms[t]);
    if (dup || u->tslots[s] == 0)
      continue;
    const struct plist *p = &u->pl[u->tslots[s] - 1];
    float df = (float)p->n;
    float idf = logf((n_docs - df + 0.5f) / (df + 0.5f));
    if (idf < 1e-6f) /* as SQLite FTS5: a term in most documents still counts a little */
      idf = 1e-6f;
    if (p->n < 2 * KW_TAB) {
      for (uint32_t i = 0; i < p->n; i++) {
        uint32_t r = p->row[i];
        if (u->flags[r] & F_DEAD)
          continue;
        float tf = p->tf[i];
        if (acc[r] == 0)
          touched[ntouched++] = r;
        acc[r] += bm25_term(idf, tf, bm25_norm((float)u->dl[r], avgdl));
      }
      continue;
    }
    if (!have_norm) {
      for (size_t d = 0; d < KW_TAB; d++)
        norm[d] = bm25_norm((float)d, avgdl);
      have_norm = true;
    }
    for (size_t d = 0; d < KW_TAB; d++)
      w1[d] = bm25_term(idf, 1.0f, norm[d]);
    for (uint32_t i = 0; i < p->n; i++) {
      uint32_t r = p->row[i];
      if (u->flags[r] & F_DEAD)
        continue;
      uint16_t tf = p->tf[i], dl = u->dl[r];
      if (acc[r] == 0)
        touched[ntouched++] = r;
      acc[r] += tf == 1 && dl < KW_TAB ? w1[dl]
                                       : bm25_term(idf, (float)tf, bm25_norm((float)dl, avgdl));
    }
  }
  size_t ccap = k;
  struct cand *heap = scratch(SC_HEAP, ccap * sizeof(*heap));
  size_t hn = 0;
  for (size_t i = 0; i < ntouched; i++) {
    uint32_t r = touched[i];
    float s = acc[r];
    acc[r] = 0;
    if (hn == ccap && !(s > heap[0].s))
      continue;
    if (!excluded(ex, r))
      heap_push(heap, &hn, ccap, (struct cand){s, r});
  }
  for (size_t i = 0; i < hn; i++)
    out[i] = (struct rescored){heap[i].s, u->created[heap[i].r], heap[i].r};
  rescored_sort(out, hn);
  return hn;
}

static void hits_out(const struct uix *u, const struct rescored *rs, size_t n,
                     struct mem_hit *out) {
  for (size_t i = 0; i < n; i++) {
    bin_to_id(u->id[rs[i].r], out[i].id);
    out[i].created_at = rs[i].created;
    out[i].score = rs[i].s;
  }
}

static void unref(struct mem_index *ix, struct uix *u) {
  pthread_mutex_lock(&ix->mu);
  unref_locked(u);
  pthread_mutex_unlock(&ix->mu);
}

int mem_index_search(struct mem_index *ix, const char *user, const char *model,
                     const float *query, size_t k, const char *const *exclude, size_t n_exclude,
                     struct mem_hit *out, size_t *n_out) {
  *n_out = 0;
  if (!valid_name(user, 256) || model == NULL || query == NULL || k < 1)
    return EG_EINVAL;
  struct uix *u = acquire(ix, user);
  if (u == NULL)
    return EG_ENOTFOUND;
  int rc = 0;
  struct excl ex;
  excl_init(&ex, exclude, n_exclude);
  struct rescored *rs = xmalloc(k * sizeof(*rs));
  pthread_rwlock_rdlock(&u->lock);
  excl_rows(&ex, u);
  if (strcmp(u->model, model) != 0) {
    rc = EG_EINVAL;
  } else {
    *n_out = vec_search(ix, u, query, k, &ex, rs);
    hits_out(u, rs, *n_out, out);
  }
  pthread_rwlock_unlock(&u->lock);
  unref(ix, u);
  free(rs);
  free(ex.id);
  return rc;
}

int mem_index_keyword(struct mem_index *ix, const char *user, const char *query, size_t k,
                      const char *const *exclude, size_t n_exclude, struct mem_hit *out,
                      size_t *n_out) {
  *n_out = 0;
  if (!valid_name(user, 256) || query == NULL || k < 1)
    return EG_EINVAL;
  uint64_t terms[QUERY_TERMS_MAX];
  size_t nt = mem_terms(query, strlen(query), terms, QUERY_TERMS_MAX);
  struct uix *u = acquire(ix, user);
  if (u == NULL)
    return EG_ENOTFOUND;
  struct excl ex;
  excl_init(&ex, exclude, n_exclude);
  struct rescored *rs = xmalloc(k * sizeof(*rs));
  pthread_rwlock_rdlock(&u->lock);
  excl_rows(&ex, u);
  *n_out = kw_search(u, terms, nt, k, &ex, rs);
  hits_out(u, rs, *n_out, out);
  pthread_rwlock_unlock(&u->lock);
  unref(ix, u);
  free(rs);
  free(ex.id);
  return 0;
}

void mem_found_free(struct mem_found *f, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(f[i].text);
    free(f[i].before);
    free(f[i].after);
  }
}

/* One memory of the fusion: its row and its scores on each side (0 when absent). */
struct fused {
  uint32_t r;
  float vs, ks, score;
  int64_t created;
};

/* Best first: by fused score, then the newer, then the smaller id (the order of
   mem_recall_fuse's cmp_recalled: ids compare as their hex text does in binary). */
static bool fused_before(const struct uix *u, const struct fused *x, const struct fused *y) {
  if (x->score != y->score)
    return x->score > y->score;
  if (x->created != y->created)
    return x->created > y->created;
  return memcmp(u->id[x->r], u->id[y->r], ID_BYTES) < 0;
}

/* mem_recall_fuse() over rows (u read-locked): the same scores and order, without the
   text ids, candidate copies and allocations (the excluded rows are already left out of
   both sides). The best o->k into best[], best first; returns how many. */
static size_t fuse_rows(const struct uix *u, const struct rescored *vr, size_t nv,
                        const struct rescored *kr, size_t nk, const struct mem_recall_opts *o,
                        struct fused *all, struct fused *best) {
  if (o->k == 0 || (nv == 0 && nk == 0))
    return 0;
  float vmax = 0, kmax = 0;
  for (size_t i = 0; i < nv; i++)
    if (vr[i].s > vmax)
      vmax = vr[i].s;
  for (size_t i = 0; i < nk; i++)
    if (kr[i].s > kmax)
      kmax = kr[i].s;
  size_t n = 0;
  for (size_t i = 0; i < nv; i++) /* rows differ within a side */
    all[n++] = (struct fused){vr[i].r, vr[i].s > 0 ? vr[i].s : 0, 0, 0, vr[i].created};
  for (size_t i = 0; i < nk; i++) {
    size_t j = 0;
    while (j < nv && all[j].r != kr[i].r)
      j++;
    if (j == nv) {
      j = n++;
      all[j] = (struct fused){kr[i].r, 0, 0, 0, kr[i].created};
    }
    if (kr[i].s > all[j].ks)
      all[j].ks = kr[i].s;
  }
  float wsum = o->w_vec + o->w_kw;
  if (!(wsum > 0))
    wsum = 1;
  bool dates = o->query != NULL && o->date_boost > 0 && mem__time_question(o->query);
  size_t m = 0;
  for (size_t j = 0; j < n; j++) {
    struct fused *f = &all[j];
    float v = vmax > 0 && f->vs > 0 ? f->vs / vmax : 0;
    float b = kmax > 0 && f->ks > 0 ? f->ks / kmax : 0;
    f->score = (o->w_vec * v + o->w_kw * b) / wsum;
    if (dates && mem__has_date(row_text(u, f->r)))
      f->score *= 1 + o->date_boost;
    if (o->min_score > 0 && f->score < o->min_score)
      continue; /* (mem_recall_fuse stops at the first one below, best first: the same) */
    if (m == o->k && !fused_before(u, f, &best[m - 1]))
      continue;
    size_t i = m < o->k ? m++ : m - 1;
    while (i > 0 && fused_before(u, f, &best[i - 1])) {
      best[i] = best[i - 1];
      i--;
    }
    best[i] = *f;
  }
  return m;
}

int mem_index_recall(struct mem_index *ix, const char *user, const char *model,
                     const float *vec, const char *query, size_t kc,
                     const struct mem_recall_opts *o, bool neighbours, struct mem_found *out,
                     size_t *n_out) {
  *n_out = 0;
  if (!valid_name(user, 256) || model == NULL || o == NULL || o->k < 1 || kc < 1)
    return EG_EINVAL;
  uint64_t terms[QUERY_TERMS_MAX];
  size_t nt = query ? mem_terms(query, strlen(query), terms, QUERY_TERMS_MAX) : 0;
  struct uix *u = acquire(ix, user);
  if (u == NULL)
    return EG_ENOTFOUND;
  int rc = 0;
  struct excl ex;
  excl_init(&ex, o->exclude, o->n_exclude);
  struct rescored *vr = scratch(SC_VR, 2 * kc * sizeof(*vr)), *kr = vr + kc;
  struct fused *all = scratch(SC_FUSED, (2 * kc + o->k) * sizeof(*all)), *best = all + 2 * kc;
  pthread_rwlock_rdlock(&u->lock);
  excl_rows(&ex, u);
  if (vec && strcmp(u->model, model) != 0) {
    rc = EG_EINVAL;
    goto unlock;
  }
  size_t nv = vec ? vec_search(ix, u, vec, kc, &ex, vr) : 0;
  size_t nk = kw_search(u, terms, nt, kc, &ex, kr);
  size_t n = fuse_rows(u, vr, nv, kr, nk, o, all, best);
  for (size_t i = 0; i < n; i++) {
    uint32_t r = best[i].r;
    struct mem_found *f = &out[i];
    memset(f, 0, sizeof *f);
    bin_to_id(u->id[r], f->id);
    if (!chat_none(u->chat[r]))
      bin_to_id(u->chat[r], f->chat_id);
    f->role = (enum mem_role)u->role[r];
    f->created_at = u->created[r];
    f->score = best[i].score;
    f->text = xstrndup(row_text(u, r), u->tlen[r]);
    if (neighbours) {
      if (u->prev[r] != NO_ROW) {
        f->before = xstrndup(row_text(u, u->prev[r]), u->tlen[u->prev[r]]);
        f->before_role = (enum mem_role)u->role[u->prev[r]];
      }
      if (u->next_in_chat[r] != NO_ROW) {
        f->after = xstrndup(row_text(u, u->next_in_chat[r]), u->tlen[u->next_in_chat[r]]);
        f->after_role = (enum mem_role)u->role[u->next_in_chat[r]];
      }
    }
  }
  *n_out = n;
unlock:
  pthread_rwlock_unlock(&u->lock);
  unref(ix, u);
  free(ex.id);
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
