/*
 * store.c: the public API. Chooses the back end from the URL, validates every argument
 * (so sqlite.c and pg.c can trust theirs), clamps limits, and frees outputs.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LATEST_SCHEMA 3

int store_schema_latest(void) {
  return LATEST_SCHEMA;
}

/* ---- helpers ------------------------------------------------------------------------- */

void *store__grow(void *v, size_t n, size_t *cap, size_t elem) {
  if (n < *cap)
    return v;
  size_t nc = *cap ? *cap * 2 : 16;
  void *p = xrealloc(v, nc * elem);
  memset((char *)p + *cap * elem, 0, (nc - *cap) * elem);
  *cap = nc;
  return p;
}

void store__id_copy(char dst[ID_LEN + 1], const char *src) {
  store__str_copy(dst, ID_LEN + 1, src);
}

void store__str_copy(char *dst, size_t cap, const char *src) {
  size_t n = src ? strlen(src) : 0;
  if (n >= cap)
    n = cap - 1;
  if (n)
    memcpy(dst, src, n);
  dst[n] = 0;
}

static bool is_word_byte(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         c >= 0x80;
}

/* Length of the valid UTF-8 sequence at p (n bytes available), or 0 when invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned char c = p[0];
  size_t need;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < need)
    return 0;
  for (size_t i = 1; i < need; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if ((need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return need;
}

size_t store__fts_terms(const char *q, char *buf, const char **terms) {
  size_t n = 0;
  char *w = buf;
  const unsigned char *p = (const unsigned char *)q;
  size_t left = strlen(q);
  while (left && n < STORE_FTS_TERMS_MAX) {
    if (!is_word_byte(*p)) {
      p++;
      left--;
      continue;
    }
    char *start = w;
    size_t len = 0;
    while (left && is_word_byte(*p)) {
      size_t k = utf8_seq(p, left);
      if (k == 0) { /* invalid UTF-8: skip the byte (the output stays valid UTF-8) */
        p++;
        left--;
        continue;
      }
      if (len + k <= 64) {
        for (size_t i = 0; i < k; i++) {
          unsigned char c = p[i];
          if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
          *w++ = (char)c;
        }
        len += k;
      }
      p += k;
      left -= k;
    }
    *w = 0;
    if (len == 0) {
      w = start;
      continue;
    }
    bool dup = false;
    for (size_t i = 0; i < n; i++)
      if (strcmp(terms[i], start) == 0)
        dup = true;
    if (dup) {
      w = start;
      continue;
    }
    terms[n++] = start;
    w++;
  }
  return n;
}

static bool idok(const char *id) {
  return id && id_valid(id, strlen(id));
}
static bool idopt(const char *id) {
  return !id || !*id || idok(id);
}
static bool role_msg_ok(const char *r) {
  return r && (strcmp(r, "user") == 0 || strcmp(r, "model") == 0);
}
static size_t clamp_limit(size_t limit) {
  return limit == 0 || limit > STORE_PAGE_MAX ? STORE_PAGE_MAX : limit;
}

/* ---- opening ------------------------------------------------------------------------- */

static int mkdir_p(const char *dir) {
  char *p = xstrdup(dir);
  int rc = 0;
  for (char *c = p + 1; *c; c++) {
    if (*c != '/')
      continue;
    *c = 0;
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
      rc = EG_EIO;
    *c = '/';
  }
  if (rc == 0 && mkdir(p, 0700) != 0 && errno != EEXIST)
    rc = EG_EIO;
  free(p);
  return rc;
}

int store_open(const char *url, const char *data_dir, struct store **out) {
  *out = NULL;
  if (url && (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0))
    return store__pg_open(url, out);
  if (url && strncmp(url, "sqlite:", 7) == 0)
    url += 7;
  if (url && *url)
    return store__sqlite_open(url, out);
  const char *dir = data_dir && *data_dir ? data_dir : ".";
  int rc = mkdir_p(dir);
  if (rc != 0) {
    log_error("store: cannot create data folder %s", dir);
    return rc;
  }
  size_t n = strlen(dir) + sizeof("/engram.db");
  char *path = xmalloc(n);
  snprintf(path, n, "%s/engram.db", dir);
  rc = store__sqlite_open(path, out);
  free(path);
  return rc;
}

void store_close(struct store *s) {
  if (s)
    s->ops->close(s);
}

