/*
 * The `hash` embedder: signed feature hashing of words and word pairs.
 *
 * Pipeline of mem_hash_embed (pure, deterministic, any thread):
 *   1. Unicode: invalid UTF-8 sequences are dropped, then NFKC + case folding + removal of
 *      default-ignorable code points (utf8proc).
 *   2. Tokens: runs of letters, marks and digits. An apostrophe inside a word ends it and
 *      the clitic after it is dropped ("sister's" -> "sister", "don't" -> "don"). Han and
 *      kana characters are one token each (their pairs then act as words).
 *   3. Terms: tokens with letters are stemmed with Snowball English (libstemmer); tokens
 *      of digits are kept as they are. Stopwords get a small weight and do not form pairs.
 *   4. Features: "w:<stem>" for each term (weight 1, stopwords STOP_W), "x:<first 5 bytes>"
 *      of each content term of 6+ bytes (weight PREFIX_W: joins "practising"/"practice",
 *      which Snowball keeps apart) and "p:<a> <b>" for each pair of
 *      adjacent content terms (weight PAIR_W). Each feature's weight is multiplied by
 *      1 + ln(tf) (sublinear term frequency). Pairs skip over stopwords.
 *   5. Hashing: FNV-1a 64 with a fixed seed, finalised with the splitmix64 mixer; the low
 *      bits pick one of the 768 dimensions, the top bit the sign.
 *   6. The vector is L2-normalised (all zero when there were no features).
 *
 * The weights were chosen on the tune half of the evaluation (bench/eval_recall.c): on it,
 * recall@1/3/5/10 of the vector side went from 0.314/0.518/0.548/0.618 (stopwords 0.1, no
 * prefixes) to 0.436/0.581/0.634/0.754 (stopwords 0.4, prefixes 0.75); pairs at 0.25 or
 * 0.75 instead of 0.5 were worse.
 *
 * Changing anything here changes every stored vector: bump MEM_HASH_MODEL so the app
 * re-embeds, and update the pinned values in tests/unit/memory/test_hash.c.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libstemmer.h>
#include <utf8proc.h>

#include "memory/memory.h"

#define SEED 0x9e3779b97f4a7c15ULL
#ifndef PAIR_W
#define PAIR_W 0.5f
#endif
#ifndef STOP_W
#define STOP_W 0.4f
#endif
#ifndef PREFIX_W
#define PREFIX_W 0.75f
#endif
#define MAX_TOKEN 64 /* bytes; longer tokens are cut */

/* English stopwords (folded, unstemmed). Sorted for bsearch. */
static const char *const stopwords[] = {
    "a",      "about",  "above", "after",   "again",   "against",   "all",      "am",
    "an",     "and",    "any",   "are",     "as",      "at",        "be",       "been",
    "before", "being",  "below", "between", "both",    "but",       "by",       "can",
    "could",  "did",    "do",    "does",    "doing",   "don",       "down",     "during",
    "each",   "few",    "for",   "from",    "further", "had",       "has",      "have",
    "having", "he",     "her",   "here",    "hers",    "herself",   "him",      "himself",
    "his",    "how",    "i",     "if",      "in",      "into",      "is",       "it",
    "its",    "itself", "just",  "me",      "more",    "most",      "my",       "myself",
    "no",     "nor",    "not",   "now",     "of",      "off",       "on",       "once",
    "only",   "or",     "other", "our",     "ours",    "ourselves", "out",      "over",
    "own",    "s",      "same",  "she",     "should",  "so",        "some",     "such",
    "t",      "than",   "that",  "the",     "their",   "theirs",    "them",     "themselves",
    "then",   "there",  "these", "they",    "this",    "those",     "through",  "to",
    "too",    "under",  "until", "up",      "very",    "was",       "we",       "were",
    "what",   "when",   "where", "which",   "while",   "who",       "whom",     "why",
    "will",   "with",   "would", "you",     "your",    "yours",     "yourself", "yourselves",
};

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool is_stopword(const char *w) {
  return bsearch(&w, stopwords, EG_ARRAY_LEN(stopwords), sizeof(stopwords[0]), cmp_str) != NULL;
}

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n) {
  const uint8_t *s = p;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

struct feat {
  uint64_t h;
  float w;
};

struct feats {
  struct feat *v;
  size_t n, cap;
};

static void feats_add(struct feats *f, uint64_t h, float w) {
  if (f->n == f->cap) {
    f->cap = f->cap ? f->cap * 2 : 64;
    f->v = xrealloc(f->v, f->cap * sizeof(*f->v));
  }
  f->v[f->n++] = (struct feat){h, w};
}

static int cmp_feat(const void *a, const void *b) {
  uint64_t x = ((const struct feat *)a)->h, y = ((const struct feat *)b)->h;
  return x < y ? -1 : x > y;
}

/* A term: its stem (or the token itself) and whether it is a stopword. */
struct term {
  char s[MAX_TOKEN * 2 + 1];
  size_t len;
  bool stop;
};

static bool is_cjk(utf8proc_int32_t c) {
  return (c >= 0x3040 && c <= 0x30ff) || (c >= 0x3400 && c <= 0x4dbf) ||
         (c >= 0x4e00 && c <= 0x9fff) || (c >= 0xf900 && c <= 0xfaff);
}

/* The next code point at s[i] (as utf8proc_iterate; ASCII bytes without the call). */
static inline utf8proc_ssize_t next_cp(const uint8_t *s, size_t i, size_t n,
                                       utf8proc_int32_t *c) {
  if (s[i] < 0x80) {
    *c = s[i];
    return 1;
  }
  return utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), c);
}

