/*
 * Recall fusion: a pure function over the vector side's candidates (cosine similarity) and
 * the keyword side's (BM25, higher is better). Each side is normalised by its own best
 * score so both lie in [0, 1], then combined linearly with the side weights. The weights
 * are the ones measured best on the evaluation (bench/eval_recall.c, see bench/README.md
 * "Memory"): the lexical hash embedder is weaker than BM25, so BM25 leads and the vector
 * side adds what BM25 misses (stems, word pairs, paraphrases sharing some words).
 */
#include <stdlib.h>
#include <string.h>

#include "memory/memory.h"

#ifndef DATE_BOOST
#define DATE_BOOST 0.3f
#endif

void mem_recall_defaults(struct mem_recall_opts *o) {
  memset(o, 0, sizeof(*o));
  o->k = 3;
  o->w_vec = 0.45f;
  o->w_kw = 0.55f;
  o->min_score = 0;
  o->date_boost = DATE_BOOST;
}

/* ---- time questions -------------------------------------------------------------------- */

static bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
static char lower(char c) {
  return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* True when the word w (lower case) starts at s[i] as a whole word. */
static bool word_at(const char *s, size_t i, const char *w) {
  if (i > 0 && is_alpha(s[i - 1]))
    return false;
  size_t j = 0;
  for (; w[j]; j++)
    if (lower(s[i + j]) != w[j])
      return false;
  return !is_alpha(s[i + j]);
}

static bool has_word(const char *s, const char *const *words, size_t n) {
  for (size_t i = 0; s[i]; i++) {
    if (!is_alpha(s[i]) || (i > 0 && is_alpha(s[i - 1])))
      continue;
    for (size_t w = 0; w < n; w++)
      if (word_at(s, i, words[w]))
        return true;
  }
  return false;
}

bool mem__time_question(const char *q) {
  static const char *const w[] = {"when", "date", "time",  "day",      "days",     "month",
                                  "year", "ago",  "until", "schedule", "scheduled"};
  return q != NULL && has_word(q, w, EG_ARRAY_LEN(w));
}

bool mem__has_date(const char *t) {
  static const char *const w[] = {
      "january", "february",  "march",    "april",    "may",      "june",      "july",
      "august",  "september", "october",  "november", "december", "jan",       "feb",
      "mar",     "apr",       "jun",      "jul",      "aug",      "sep",       "sept",
      "oct",     "nov",       "dec",      "monday",   "tuesday",  "wednesday", "thursday",
      "friday",  "saturday",  "sunday",   "tomorrow", "tonight",  "today",     "yesterday",
      "weekend", "noon",      "midnight", "am",       "pm"};
  if (t == NULL)
    return false;
  if (has_word(t, w, EG_ARRAY_LEN(w)))
    return true;
  for (size_t i = 0; t[i]; i++) {
    if (!is_digit(t[i]) || (i > 0 && is_digit(t[i - 1])))
      continue;
    size_t j = i;
    while (is_digit(t[j]))
      j++;
    size_t nd = j - i;
    /* 10:30, 12/05, 2019, 3rd / 21st / 4th */
    if ((t[j] == ':' || t[j] == '/') && nd <= 2 && is_digit(t[j + 1]))
      return true;
    if (nd == 4 && (t[i] == '1' || t[i] == '2') && !is_digit(t[j]))
      return true;
    if (nd <= 2 && is_alpha(t[j]) && is_alpha(t[j + 1]) && !is_alpha(t[j + 2])) {
      char a = lower(t[j]), b = lower(t[j + 1]);
      if ((a == 's' && b == 't') || (a == 'n' && b == 'd') || (a == 'r' && b == 'd') ||
          (a == 't' && b == 'h'))
        return true;
    }
  }
  return false;
}

static bool good_id(const char *id) {
  return id != NULL && strnlen(id, ID_LEN + 1) == ID_LEN && id_valid(id, ID_LEN);
}

static bool excluded(const struct mem_recall_opts *o, const char *id) {
  for (size_t i = 0; i < o->n_exclude; i++)
    if (o->exclude[i] != NULL && strncmp(o->exclude[i], id, ID_LEN + 1) == 0)
      return true;
  return false;
}

/* A 64-bit key of a good id (24 chars) for the duplicate check: equal ids, equal keys. */
static uint64_t id_key(const char *id) {
  uint64_t a, b, c;
  memcpy(&a, id, 8);
  memcpy(&b, id + 8, 8);
  memcpy(&c, id + 16, 8);
  return a ^ (b * 0x9e3779b97f4a7c15ULL) ^ (c * 0xc2b2ae3d27d4eb4fULL);
}

static int cmp_recalled(const void *a, const void *b) {
  const struct mem_recalled *x = a, *y = b;
  if (x->score != y->score)
    return x->score > y->score ? -1 : 1;
  if (x->created_at != y->created_at)
    return x->created_at > y->created_at ? -1 : 1;
  return strcmp(x->id, y->id);
}

static float side_max(const struct mem_cand *c, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; i++)
    if (c[i].score > m)
      m = c[i].score;
  return m;
}

