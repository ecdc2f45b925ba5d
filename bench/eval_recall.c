/*
 * eval_recall: quality of long-term memory recall on the generated evaluation
 * (bench/eval_gen.py -> bench/data/eval.jsonl).
 *
 * Every message goes through the real store (SQLite, FTS5 porter unicode61, bm25) and the
 * real hash embedder and builtin index; the keyword side is store_memory_search(), the
 * vector side mem_index_search(), fusion mem_recall_fuse(): the numbers are the product's.
 *
 * For each question: recall@k = the share of its evidence groups found in the top k (a
 * group is found when any of its ids is retrieved). Methods: keyword only, vector only,
 * equal-weight reciprocal-rank fusion (the usual default, for comparison), the linear
 * fusion at the default weights, and each with neighbouring turns (a hit brings the turn
 * before and after it in its chat). Weights are tuned on the "tune" half (--grid) and
 * reported on the "test" half. Any hit of another user fails the run (exit 1).
 *
 * Usage: eval_recall [--data bench/data/eval.jsonl] [--split test|tune|all] [--grid]
 *                    [--db /tmp/eval.db] [--kinds]
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memory/memory.h"
#include "store/store.h"

#define NCAND 50
#define MAXK 10

struct msg {
  char id[ID_LEN + 1];
  char chat[ID_LEN + 1];
  int user;
  int role;
  char *text;
  int64_t ts;
  int prev, next; /* neighbouring turns in the chat (-1 none) */
};

struct question {
  int user;
  char *kind;
  char *text;
  int split; /* 0 tune, 1 test */
  size_t ngroups;
  char (**groups)[ID_LEN + 1]; /* groups[g][i] */
  size_t *glen;
};

static struct msg *msgs;
static size_t nmsgs;
static struct question *qs;
static size_t nqs;
static int nusers;

static void user_id(int u, char out[ID_LEN + 1]) {
  snprintf(out, ID_LEN + 1, "%08x%016x", 0x60000000u, (unsigned)(u + 1));
}

static int user_index(const char *name) {
  int u = atoi(name + 1);
  if (u + 1 > nusers)
    nusers = u + 1;
  return u;
}

static void load(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fprintf(stderr, "eval_recall: cannot open %s (run bench/eval_gen.py %s)\n", path, path);
    exit(2);
  }
  char *line = NULL;
  size_t cap = 0, mcap = 0, qcap = 0;
  while (getline(&line, &cap, f) > 0) {
    json_error_t err;
    json_t *o = json_loads(line, 0, &err);
    if (o == NULL) {
      fprintf(stderr, "bad line: %s\n", err.text);
      exit(2);
    }
    const char *t = json_string_value(json_object_get(o, "t"));
    int u = user_index(json_string_value(json_object_get(o, "user")));
    if (strcmp(t, "m") == 0) {
      if (nmsgs == mcap) {
        mcap = mcap ? mcap * 2 : 1024;
        msgs = xrealloc(msgs, mcap * sizeof(*msgs));
      }
      struct msg *m = &msgs[nmsgs++];
      memset(m, 0, sizeof(*m));
      snprintf(m->id, sizeof(m->id), "%s", json_string_value(json_object_get(o, "id")));
      snprintf(m->chat, sizeof(m->chat), "%s", json_string_value(json_object_get(o, "chat")));
      m->user = u;
      m->role = strcmp(json_string_value(json_object_get(o, "role")), "user") == 0 ? 0 : 1;
      m->text = xstrdup(json_string_value(json_object_get(o, "text")));
      m->ts = (int64_t)json_integer_value(json_object_get(o, "ts"));
      m->prev = m->next = -1;
      if (nmsgs > 1 && strcmp(msgs[nmsgs - 2].chat, m->chat) == 0) {
        m->prev = (int)nmsgs - 2;
        msgs[nmsgs - 2].next = (int)nmsgs - 1;
      }
    } else {
      if (nqs == qcap) {
        qcap = qcap ? qcap * 2 : 256;
        qs = xrealloc(qs, qcap * sizeof(*qs));
      }
      struct question *q = &qs[nqs++];
      memset(q, 0, sizeof(*q));
      q->user = u;
      q->kind = xstrdup(json_string_value(json_object_get(o, "kind")));
      q->text = xstrdup(json_string_value(json_object_get(o, "text")));
      q->split = strcmp(json_string_value(json_object_get(o, "split")), "test") == 0;
      json_t *ev = json_object_get(o, "ev");
      q->ngroups = json_array_size(ev);
      q->groups = xcalloc(q->ngroups, sizeof(*q->groups));
      q->glen = xcalloc(q->ngroups, sizeof(size_t));
      for (size_t g = 0; g < q->ngroups; g++) {
        json_t *grp = json_array_get(ev, g);
        q->glen[g] = json_array_size(grp);
        q->groups[g] = xcalloc(q->glen[g], ID_LEN + 1);
        for (size_t i = 0; i < q->glen[g]; i++)
          snprintf(q->groups[g][i], ID_LEN + 1, "%s",
                   json_string_value(json_array_get(grp, i)));
      }
    }
    json_decref(o);
  }
  free(line);
  fclose(f);
}