static bool is_word_char(utf8proc_int32_t c) {
  if (c < 0x80) /* ASCII: letters (L*) and digits (Nd) only */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  switch (utf8proc_category(c)) {
  case UTF8PROC_CATEGORY_LU:
  case UTF8PROC_CATEGORY_LL:
  case UTF8PROC_CATEGORY_LT:
  case UTF8PROC_CATEGORY_LM:
  case UTF8PROC_CATEGORY_LO:
  case UTF8PROC_CATEGORY_MN:
  case UTF8PROC_CATEGORY_MC:
  case UTF8PROC_CATEGORY_ND:
  case UTF8PROC_CATEGORY_NL:
  case UTF8PROC_CATEGORY_NO:
    return true;
  default:
    return false;
  }
}

/* Copies the valid UTF-8 of s[0..n) (dropping invalid bytes) and applies NFKC + casefold.
   Returns a malloc'd NUL-terminated string (free()) or NULL when empty. */
uint8_t *mem__normalise(const char *s, size_t n, size_t *out_len, bool ascii_fast) {
  if (ascii_fast) {
    /* ASCII only: NFKC changes nothing, case folding is A-Z -> a-z, no ASCII character is
       default-ignorable; NULs are dropped as below. */
    uint8_t *out = xmalloc(n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
      uint8_t c = (uint8_t)s[i];
      if (c >= 0x80) {
        free(out);
        return mem__normalise(s, n, out_len, false);
      }
      if (c != 0)
        out[m++] = (uint8_t)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    out[m] = 0;
    *out_len = m;
    return out;
  }
  uint8_t *clean = xmalloc(n + 1);
  size_t m = 0;
  const uint8_t *p = (const uint8_t *)s;
  size_t i = 0;
  while (i < n) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &c);
    if (k <= 0) {
      i++;
      continue;
    }
    if (c != 0) {
      memcpy(clean + m, p + i, (size_t)k);
      m += (size_t)k;
    }
    i += (size_t)k;
  }
  clean[m] = 0;
  uint8_t *dst = NULL;
  utf8proc_ssize_t r = utf8proc_map(clean, (utf8proc_ssize_t)m, &dst,
                                    UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT |
                                        UTF8PROC_CASEFOLD | UTF8PROC_IGNORE);
  free(clean);
  if (r < 0) {
    free(dst);
    return NULL;
  }
  *out_len = (size_t)r;
  return dst;
}

/* One Snowball stemmer per thread (creating one costs more than stemming a message), with
   a cache of its recent answers (stemming is a pure function of the word; chats repeat
   their words): direct-mapped, words up to STEM_CACHE_WORD bytes. */
#define STEM_CACHE 1024
#define STEM_CACHE_WORD 23
struct stem_entry {
  uint8_t wlen, slen; /* wlen 0: empty */
  char w[STEM_CACHE_WORD], s[STEM_CACHE_WORD];
};
struct stemmer_tls {
  struct sb_stemmer *st;
  struct stem_entry cache[STEM_CACHE];
};
static pthread_key_t stemmer_key;
static pthread_once_t stemmer_once = PTHREAD_ONCE_INIT;