size_t mem_recall_fuse(const struct mem_cand *vec, size_t n_vec, const struct mem_cand *kw,
                       size_t n_kw, const struct mem_recall_opts *o, struct mem_recalled *out) {
  struct mem_recall_opts def;
  if (o == NULL) {
    mem_recall_defaults(&def);
    o = &def;
  }
  if (o->k == 0 || (n_vec == 0 && n_kw == 0))
    return 0;
  float vmax = side_max(vec, n_vec), kmax = side_max(kw, n_kw);
  struct mem_recalled *all = xcalloc(n_vec + n_kw + 1, sizeof(*all));
  uint64_t *key = xmalloc((n_vec + n_kw + 1) * sizeof(*key)); /* all[j]'s id, hashed */
  size_t n = 0;
  for (int side = 0; side < 2; side++) {
    const struct mem_cand *c = side == 0 ? vec : kw;
    size_t nc = side == 0 ? n_vec : n_kw;
    for (size_t i = 0; i < nc; i++) {
      if (!good_id(c[i].id) || excluded(o, c[i].id))
        continue;
      struct mem_recalled *r = NULL;
      uint64_t h = id_key(c[i].id);
      for (size_t j = 0; j < n; j++) {
        if (key[j] == h && strcmp(all[j].id, c[i].id) == 0) {
          r = &all[j];
          break;
        }
      }
      if (r == NULL) {
        key[n] = h;
        r = &all[n++];
        r->id = c[i].id;
        r->chat_id = c[i].chat_id;
        r->text = c[i].text;
        r->role = c[i].role;
        r->created_at = c[i].created_at;
      } else {
        if (r->text == NULL)
          r->text = c[i].text;
        if (r->chat_id == NULL)
          r->chat_id = c[i].chat_id;
      }
      if (side == 0) {
        if (c[i].score > r->vec_score)
          r->vec_score = c[i].score;
      } else if (c[i].score > r->kw_score) {
        r->kw_score = c[i].score;
      }
    }
  }
  float wsum = o->w_vec + o->w_kw;
  if (!(wsum > 0))
    wsum = 1;
  for (size_t j = 0; j < n; j++) {
    float v = vmax > 0 && all[j].vec_score > 0 ? all[j].vec_score / vmax : 0;
    float b = kmax > 0 && all[j].kw_score > 0 ? all[j].kw_score / kmax : 0;
    all[j].score = (o->w_vec * v + o->w_kw * b) / wsum;
  }
  if (o->query != NULL && o->date_boost > 0 && mem__time_question(o->query)) {
    for (size_t j = 0; j < n; j++)
      if (mem__has_date(all[j].text))
        all[j].score *= 1 + o->date_boost;
  }
  qsort(all, n, sizeof(*all), cmp_recalled);
  size_t m = 0;
  for (size_t j = 0; j < n && m < o->k; j++) {
    if (o->min_score > 0 && all[j].score < o->min_score)
      break;
    out[m++] = all[j];
  }
  free(all);
  free(key);
  return m;
}