const char *store_backend(const struct store *s) {
  return s->ops->name;
}
const char *store_describe(const struct store *s) {
  return s->desc;
}

int store_migrate(struct store *s, int *version) {
  int v = 0;
  int rc = s->ops->migrate(s, &v);
  if (version)
    *version = v;
  return rc;
}

int store_ping(struct store *s) {
  return s->ops->ping(s);
}

void store_pool_stats(struct store *s, struct store_pool_stats *out) {
  memset(out, 0, sizeof *out);
  if (s && s->ops->pool_stats)
    s->ops->pool_stats(s, out);
}

/* ---- users --------------------------------------------------------------------------- */

void store_user_clear(struct store_user *u) {
  if (!u)
    return;
  free(u->email);
  free(u->password_hash);
  free(u->first_name);
  free(u->last_name);
  memset(u, 0, sizeof(*u));
}

void store_users_free(struct store_users *l) {
  if (!l)
    return;
  for (size_t i = 0; i < l->n; i++)
    store_user_clear(&l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

int store_user_create(struct store *s, struct store_user_new *u) {
  if (!u->email || !*u->email || !u->password_hash || !*u->password_hash)
    return EG_EINVAL;
  if (u->id[0] && !idok(u->id))
    return EG_EINVAL;
  if (!u->id[0])
    id_new(u->id);
  if (u->created_at == 0)
    u->created_at = clock_wall_ms();
  return s->ops->user_create(s, u);
}

int store_user_get(struct store *s, const char *id, struct store_user *out) {
  memset(out, 0, sizeof(*out));
  if (!idok(id))
    return EG_EINVAL;
  return s->ops->user_get(s, id, NULL, out);
}

int store_user_get_by_email(struct store *s, const char *email, struct store_user *out) {
  memset(out, 0, sizeof(*out));
  if (!email || !*email)
    return EG_EINVAL;
  return s->ops->user_get(s, NULL, email, out);
}

int store_user_delete(struct store *s, const char *id) {
  if (!idok(id))
    return EG_EINVAL;
  return s->ops->user_delete(s, id);
}

int store_user_list(struct store *s, const char *after_id, size_t limit,
                    struct store_users *out) {
  memset(out, 0, sizeof(*out));
  if (!idopt(after_id))
    return EG_EINVAL;
  return s->ops->user_list(s, after_id && *after_id ? after_id : NULL, clamp_limit(limit), out);
}

/* ---- chats --------------------------------------------------------------------------- */

void store_chat_clear(struct store_chat *c) {
  if (!c)
    return;
  free(c->title);
  memset(c, 0, sizeof(*c));
}

void store_chats_free(struct store_chats *l) {
  if (!l)
    return;
  for (size_t i = 0; i < l->n; i++)
    store_chat_clear(&l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

int store_chat_create(struct store *s, struct store_chat *c) {
  if (!idok(c->user_id) || (c->id[0] && !idok(c->id)))
    return EG_EINVAL;
  if (!c->id[0])
    id_new(c->id);
  if (c->created_at == 0)
    c->created_at = clock_wall_ms();
  c->last_activity = c->created_at;
  struct store_chat tmp = *c;
  if (!tmp.title)
    tmp.title = "";
  return s->ops->chat_create(s, &tmp);
}

int store_chat_get(struct store *s, const char *user_id, const char *chat_id,
                   struct store_chat *out) {
  memset(out, 0, sizeof(*out));
  if (!idok(user_id) || !idok(chat_id))
    return EG_EINVAL;
  return s->ops->chat_get(s, user_id, chat_id, out);
}

int store_chat_list(struct store *s, const char *user_id, const char *before_id, size_t limit,
                    struct store_chats *out) {
  memset(out, 0, sizeof(*out));
  if (!idok(user_id) || !idopt(before_id))
    return EG_EINVAL;
  return s->ops->chat_list(s, user_id, before_id && *before_id ? before_id : NULL,
                           clamp_limit(limit), out);
}

int store_chat_rename(struct store *s, const char *user_id, const char *chat_id,
                      const char *title) {
  if (!idok(user_id) || !idok(chat_id) || !title)
    return EG_EINVAL;
  return s->ops->chat_rename(s, user_id, chat_id, title);
}

int store_chat_delete(struct store *s, const char *user_id, const char *chat_id) {
  if (!idok(user_id) || !idok(chat_id))
    return EG_EINVAL;
  return s->ops->chat_delete(s, user_id, chat_id);
}

/* ---- messages ------------------------------------------------------------------------ */

void store_message_clear(struct store_message *m) {
  if (!m)
    return;
  free(m->content);
  free(m->client_id);
  memset(m, 0, sizeof(*m));
}

void store_messages_free(struct store_messages *l) {
  if (!l)
    return;
  for (size_t i = 0; i < l->n; i++)
    store_message_clear(&l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

static int message_check(struct store_message_new *m) {
  m->existed = false;
  if (!idok(m->chat_id) || !idok(m->user_id) || !role_msg_ok(m->role) || !m->content)
    return EG_EINVAL;
  if (m->id[0] && !idok(m->id))
    return EG_EINVAL;
  if (m->client_id && strlen(m->client_id) > STORE_CLIENT_ID_MAX)
    return EG_EINVAL;
  if (m->vec && (m->dims == 0 || m->dims > 65536 || !m->embed_model || !*m->embed_model ||
                 strlen(m->embed_model) >= STORE_MODEL_MAX))
    return EG_EINVAL;
  if (!m->id[0])
    id_new(m->id);
  if (m->created_at == 0)
    m->created_at = clock_wall_ms();
  return 0;
}

int store_message_insert(struct store *s, struct store_message_new *m) {
  int st = 0;
  int rc = store_message_insert_batch(s, m, 1, &st);
  return rc != 0 ? rc : st;
}

static int message_batch(struct store *s, struct store_message_new *m, size_t n, int *status,
                         bool nosync) {
  size_t valid = 0;
  for (size_t i = 0; i < n; i++) {
    status[i] = message_check(&m[i]);
    if (status[i] == 0)
      valid++;
  }
  if (valid == 0)
    return 0;
  /* The back end skips entries whose status is already an error. */
  int rc = s->ops->message_insert_batch(s, m, n, status, nosync && s->ops->sync);
  if (rc != 0)
    for (size_t i = 0; i < n; i++)
      status[i] = rc;
  return rc;
}

int store_message_insert_batch(struct store *s, struct store_message_new *m, size_t n,
                               int *status) {
  return message_batch(s, m, n, status, false);
}

int store_message_insert_batch_nosync(struct store *s, struct store_message_new *m, size_t n,
                                      int *status) {
  return message_batch(s, m, n, status, true);
}

int store_sync(struct store *s) {
  return s->ops->sync ? s->ops->sync(s) : 0;
}

bool store_sync_deferred(const struct store *s) {
  return s->ops->sync != NULL;
}

int store_message_get(struct store *s, const char *user_id, const char *message_id,
                      struct store_message *out) {
  memset(out, 0, sizeof(*out));
  if (!idok(user_id) || !idok(message_id))
    return EG_EINVAL;
  return s->ops->message_get(s, user_id, message_id, out);
}

int store_message_list(struct store *s, const char *user_id, const char *chat_id,
                       const struct store_page *page, struct store_messages *out) {
  memset(out, 0, sizeof(*out));
  struct store_page pg = {0};
  if (page)
    pg = *page;
  if (pg.before_id && !*pg.before_id)
    pg.before_id = NULL;
  if (!idok(user_id) || !idok(chat_id) || !idopt(pg.before_id) || pg.before_ms < 0)
    return EG_EINVAL;
  pg.limit = clamp_limit(pg.limit);
  return s->ops->message_list(s, user_id, chat_id, &pg, out);
}

int store_message_last(struct store *s, const char *chat_id, size_t n,
                       struct store_messages *out) {
  memset(out, 0, sizeof(*out));
  if (!idok(chat_id))
    return EG_EINVAL;
  if (n == 0)
    return 0;
  return s->ops->message_last(s, chat_id, clamp_limit(n), out);
}

int store_message_neighbours(struct store *s, const char *user_id, const char *message_id,
                             size_t n_before, size_t n_after, struct store_messages *out) {
  memset(out, 0, sizeof(*out));
  if (!idok(user_id) || !idok(message_id))
    return EG_EINVAL;
  if (n_before > STORE_PAGE_MAX)
    n_before = STORE_PAGE_MAX;
  if (n_after > STORE_PAGE_MAX)
    n_after = STORE_PAGE_MAX;
  return s->ops->message_neighbours(s, user_id, message_id, n_before, n_after, out);
}

/* ---- memories ------------------------------------------------------------------------ */

void store_memory_clear(struct store_memory *m) {
  if (!m)
    return;
  free(m->text);
  free(m->vector);
  memset(m, 0, sizeof(*m));
}

void store_memories_free(struct store_memories *l) {
  if (!l)
    return;
  for (size_t i = 0; i < l->n; i++)
    store_memory_clear(&l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

void store_vectors_free(struct store_vectors *v) {
  if (!v)
    return;
  for (size_t i = 0; i < v->n; i++)
    free(v->texts[i]);
  free(v->texts);
  free(v->ids);
  free(v->chat_ids);
  free(v->roles);
  free(v->created_at);
  free(v->vec);
  free(v->has_vec);
  memset(v, 0, sizeof(*v));
}

/* Appends one row to v (the vector may be NULL); cap is the caller's. */
void store__vectors_push(struct store_vectors *v, size_t *cap, const char *id, const char *chat,
                         const char *role, const char *text, int64_t created_at,
                         const void *vec, uint32_t dims) {
  if (vec && v->dims != 0 && dims != v->dims)
    vec = NULL;
  if (v->n == *cap) {
    *cap = *cap ? *cap * 2 : 64;
    v->ids = xrealloc(v->ids, *cap * sizeof(*v->ids));
    v->chat_ids = xrealloc(v->chat_ids, *cap * sizeof(*v->chat_ids));
    v->roles = xrealloc(v->roles, *cap * sizeof(*v->roles));
    v->texts = xrealloc(v->texts, *cap * sizeof(*v->texts));
    v->created_at = xrealloc(v->created_at, *cap * sizeof(*v->created_at));
    v->has_vec = xrealloc(v->has_vec, *cap * sizeof(*v->has_vec));
    if (v->dims)
      v->vec = xrealloc(v->vec, *cap * v->dims * sizeof(float));
  }
  if (vec && v->dims == 0) {
    v->dims = dims;
    v->vec = xmalloc(*cap * dims * sizeof(float));
  }
  if (vec)
    memcpy(v->vec + v->n * dims, vec, dims * sizeof(float));
  size_t i = v->n++;
  store__str_copy(v->ids[i], sizeof(v->ids[i]), id);
  store__str_copy(v->chat_ids[i], sizeof(v->chat_ids[i]), chat ? chat : "");
  store__str_copy(v->roles[i], sizeof(v->roles[i]), role ? role : "user");
  v->texts[i] = xstrdup(text ? text : "");
  v->created_at[i] = created_at;
  v->has_vec[i] = vec != NULL;
}

void store_hits_free(struct store_hits *h) {
  if (!h)
    return;
  free(h->v);
  h->v = NULL;
  h->n = 0;
}

int store_memory_add(struct store *s, struct store_memory *m) {
  if (!idok(m->user_id) || !m->text || !*m->text || (m->id[0] && !idok(m->id)))
    return EG_EINVAL;
  if (m->created_at == 0)
    m->created_at = clock_wall_ms();
  if (!m->id[0]) {
    int64_t sec = m->created_at / 1000;
    if (sec >= 0 && sec <= (int64_t)UINT32_MAX)
      id_new_at(m->id, (uint32_t)sec);
    else
      id_new(m->id);
  }
  m->chat_id[0] = 0;
  store__str_copy(m->role, sizeof(m->role), "note");
  return s->ops->memory_add(s, m);
}

int store_memory_pending(struct store *s, const char *model, const char *after_id, size_t limit,
                         struct store_memories *out) {
  memset(out, 0, sizeof(*out));
  if (!model || !*model || strlen(model) >= STORE_MODEL_MAX || !idopt(after_id))
    return EG_EINVAL;
  return s->ops->memory_pending(s, model, after_id && *after_id ? after_id : NULL,
                                clamp_limit(limit), out);
}

int store_memory_set_vector(struct store *s, const char *memory_id, const char *model,
                            const float *vec, uint32_t dims) {
  if (!idok(memory_id) || !model || !*model || strlen(model) >= STORE_MODEL_MAX || !vec ||
      dims == 0 || dims > 65536)
    return EG_EINVAL;
  return s->ops->memory_set_vector(s, memory_id, model, vec, dims);
}

int store_memory_load_all(struct store *s, const char *user_id, const char *model,
                          struct store_vectors *out) {
  memset(out, 0, sizeof(*out));
  if (!idok(user_id) || !model || !*model)
    return EG_EINVAL;
  return s->ops->memory_load_all(s, user_id, model, out);
}

int store_memory_delete(struct store *s, const char *user_id, const char *memory_id) {
  if (!idok(user_id) || !idok(memory_id))
    return EG_EINVAL;
  return s->ops->memory_delete(s, user_id, memory_id);
}

int store_memory_delete_all(struct store *s, const char *user_id, size_t *deleted) {
  size_t d = 0;
  if (!idok(user_id))
    return EG_EINVAL;
  int rc = s->ops->memory_delete_all(s, user_id, &d);
  if (deleted)
    *deleted = d;
  return rc;
}

int store_memory_list(struct store *s, const char *user_id, const char *before_id, size_t limit,
                      struct store_memories *out) {
  memset(out, 0, sizeof(*out));
  if (!idok(user_id) || !idopt(before_id))
    return EG_EINVAL;
  return s->ops->memory_list(s, user_id, before_id && *before_id ? before_id : NULL,
                             clamp_limit(limit), out);
}

int store_memory_get_many(struct store *s, const char *user_id, const char *const *ids,
                          size_t n, struct store_memories *out) {
  memset(out, 0, sizeof(*out));
  if (!idok(user_id) || (n && !ids))
    return EG_EINVAL;
  if (n == 0)
    return 0;
  if (n > STORE_PAGE_MAX)
    n = STORE_PAGE_MAX;
  /* Malformed ids cannot name a memory: drop them here. */
  const char **ok = xcalloc(n, sizeof(*ok));
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (idok(ids[i]))
      ok[m++] = ids[i];
  int rc = m ? s->ops->memory_get_many(s, user_id, ok, m, out) : 0;
  free(ok);
  return rc;
}

/* Words too common to tell memories apart (lower case, as store__fts_terms gives them).
   Ranking on them costs a pass over nearly every memory of the user and adds noise. */
static bool stopword(const char *w) {
  static const char *const list[] = {
      "a",     "about", "am",   "an",   "and",    "any",   "are",  "as",   "at",   "be",
      "been",  "but",   "by",   "can",  "could",  "did",   "do",   "does", "for",  "from",
      "had",   "has",   "have", "he",   "her",    "him",   "his",  "how",  "i",    "if",
      "in",    "into",  "is",   "it",   "its",    "just",  "me",   "my",   "no",   "not",
      "of",    "on",    "or",   "our",  "please", "she",   "so",   "some", "than", "that",
      "the",   "their", "them", "then", "there",  "they",  "this", "to",   "too",  "us",
      "was",   "we",    "were", "what", "when",   "which", "who",  "why",  "will", "with",
      "would", "you",   "your"};
  for (size_t i = 0; i < EG_ARRAY_LEN(list); i++)
    if (strcmp(w, list[i]) == 0)
      return true;
  return false;
}

int store_memory_search(struct store *s, const char *user_id, const char *query, size_t k,
                        struct store_hits *out) {
  memset(out, 0, sizeof(*out));
  if (!idok(user_id) || !query)
    return EG_EINVAL;
  if (s->keyword_off)
    return EG_EUNSUPPORTED;
  if (k == 0)
    k = 10;
  k = clamp_limit(k);
  char *buf = xmalloc(strlen(query) + STORE_FTS_TERMS_MAX + 1);
  const char *terms[STORE_FTS_TERMS_MAX];
  size_t n = store__fts_terms(query, buf, terms);
  size_t kept = 0;
  for (size_t i = 0; i < n; i++)
    if (!stopword(terms[i]))
      terms[kept++] = terms[i];
  if (kept) /* a query made only of stopwords keeps them: better than nothing */
    n = kept;
  int rc = n ? s->ops->memory_search(s, user_id, terms, n, k, out) : 0;
  free(buf);
  return rc;
}

int store_keyword_index(struct store *s, bool on) {
  int rc = s->ops->keyword_index ? s->ops->keyword_index(s, on) : 0;
  if (rc == 0)
    s->keyword_off = !on;
  return rc;
}

bool store_keyword_index_on(const struct store *s) {
  return !s->keyword_off;
}