static void stemmer_free(void *arg) {
  struct stemmer_tls *t = arg;
  sb_stemmer_delete(t->st);
  free(t);
}
static void stemmer_key_init(void) {
  if (pthread_key_create(&stemmer_key, stemmer_free) != 0)
    abort();
}

/* NULL when libstemmer cannot make one (terms are then used unstemmed). */
static struct stemmer_tls *stemmer(void) {
  pthread_once(&stemmer_once, stemmer_key_init);
  struct stemmer_tls *t = pthread_getspecific(stemmer_key);
  if (t == NULL) {
    struct sb_stemmer *st = sb_stemmer_new("english", "UTF_8");
    if (st == NULL)
      return NULL;
    t = xcalloc(1, sizeof *t);
    t->st = st;
    if (pthread_setspecific(stemmer_key, t) != 0) {
      stemmer_free(t);
      return NULL;
    }
  }
  return t;
}

/* The stem of tok[0..len) into out (at most cap - 1 bytes and a NUL): returns its length,
   or -1 when the stemmer gives none that fits (the word then stays as it is). */
static int stem(struct stemmer_tls *t, const uint8_t *tok, size_t len, char *out, size_t cap) {
  struct stem_entry *e = NULL;
  if (len > 0 && len <= STEM_CACHE_WORD) {
    e = &t->cache[hash_bytes(0xcbf29ce484222325ULL, tok, len) % STEM_CACHE];
    if (e->wlen == len && memcmp(e->w, tok, len) == 0) {
      if (e->slen == 0)
        return -1;
      memcpy(out, e->s, e->slen);
      out[e->slen] = 0;
      return e->slen;
    }
  }
  int rl = -1;
  const sb_symbol *r = sb_stemmer_stem(t->st, (const sb_symbol *)tok, (int)len);
  if (r != NULL) {
    int l = sb_stemmer_length(t->st);
    if (l > 0 && (size_t)l < cap) {
      memcpy(out, r, (size_t)l);
      out[l] = 0;
      rl = l;
    }
  }
  if (e != NULL && rl <= STEM_CACHE_WORD) {
    e->wlen = (uint8_t)len;
    memcpy(e->w, tok, len);
    e->slen = (uint8_t)(rl < 0 ? 0 : rl);
    if (rl > 0)
      memcpy(e->s, out, (size_t)rl);
  }
  return rl;
}

static void make_term(struct stemmer_tls *st, const uint8_t *tok, size_t len, bool has_alpha,
                      struct term *t) {
  if (len > MAX_TOKEN) {
    /* Cut at a code point boundary. */
    len = MAX_TOKEN;
    while (len > 0 && (tok[len] & 0xc0) == 0x80)
      len--;
  }
  memcpy(t->s, tok, len);
  t->s[len] = 0;
  t->len = len;
  t->stop = is_stopword(t->s);
  if (has_alpha && st != NULL && !t->stop) {
    char out[sizeof(t->s)];
    int rl = stem(st, tok, len, out, sizeof out);
    if (rl > 0) {
      memcpy(t->s, out, (size_t)rl + 1);
      t->len = (size_t)rl;
    }
  }
}

static void add_term_feats(struct feats *f, const struct term *prev, const struct term *t) {
  uint64_t h = hash_bytes(SEED, "w:", 2);
  h = hash_bytes(h, t->s, t->len);
  feats_add(f, h, t->stop ? STOP_W : 1.0f);
  if (!t->stop && t->len >= 6) {
    uint64_t x = hash_bytes(SEED, "x:", 2);
    x = hash_bytes(x, t->s, 5);
    feats_add(f, x, PREFIX_W);
  }
  if (prev != NULL && !prev->stop && !t->stop) {
    uint64_t p = hash_bytes(SEED, "p:", 2);
    p = hash_bytes(p, prev->s, prev->len);
    p = hash_bytes(p, " ", 1);
    p = hash_bytes(p, t->s, t->len);
    feats_add(f, p, PAIR_W);
  }
}

/* Calls fn for each term of text (steps 1-3 above), with the previous content term of the
   same sentence (NULL at a sentence start). */
typedef void (*term_fn)(void *ud, const struct term *prev, const struct term *t);