static int cmp_id_msg(const void *a, const void *b) {
  return strcmp(((const struct msg *)a)->id, ((const struct msg *)b)->id);
}
static int *by_id; /* msgs indices sorted by id */
static int cmp_by_id(const void *a, const void *b) {
  return strcmp(msgs[*(const int *)a].id, msgs[*(const int *)b].id);
}
static int find_msg(const char *id) {
  size_t lo = 0, hi = nmsgs;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(msgs[by_id[mid]].id, id);
    if (c == 0)
      return by_id[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

static void fill_store(struct store *st) {
  for (int u = 0; u < nusers; u++) {
    struct store_user_new nu = {0};
    user_id(u, nu.id);
    char email[64];
    snprintf(email, sizeof(email), "u%02d@eval.test", u);
    nu.email = email;
    nu.password_hash = "$argon2id$v=19$m=65536,t=2,p=1$eval$eval";
    nu.created_at = 1700000000000;
    if (store_user_create(st, &nu) != 0) {
      fprintf(stderr, "store_user_create failed\n");
      exit(2);
    }
  }
  /* Chats: the first message of each chat makes it. */
  for (size_t i = 0; i < nmsgs; i++) {
    if (msgs[i].prev != -1)
      continue;
    struct store_chat c = {0};
    snprintf(c.id, sizeof(c.id), "%s", msgs[i].chat);
    user_id(msgs[i].user, c.user_id);
    c.title = "eval";
    c.created_at = msgs[i].ts;
    if (store_chat_create(st, &c) != 0) {
      fprintf(stderr, "store_chat_create failed\n");
      exit(2);
    }
  }
  struct store_message_new *batch = xcalloc(nmsgs, sizeof(*batch));
  char(*uids)[ID_LEN + 1] = xcalloc(nmsgs, ID_LEN + 1);
  int *status = xcalloc(nmsgs, sizeof(int));
  for (size_t i = 0; i < nmsgs; i++) {
    user_id(msgs[i].user, uids[i]);
    snprintf(batch[i].id, sizeof(batch[i].id), "%s", msgs[i].id);
    batch[i].chat_id = msgs[i].chat;
    batch[i].user_id = uids[i];
    batch[i].role = msgs[i].role ? "model" : "user";
    batch[i].content = msgs[i].text;
    batch[i].created_at = msgs[i].ts;
  }
  if (store_message_insert_batch(st, batch, nmsgs, status) != 0) {
    fprintf(stderr, "store_message_insert_batch failed\n");
    exit(2);
  }
  for (size_t i = 0; i < nmsgs; i++) {
    if (status[i] != 0) {
      fprintf(stderr, "insert %zu: %s\n", i, eg_errname(status[i]));
      exit(2);
    }
  }
  free(status);
  free(uids);
  free(batch);
}

/* Per question: candidates of both sides (indices into msgs) with scores. */
struct cands {
  int kw[NCAND];
  float kws[NCAND];
  size_t nkw;
  int vec[NCAND];
  float vecs[NCAND];
  size_t nvec;
  const char *query;
};

static int leaks;
static bool fts5; /* --fts5: the keyword side from the store instead of the index */

static void retrieve(struct store *st, struct mem_index *ix, const struct question *q,
                     struct cands *c) {
  char uid[ID_LEN + 1];
  user_id(q->user, uid);
  struct mem_hit kh[NCAND];
  size_t nk = 0;
  if (fts5) { /* the store's keyword search (SQLite FTS5 bm25), for comparison */
    struct store_hits h = {0};
    if (store_memory_search(st, uid, q->text, NCAND, &h) != 0) {
      fprintf(stderr, "store_memory_search failed\n");
      exit(2);
    }
    for (size_t i = 0; i < h.n; i++) {
      memcpy(kh[nk].id, h.v[i].id, sizeof kh[nk].id);
      kh[nk++].score = (float)h.v[i].score;
    }
    store_hits_free(&h);
  } else if (mem_index_keyword(ix, uid, q->text, NCAND, NULL, 0, kh, &nk) != 0) {
    fprintf(stderr, "mem_index_keyword failed\n");
    exit(2);
  }
  c->nkw = 0;
  c->query = q->text;
  for (size_t i = 0; i < nk; i++) {
    int m = find_msg(kh[i].id);
    if (m < 0 || msgs[m].user != q->user) {
      leaks++;
      continue;
    }
    c->kw[c->nkw] = m;
    c->kws[c->nkw++] = kh[i].score;
  }
  static float qv[MEM_DIM];
  mem_hash_embed(q->text, strlen(q->text), qv);
  struct mem_hit hits[NCAND];
  size_t nh = 0;
  if (mem_index_search(ix, uid, MEM_HASH_MODEL, qv, NCAND, NULL, 0, hits, &nh) != 0) {
    fprintf(stderr, "mem_index_search failed\n");
    exit(2);
  }
  c->nvec = 0;
  for (size_t i = 0; i < nh; i++) {
    int m = find_msg(hits[i].id);
    if (m < 0 || msgs[m].user != q->user) {
      leaks++;
      continue;
    }
    c->vec[c->nvec] = m;
    c->vecs[c->nvec++] = hits[i].score;
  }
}

enum method { M_KW, M_VEC, M_RRF, M_FUSED, NMETHODS };
static const char *method_names[] = {"keyword (FTS5 bm25)", "vector (hash)",
                                     "RRF equal weights", "fused (default)"};

/* Ranks candidates by method into out[0..MAXK) (msg indices). */
static int variant;
static float wdef = -1;
static float date_boost = -1;
static size_t rank(const struct cands *c, enum method m, float wvec, int *out) {
  size_t n = 0;
  if (m == M_KW) {
    for (size_t i = 0; i < c->nkw && n < MAXK; i++)
      out[n++] = c->kw[i];
    return n;
  }
  if (m == M_VEC) {
    for (size_t i = 0; i < c->nvec && n < MAXK; i++)
      out[n++] = c->vec[i];
    return n;
  }
  if (m == M_RRF) {
    int ids[2 * NCAND];
    float sc[2 * NCAND];
    size_t k = 0;
    for (int side = 0; side < 2; side++) {
      const int *v = side ? c->vec : c->kw;
      size_t nv = side ? c->nvec : c->nkw;
      for (size_t i = 0; i < nv; i++) {
        size_t j = 0;
        while (j < k && ids[j] != v[i])
          j++;
        if (j == k) {
          ids[k] = v[i];
          sc[k++] = 0;
        }
        sc[j] += 1.0f / (60.0f + (float)i + 1);
      }
    }
    for (size_t r = 0; r < MAXK && r < k; r++) {
      size_t b = r;
      for (size_t j = r + 1; j < k; j++)
        if (sc[j] > sc[b] || (sc[j] == sc[b] && msgs[ids[j]].ts > msgs[ids[b]].ts))
          b = j;
      int ti = ids[r];
      ids[r] = ids[b];
      ids[b] = ti;
      float ts = sc[r];
      sc[r] = sc[b];
      sc[b] = ts;
      out[n++] = ids[r];
    }
    return n;
  }
  if (variant != 0) {
    /* Experimental fusions: 1 = raw cosine + max-normalised BM25; 2 = min-max both. */
    int ids[2 * NCAND];
    float vs[2 * NCAND], ks[2 * NCAND];
    size_t k = 0;
    float kmax = 0, kmin = 1e30f, vmax = -1, vmin = 1e30f;
    for (size_t i = 0; i < c->nkw; i++) {
      kmax = fmaxf(kmax, c->kws[i]);
      kmin = fminf(kmin, c->kws[i]);
    }
    for (size_t i = 0; i < c->nvec; i++) {
      vmax = fmaxf(vmax, c->vecs[i]);
      vmin = fminf(vmin, c->vecs[i]);
    }
    for (int side = 0; side < 2; side++) {
      const int *v = side ? c->vec : c->kw;
      const float *sv = side ? c->vecs : c->kws;
      size_t nv = side ? c->nvec : c->nkw;
      for (size_t i = 0; i < nv; i++) {
        size_t j = 0;
        while (j < k && ids[j] != v[i])
          j++;
        if (j == k) {
          ids[k] = v[i];
          vs[k] = ks[k] = 0;
          k++;
        }
        float x;
        if (side) {
          x = variant == 1 || variant == 3 ? fmaxf(sv[i], 0)
                                           : (vmax > vmin ? (sv[i] - vmin) / (vmax - vmin) : 1);
          vs[j] = x;
        } else {
          x = variant == 1 || variant == 3 ? sv[i] / kmax
                                           : (kmax > kmin ? (sv[i] - kmin) / (kmax - kmin) : 1);
          ks[j] = x;
        }
      }
    }
    float w = wvec >= 0 ? wvec : 0.35f;
    float sc[2 * NCAND];
    for (size_t j = 0; j < k; j++) {
      sc[j] = w * vs[j] + (1 - w) * ks[j];
      if (variant == 3 && vs[j] > 0 && ks[j] > 0)
        sc[j] *= 2;
    }
    for (size_t r = 0; r < MAXK && r < k; r++) {
      size_t b = r;
      for (size_t j = r + 1; j < k; j++)
        if (sc[j] > sc[b] || (sc[j] == sc[b] && msgs[ids[j]].ts > msgs[ids[b]].ts))
          b = j;
      int ti = ids[r];
      ids[r] = ids[b];
      ids[b] = ti;
      float ts = sc[r];
      sc[r] = sc[b];
      sc[b] = ts;
      out[n++] = ids[r];
    }
    return n;
  }
  struct mem_cand vc[NCAND], kc[NCAND];
  for (size_t i = 0; i < c->nvec; i++)
    vc[i] = (struct mem_cand){.id = msgs[c->vec[i]].id,
                              .created_at = msgs[c->vec[i]].ts,
                              .text = msgs[c->vec[i]].text,
                              .score = c->vecs[i]};
  for (size_t i = 0; i < c->nkw; i++)
    kc[i] = (struct mem_cand){.id = msgs[c->kw[i]].id,
                              .created_at = msgs[c->kw[i]].ts,
                              .text = msgs[c->kw[i]].text,
                              .score = c->kws[i]};
  struct mem_recall_opts o;
  mem_recall_defaults(&o);
  o.query = c->query;
  if (date_boost >= 0)
    o.date_boost = date_boost;
  o.k = MAXK;
  if (wvec >= 0) {
    o.w_vec = wvec;
    o.w_kw = 1 - wvec;
  }
  struct mem_recalled r[MAXK];
  size_t nr = mem_recall_fuse(vc, c->nvec, kc, c->nkw, &o, r);
  for (size_t i = 0; i < nr; i++)
    out[n++] = find_msg(r[i].id);
  return n;
}

static const int KS[] = {1, 3, 5, 10};

/* Share of q's evidence groups found in ranked[0..k) (with neighbours when nb). */
static double score_q(const struct question *q, const int *ranked, size_t n, int k, bool nb) {
  size_t found = 0;
  for (size_t g = 0; g < q->ngroups; g++) {
    bool hit = false;
    for (size_t i = 0; i < n && i < (size_t)k && !hit; i++) {
      int cand[3] = {ranked[i], nb ? msgs[ranked[i]].prev : -1, nb ? msgs[ranked[i]].next : -1};
      for (int c = 0; c < 3 && !hit; c++) {
        if (cand[c] < 0)
          continue;
        for (size_t e = 0; e < q->glen[g] && !hit; e++)
          hit = strcmp(msgs[cand[c]].id, q->groups[g][e]) == 0;
      }
    }
    found += hit;
  }
  return q->ngroups ? (double)found / (double)q->ngroups : 0;
}

static void evaluate(struct cands *all, int split, enum method m, float wvec, bool nb,
                     double out[4]) {
  memset(out, 0, 4 * sizeof(double));
  size_t n = 0;
  for (size_t i = 0; i < nqs; i++) {
    if (split >= 0 && qs[i].split != split)
      continue;
    int ranked[MAXK];
    size_t nr = rank(&all[i], m, wvec, ranked);
    for (int k = 0; k < 4; k++)
      out[k] += score_q(&qs[i], ranked, nr, KS[k], nb);
    n++;
  }
  for (int k = 0; k < 4; k++)
    out[k] = n ? out[k] / (double)n : 0;
}

int main(int argc, char **argv) {
  const char *data = "bench/data/eval.jsonl";
  const char *db = "/dev/shm/engram-eval.db";
  int split = 1;
  bool grid = false, kinds = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
      data = argv[++i];
    else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
      db = argv[++i];
    else if (strcmp(argv[i], "--split") == 0 && i + 1 < argc) {
      i++;
      split = strcmp(argv[i], "tune") == 0 ? 0 : strcmp(argv[i], "all") == 0 ? -1 : 1;
    } else if (strcmp(argv[i], "--fts5") == 0)
      fts5 = true;
    else if (strcmp(argv[i], "--grid") == 0)
      grid = true;
    else if (strcmp(argv[i], "--w") == 0 && i + 1 < argc)
      wdef = (float)atof(argv[++i]);
    else if (strcmp(argv[i], "--date-boost") == 0 && i + 1 < argc)
      date_boost = (float)atof(argv[++i]);
    else if (strcmp(argv[i], "--variant") == 0 && i + 1 < argc)
      variant = atoi(argv[++i]);
    else if (strcmp(argv[i], "--kinds") == 0)
      kinds = true;
    else {
      fprintf(stderr, "usage: eval_recall [--data F] [--db F] [--split test|tune|all] "
                      "[--grid] [--kinds]\n");
      return 2;
    }
  }
  (void)cmp_id_msg;
  load(data);
  by_id = xmalloc(nmsgs * sizeof(int));
  for (size_t i = 0; i < nmsgs; i++)
    by_id[i] = (int)i;
  qsort(by_id, nmsgs, sizeof(int), cmp_by_id);

  char path[512];
  snprintf(path, sizeof(path), "%s", db);
  unlink(path);
  snprintf(path, sizeof(path), "%s-wal", db);
  unlink(path);
  snprintf(path, sizeof(path), "%s-shm", db);
  unlink(path);
  struct store *st = NULL;
  char url[600];
  snprintf(url, sizeof(url), "sqlite:%s", db);
  if (store_open(url, NULL, &st) != 0) {
    fprintf(stderr, "store_open %s failed\n", url);
    return 2;
  }
  uint64_t t0 = clock_mono_ns();
  fill_store(st);
  uint64_t t1 = clock_mono_ns();

  /* Embed every memory, store its vector, then load each user's index from the store. */
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  float *allv = xmalloc(nmsgs * MEM_DIM * sizeof(float));
  for (size_t i = 0; i < nmsgs; i++) {
    float *v = allv + i * MEM_DIM;
    mem_hash_embed(msgs[i].text, strlen(msgs[i].text), v);
    if (store_memory_set_vector(st, msgs[i].id, MEM_HASH_MODEL, v, MEM_DIM) != 0) {
      fprintf(stderr, "store_memory_set_vector failed\n");
      return 2;
    }
  }
  uint64_t t2 = clock_mono_ns();
  for (int u = 0; u < nusers; u++) {
    char uid[ID_LEN + 1];
    user_id(u, uid);
    struct store_vectors sv = {0};
    if (store_memory_load_all(st, uid, MEM_HASH_MODEL, &sv) != 0) {
      fprintf(stderr, "store_memory_load_all failed\n");
      return 2;
    }
    struct mem_row *rows = xcalloc(sv.n + 1, sizeof(*rows));
    for (size_t i = 0; i < sv.n; i++) {
      memcpy(rows[i].id, sv.ids[i], ID_LEN + 1);
      rows[i].created_at = sv.created_at[i];
      rows[i].vec = sv.has_vec[i] ? sv.vec + i * sv.dims : NULL;
      rows[i].text = sv.texts[i];
      rows[i].chat_id = sv.chat_ids[i];
      rows[i].role = strcmp(sv.roles[i], "model") ? MEM_ROLE_USER : MEM_ROLE_MODEL;
    }
    if (mem_index_load(ix, uid, MEM_HASH_MODEL, rows, sv.n) != 0)
      return 2;
    free(rows);
    store_vectors_free(&sv);
  }
  uint64_t t3 = clock_mono_ns();

  struct cands *all = xcalloc(nqs, sizeof(*all));
  for (size_t i = 0; i < nqs; i++)
    retrieve(st, ix, &qs[i], &all[i]);
  uint64_t t4 = clock_mono_ns();

  /* The int8 index against an exact float32 scan of the same hash vectors: recall@3. */
  size_t agree = 0, want = 0;
  for (size_t i = 0; i < nqs; i++) {
    static float qv[MEM_DIM];
    mem_hash_embed(qs[i].text, strlen(qs[i].text), qv);
    float best[3] = {-2, -2, -2};
    int bi[3] = {-1, -1, -1};
    for (size_t m = 0; m < nmsgs; m++) {
      if (msgs[m].user != qs[i].user)
        continue;
      float sc = mem_dot_f32(qv, allv + m * MEM_DIM, MEM_DIM);
      for (int j = 0; j < 3; j++) {
        if (sc > best[j]) {
          for (int t = 2; t > j; t--) {
            best[t] = best[t - 1];
            bi[t] = bi[t - 1];
          }
          best[j] = sc;
          bi[j] = (int)m;
          break;
        }
      }
    }
    /* Set recall@3 by scores: the index's 3 hits, by exact score, against the exact 3 best
       (the same rows, or rows of equal score: repeated texts tie exactly). */
    float got[3] = {-3, -3, -3};
    for (size_t h = 0; h < 3 && h < all[i].nvec; h++)
      got[h] = mem_dot_f32(qv, allv + (size_t)all[i].vec[h] * MEM_DIM, MEM_DIM);
    for (int a = 0; a < 3; a++) /* exact scores of the index's top 3, best first */
      for (int b = a + 1; b < 3; b++)
        if (got[b] > got[a]) {
          float t = got[a];
          got[a] = got[b];
          got[b] = t;
        }
    for (int j = 0; j < 3; j++) {
      if (bi[j] < 0)
        continue;
      want++;
      agree += got[j] >= best[j] - 1e-6f;
    }
  }

  size_t nsplit = 0;
  for (size_t i = 0; i < nqs; i++)
    nsplit += split < 0 || qs[i].split == split;
  printf("eval: %zu messages, %d users, %zu questions (%zu in split %s)\n", nmsgs, nusers, nqs,
         nsplit,
         split < 0 ? "all"
         : split   ? "test"
                   : "tune");
  printf("      store %.0f ms, embed+set_vector %.0f ms, index load %.0f ms, "
         "%zu queries %.0f ms\n",
         (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6, (double)(t3 - t2) / 1e6, nqs,
         (double)(t4 - t3) / 1e6);

  if (grid) {
    printf("\nweight grid on the tune half (w_vec; w_kw = 1 - w_vec), recall@1/3/5/10:\n");
    for (int w = 0; w <= 20; w++) {
      double r[4], rn[4];
      evaluate(all, 0, M_FUSED, (float)w / 20, false, r);
      evaluate(all, 0, M_FUSED, (float)w / 20, true, rn);
      printf("  w_vec %.2f  %.3f %.3f %.3f %.3f   +neighbours %.3f %.3f %.3f %.3f\n",
             (double)w / 20, r[0], r[1], r[2], r[3], rn[0], rn[1], rn[2], rn[3]);
    }
  }

  printf("\n| method | recall@1 | recall@3 | recall@5 | recall@10 |\n");
  printf("| --- | --- | --- | --- | --- |\n");
  for (int nb = 0; nb < 2; nb++) {
    for (int m = 0; m < NMETHODS; m++) {
      double r[4];
      evaluate(all, split, (enum method)m, wdef, nb, r);
      printf("| %s%s | %.3f | %.3f | %.3f | %.3f |\n", method_names[m],
             nb ? " + neighbour turns" : "", r[0], r[1], r[2], r[3]);
    }
  }

  if (kinds) {
    printf("\nrecall@3 by question kind (split as above): keyword / vector / fused\n");
    const char *seen[64];
    size_t ns = 0;
    for (size_t i = 0; i < nqs; i++) {
      bool dup = false;
      for (size_t j = 0; j < ns; j++)
        dup |= strcmp(seen[j], qs[i].kind) == 0;
      if (!dup && ns < 64)
        seen[ns++] = qs[i].kind;
    }
    for (size_t j = 0; j < ns; j++) {
      double s[3] = {0};
      int n = 0;
      for (size_t i = 0; i < nqs; i++) {
        if (strcmp(qs[i].kind, seen[j]) != 0 || (split >= 0 && qs[i].split != split))
          continue;
        enum method ms[3] = {M_KW, M_VEC, M_FUSED};
        for (int m = 0; m < 3; m++) {
          int ranked[MAXK];
          size_t nr = rank(&all[i], ms[m], -1, ranked);
          s[m] += score_q(&qs[i], ranked, nr, 3, false);
        }
        n++;
      }
      if (n)
        printf("  %-12s n=%3d  %.3f %.3f %.3f\n", seen[j], n, s[0] / n, s[1] / n, s[2] / n);
    }
  }

  printf("\nint8 index vs exact float32 scan of the same vectors: recall@3 %.4f "
         "(by exact score; equal-score rows are interchangeable)\n",
         want ? (double)agree / (double)want : 0);
  free(allv);
  free(all);
  printf("\nuser isolation: %d results of another user (must be 0)\n", leaks);
  mem_index_free(ix);
  store_close(st);
  return leaks ? 1 : 0;
}