static void walk_terms(const char *text, size_t len, term_fn fn, void *ud) {
  if (text == NULL || len == 0)
    return;
  if (len > MEM_EMBED_MAX_TEXT)
    len = MEM_EMBED_MAX_TEXT;
  size_t n = 0;
  uint8_t *s = mem__normalise(text, len, &n, true);
  if (s == NULL)
    return;
  struct stemmer_tls *st = stemmer();
  struct term terms[2];
  int cur = 0;
  bool have_prev = false;
  size_t i = 0;
  while (i < n) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = next_cp(s, i, n, &c);
    if (k <= 0) {
      i++;
      continue;
    }
    if (!is_word_char(c)) {
      i += (size_t)k;
      /* Sentence punctuation breaks pairs; spaces and hyphens do not. */
      if (c == '.' || c == '!' || c == '?' || c == ';' || c == ':' || c == ',' || c == '\n')
        have_prev = false;
      continue;
    }
    size_t start = i;
    bool has_alpha = false;
    if (is_cjk(c)) {
      i += (size_t)k;
      has_alpha = false;
    } else {
      while (i < n) {
        k = next_cp(s, i, n, &c);
        if (k <= 0 || is_cjk(c) || !is_word_char(c))
          break;
        if (c < 0x80) { /* an ASCII word character: a letter or a digit (Nd) */
          if (c > '9')
            has_alpha = true;
        } else {
          utf8proc_category_t cat = utf8proc_category(c);
          if (cat != UTF8PROC_CATEGORY_ND && cat != UTF8PROC_CATEGORY_NO &&
              cat != UTF8PROC_CATEGORY_NL)
            has_alpha = true;
        }
        i += (size_t)k;
      }
    }
    size_t end = i;
    /* Apostrophe clitic: skip "'s", "'t", "'re"... glued to the word. */
    if (i < n) {
      utf8proc_ssize_t ka = next_cp(s, i, n, &c);
      if (ka > 0 && (c == '\'' || c == 0x2019)) {
        size_t j = i + (size_t)ka;
        size_t jj = j;
        while (jj < n) {
          utf8proc_ssize_t kb = next_cp(s, jj, n, &c);
          if (kb <= 0 || !is_word_char(c) || is_cjk(c))
            break;
          jj += (size_t)kb;
        }
        if (jj > j && jj - j <= 3)
          i = jj;
      }
    }
    struct term *t = &terms[cur];
    make_term(st, s + start, end - start, has_alpha, t);
    fn(ud, have_prev ? &terms[cur ^ 1] : NULL, t);
    if (!t->stop) {
      /* Stopwords are skipped over by pairs: "moved to Lisbon" pairs "move lisbon". */
      have_prev = true;
      cur ^= 1;
    }
  }
  free(s);
}

static void feat_term(void *ud, const struct term *prev, const struct term *t) {
  add_term_feats(ud, prev, t);
}

void mem_hash_embed(const char *text, size_t len, float out[MEM_DIM]) {
  memset(out, 0, MEM_DIM * sizeof(float));
  struct feats f = {0};
  walk_terms(text, len, feat_term, &f);
  if (f.n == 0) {
    free(f.v);
    return;
  }
  qsort(f.v, f.n, sizeof(*f.v), cmp_feat);
  double norm = 0;
  for (size_t a = 0; a < f.n;) {
    size_t b = a;
    float wmax = 0;
    while (b < f.n && f.v[b].h == f.v[a].h) {
      if (f.v[b].w > wmax)
        wmax = f.v[b].w;
      b++;
    }
    uint64_t h = mix64(f.v[a].h);
    float w = wmax * (1.0f + logf((float)(b - a)));
    size_t dim = (size_t)(h % MEM_DIM);
    out[dim] += (h >> 63) ? -w : w;
    a = b;
  }
  free(f.v);
  for (size_t d = 0; d < MEM_DIM; d++)
    norm += (double)out[d] * out[d];
  if (norm > 0) {
    float inv = (float)(1.0 / sqrt(norm));
    for (size_t d = 0; d < MEM_DIM; d++)
      out[d] *= inv;
  }
}

struct terms_acc {
  uint64_t *out;
  size_t max, n;
};

static void keyword_term(void *ud, const struct term *prev, const struct term *t) {
  (void)prev;
  struct terms_acc *a = ud;
  if (t->stop || a->n == a->max)
    return;
  a->out[a->n++] = mem_term_hash(t->s, t->len);
}

uint64_t mem_term_hash(const char *stem, size_t len) {
  return mix64(hash_bytes(hash_bytes(SEED, "w:", 2), stem, len));
}

size_t mem_terms(const char *text, size_t len, uint64_t *out, size_t max) {
  struct terms_acc a = {out, max, 0};
  walk_terms(text, len, keyword_term, &a);
  return a.n;
}
