/*
 * memory_bench: speed of the builtin vector index (bench/memory.sh runs it next to
 * bench/faiss_flat.cc on the same vectors).
 *
 * For each size n (one user, 768 dimensions): load n vectors, then time Q single-query
 * top-k searches (p50/p99), insert throughput (mem_index_add into a loaded user), RAM per
 * memory (the index's own accounting of its rows), recall@k of the int8 index against an
 * exact float32 search of the same vectors, and the latency of that exact float32 scan
 * (AVX2) for reference.
 *
 * Vectors: a deterministic xorshift64* stream (bench_vec.h, shared with faiss_flat.cc), so
 * both programs search identical data; queries are stored rows plus noise, normalised.
 *
 * Usage: memory_bench [--sizes 1000,10000,100000,1000000] [--k 3] [--threads-note]
 * Prints one markdown row per size.
 *
 * memory_bench --chat [N]: the server's recall as bench/pipeline.sh drives it, in one
 * thread: one user with N (10000) memories of chat_prefill's texts (hash embedder), 500
 * chatload questions added one by one (mem_index_add, as the loop does), then 2000
 * mem_index_recall calls (kc 28, k 3, neighbours, the 21 ids of a chat window excluded)
 * with chatload's questions. Prints microseconds per add and per recall and a checksum of
 * every result (ids, scores, neighbours): two builds that agree print the same checksum.
 *
 * memory_bench --pipeline [USERS] [N]: the same as bench/pipeline.sh's traffic (10 users
 * of 10,000 memories, questions and the fake model's answers added, a recall between):
 * what a pool thread of the server pays per ai-message, caches shared by many users
 * (pipeline_bench below). Prints us per recall and per ai-message's two adds, a checksum.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memory/memory.h"
#include "memory_bench_vec.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p) {
  qsort(v, n, sizeof(double), cmp_double);
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return v[i];
}

static size_t queries_for(size_t n) {
  if (n <= 10000)
    return 2000;
  if (n <= 100000)
    return 300;
  return 40;
}

/* Exact float top-k by brute force (AVX2 dot products), ids as row numbers. */
static void exact_topk(const float *vecs, size_t n, const float *q, size_t k, uint32_t *out) {
  float best[64];
  for (size_t j = 0; j < k; j++) {
    best[j] = -INFINITY;
    out[j] = UINT32_MAX;
  }
  for (size_t i = 0; i < n; i++) {
    float s = mem_dot_f32(q, vecs + i * BV_DIM, BV_DIM);
    if (s <= best[k - 1])
      continue;
    size_t j = k - 1;
    while (j > 0 && best[j - 1] < s) {
      best[j] = best[j - 1];
      out[j] = out[j - 1];
      j--;
    }
    best[j] = s;
    out[j] = (uint32_t)i;
  }
}

static void row_id(size_t i, char out[ID_LEN + 1]) {
  snprintf(out, ID_LEN + 1, "65000000%016zx", i + 1);
}

/* chat_prefill's and chatload's words (see there). */
static const char *const syl[] = {"ka", "lo",  "mi", "ren", "tu",  "sa", "vel", "do",
                                  "ni", "par", "go", "ze",  "fin", "ha", "bro", "li"};
static void word(uint64_t x, char *out, size_t cap) {
  snprintf(out, cap, "%s%s%s", syl[x & 15], syl[(x >> 4) & 15],
           (x >> 8) & 1 ? syl[(x >> 9) & 15] : "");
}

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void question(uint64_t seq, char *out, size_t cap) {
  char w[3][16];
  uint64_t r = seq * 2654435761u + 0x5bd1e995u;
  for (int k = 0; k < 3; k++, r = r * 6364136223846793005ull + 1442695040888963407ull)
    word((r >> 20) % 4096, w[k], sizeof w[k]);
  snprintf(out, cap, "Where did I put the %s %s that %s gave me? (question %llu)", w[0], w[1],
           w[2], (unsigned long long)seq);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 0x100000001b3ULL;
  return h;
}

/* The checksum of a recall's results (ids, scores, texts, neighbours): equal sums, equal
   results. */
static uint64_t found_sum(uint64_t sum, const struct mem_found *f, size_t nf) {
  for (size_t i = 0; i < nf; i++) {
    sum = fnv(sum, f[i].id, ID_LEN);
    sum = fnv(sum, &f[i].score, sizeof f[i].score);
    sum = fnv(sum, f[i].text, strlen(f[i].text));
    if (f[i].before)
      sum = fnv(sum, f[i].before, strlen(f[i].before));
    if (f[i].after)
      sum = fnv(sum, f[i].after, strlen(f[i].after));
  }
  return sum;
}

/* This thread's CPU time (the machine may be busy: wall time would count the waits). */
static uint64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Adds one turn (id number idn) to the user's index: its CPU time in ns, or UINT64_MAX
   when the add fails. id gets the turn's id. */
static uint64_t turn_add(struct mem_index *ix, const char *user, const char *chat, uint64_t idn,
                         const char *text, const float *vec, enum mem_role role,
                         char id[ID_LEN + 1]) {
  struct mem_row row = {.created_at = 1000000 + (int64_t)idn * 1000,
                        .vec = vec,
                        .text = text,
                        .chat_id = chat,
                        .role = role};
  snprintf(id, ID_LEN + 1, "66%022llx", (unsigned long long)idn);
  memcpy(row.id, id, ID_LEN + 1);
  uint64_t t = cpu_ns();
  if (mem_index_add(ix, user, MEM_HASH_MODEL, &row) != 0)
    return UINT64_MAX;
  return cpu_ns() - t;
}

static int chat_bench(size_t n) {
  const char *chat = "650000000000000000000001";
  const size_t nhist = 500, nq = 2000, window = 21;
  size_t total = n + nhist;
  char(*texts)[160] = xcalloc(total, sizeof *texts);
  char(*ids)[ID_LEN + 1] = xcalloc(total, sizeof *ids);
  float *vecs = xmalloc(total * MEM_DIM * sizeof(float));
  struct mem_row *rows = xcalloc(total, sizeof *rows);
  uint64_t seed = 88172645463325252ull;
  for (size_t i = 0; i < total; i++) {
    if (i < n) {
      char w[5][16];
      for (int k = 0; k < 5; k++)
        word(rnd(&seed) % 4096, w[k], sizeof w[k]);
      snprintf(texts[i], sizeof texts[i], "I told %s that the %s %s is next to the %s %s.",
               w[0], w[1], w[2], w[3], w[4]);
    } else {
      question(i - n, texts[i], sizeof texts[i]);
    }
    snprintf(ids[i], ID_LEN + 1, "66%022zx", i + 1);
    mem_hash_embed(texts[i], strlen(texts[i]), vecs + i * MEM_DIM);
    memcpy(rows[i].id, ids[i], ID_LEN + 1);
    rows[i].created_at = 1000000 + (int64_t)i * 60000;
    rows[i].vec = vecs + i * MEM_DIM;
    rows[i].text = texts[i];
    rows[i].chat_id = i < n ? chat : "650000000000000000000002";
    rows[i].role = MEM_ROLE_USER;
  }
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  if (mem_index_load(ix, "bench", MEM_HASH_MODEL, rows, n) != 0)
    return 1;
  uint64_t a0 = cpu_ns();
  for (size_t i = n; i < total; i++)
    if (mem_index_add(ix, "bench", MEM_HASH_MODEL, &rows[i]) != 0)
      return 1;
  double add_us = (double)(cpu_ns() - a0) / 1e3 / (double)nhist;
  struct mem_recall_opts o;
  mem_recall_defaults(&o);
  o.k = 3;
  const char *ex[32];
  uint64_t sum = 0xcbf29ce484222325ULL;
  char q[200];
  float qv[MEM_DIM];
  double rec_ns = 0;
  size_t nfound = 0;
  for (size_t qi = 0; qi < nq; qi++) {
    question(nhist + qi, q, sizeof q);
    mem_hash_embed(q, strlen(q), qv);
    size_t last = n + nhist - 1 - (qi % 200); /* the chat window: 21 recent questions */
    for (size_t w = 0; w < window; w++)
      ex[w] = ids[last - w];
    o.exclude = ex;
    o.n_exclude = window;
    o.query = q;
    struct mem_found f[8];
    size_t nf = 0;
    uint64_t t = cpu_ns();
    if (mem_index_recall(ix, "bench", MEM_HASH_MODEL, qv, q, 28, &o, true, f, &nf) != 0)
      return 1;
    rec_ns += (double)(cpu_ns() - t);
    nfound += nf;
    sum = found_sum(sum, f, nf);
    mem_found_free(f, nf);
  }
  struct mem_index_stats st;
  mem_index_stats(ix, &st);
  printf(
      "memory_bench --chat: %zu memories + %zu added, %.0f B/memory, kernels %s: add %.2f us, "
      "recall %.2f us (CPU time) (%zu queries, %zu results), checksum %016llx\n",
      n, nhist, (double)st.bytes / (double)total, mem_simd_avx2() ? "AVX2+FMA" : "scalar",
      add_us, rec_ns / 1e3 / (double)nq, nq, nfound, (unsigned long long)sum);
  mem_index_free(ix);
  free(rows);
  free(vecs);
  free(ids);
  free(texts);
  return 0;
}

/* --pipeline [USERS] [N]: bench/pipeline.sh's index traffic, in one thread: USERS users
   with N memories each (chat_prefill's texts, one archive chat), then a stream of
   ai-messages over 10 chats per user, users taking turns: the question is added (role
   user), the user is recalled (kc 28, k 3, neighbours, the chat's window of the 21 newest
   turns excluded) and the fake model's answer is added (role model). 1,500 ai-messages per
   user warm up (as the pipeline's window is seconds into a run), then 4,000 are timed.
   Many users' rows do not fit in the caches together, as in the server. */
static int pipeline_bench(size_t users, size_t n) {
  const size_t chats = 10, window = 21, warm = 1500 * users, timed = 4000;
  const size_t steps = warm + timed;
  const char *answer = "Noted. I will remember that.";
  float *avec = xmalloc(MEM_DIM * sizeof(float));
  mem_hash_embed(answer, strlen(answer), avec);
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  char(*texts)[160] = xcalloc(n, sizeof *texts);
  float *vecs = xmalloc(n * MEM_DIM * sizeof(float));
  struct mem_row *rows = xcalloc(n, sizeof *rows);
  char(*ids)[ID_LEN + 1] = xcalloc(n, sizeof *ids);
  uint64_t idn = 0;
  for (size_t u = 0; u < users; u++) {
    char user[32], archive[ID_LEN + 1];
    snprintf(user, sizeof user, "user%zu", u);
    snprintf(archive, sizeof archive, "64%06x%016x", (unsigned)(u & 0xffffff), 0u);
    for (size_t i = 0; i < n; i++) {
      char w[5][16];
      for (int k = 0; k < 5; k++)
        word(rnd(&seed) % 4096, w[k], sizeof w[k]);
      snprintf(texts[i], sizeof texts[i], "I told %s that the %s %s is next to the %s %s.",
               w[0], w[1], w[2], w[3], w[4]);
      snprintf(ids[i], ID_LEN + 1, "66%022llx", (unsigned long long)++idn);
      mem_hash_embed(texts[i], strlen(texts[i]), vecs + i * MEM_DIM);
      rows[i] = (struct mem_row){.created_at = 1000000 + (int64_t)idn * 1000,
                                 .vec = vecs + i * MEM_DIM,
                                 .text = texts[i],
                                 .chat_id = archive,
                                 .role = MEM_ROLE_USER};
      memcpy(rows[i].id, ids[i], ID_LEN + 1);
    }
    if (mem_index_load(ix, user, MEM_HASH_MODEL, rows, n) != 0)
      return 1;
  }
  free(rows);
  free(vecs);
  free(texts);
  free(ids);
  /* Each chat's newest turn ids (a ring of window). */
  char(*win)[ID_LEN + 1] = xcalloc(users * chats * window, ID_LEN + 1);
  size_t *wn = xcalloc(users * chats, sizeof *wn);
  struct mem_recall_opts o;
  mem_recall_defaults(&o);
  o.k = 3;
  uint64_t sum = 0xcbf29ce484222325ULL;
  double rec_ns = 0, add_ns = 0;
  size_t nfound = 0;
  for (size_t s = 0; s < steps; s++) {
    size_t u = s % users, c = (s / users) % chats, wc = u * chats + c;
    char user[32], chat[ID_LEN + 1], q[200], qid[ID_LEN + 1], aid[ID_LEN + 1];
    snprintf(user, sizeof user, "user%zu", u);
    snprintf(chat, sizeof chat, "65%06x%016x", (unsigned)(u & 0xffffff), (unsigned)(c + 1));
    question(s, q, sizeof q);
    float qv[MEM_DIM];
    mem_hash_embed(q, strlen(q), qv);
    uint64_t qns = turn_add(ix, user, chat, ++idn, q, qv, MEM_ROLE_USER, qid);
    if (qns == UINT64_MAX)
      return 1;
    memcpy(win[wc * window + wn[wc]++ % window], qid, sizeof qid);
    const char *ex[32];
    size_t nex = EG_MIN(wn[wc], window);
    for (size_t w = 0; w < nex; w++)
      ex[w] = win[wc * window + w];
    o.exclude = ex;
    o.n_exclude = nex;
    o.query = q;
    struct mem_found f[8];
    size_t nf = 0;
    uint64_t t2 = cpu_ns();
    if (mem_index_recall(ix, user, MEM_HASH_MODEL, qv, q, 28, &o, true, f, &nf) != 0)
      return 1;
    uint64_t t3 = cpu_ns();
    uint64_t ans = turn_add(ix, user, chat, ++idn, answer, avec, MEM_ROLE_MODEL, aid);
    if (ans == UINT64_MAX)
      return 1;
    memcpy(win[wc * window + wn[wc]++ % window], aid, sizeof aid);
    if (s < warm) {
      mem_found_free(f, nf);
      continue;
    }
    rec_ns += (double)(t3 - t2);
    add_ns += (double)(qns + ans);
    nfound += nf;
    sum = found_sum(sum, f, nf);
    mem_found_free(f, nf);
  }
  struct mem_index_stats st;
  mem_index_stats(ix, &st);
  printf("memory_bench --pipeline: %zu users x %zu memories, %zu ai-messages (%zu timed), %.0f "
         "B/memory, kernels %s: recall %.2f us, add %.2f us per ai-message (CPU time) (%zu "
         "results), checksum %016llx\n",
         users, n, steps, timed, (double)st.bytes / (double)st.rows,
         mem_simd_avx2() ? "AVX2+FMA" : "scalar", rec_ns / 1e3 / (double)timed,
         add_ns / 1e3 / (double)timed, nfound, (unsigned long long)sum);
  mem_index_free(ix);
  free(win);
  free(wn);
  free(avec);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "--chat") == 0)
    return chat_bench(argc >= 3 ? strtoull(argv[2], NULL, 10) : 10000);
  if (argc >= 2 && strcmp(argv[1], "--pipeline") == 0)
    return pipeline_bench(argc >= 3 ? strtoull(argv[2], NULL, 10) : 10,
                          argc >= 4 ? strtoull(argv[3], NULL, 10) : 10000);
  size_t sizes[8] = {1000, 10000, 100000, 1000000};
  size_t nsizes = 4;
  size_t k = 3;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--sizes") == 0 && i + 1 < argc) {
      nsizes = 0;
      char *s = argv[++i];
      while (*s && nsizes < 8) {
        sizes[nsizes++] = strtoull(s, &s, 10);
        if (*s == ',')
          s++;
      }
    } else if (strcmp(argv[i], "--k") == 0 && i + 1 < argc) {
      k = strtoull(argv[++i], NULL, 10);
    } else {
      fprintf(stderr, "usage: memory_bench [--sizes a,b,c] [--k K]\n");
      return 2;
    }
  }
  if (k < 1 || k > 64)
    return 2;
  printf("memory_bench: dim %d, k %zu, kernels %s, single thread\n\n", BV_DIM, k,
         mem_simd_avx2() ? "AVX2+FMA" : "scalar");
  printf("| memories | queries | index p50 ms | index p99 ms | float32 scan p50 ms | "
         "recall@%zu vs exact | within 1e-3 | insert/s | load/s | RAM B/memory |\n",
         k);
  printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
  for (size_t si = 0; si < nsizes; si++) {
    size_t n = sizes[si];
    float *vecs = xmalloc(n * BV_DIM * sizeof(float));
    bv_fill(vecs, n);
    struct mem_row *rows = xcalloc(n, sizeof(*rows));
    for (size_t i = 0; i < n; i++) {
      row_id(i, rows[i].id);
      rows[i].created_at = (int64_t)i;
      rows[i].vec = vecs + i * BV_DIM;
    }
    struct mem_index *ix = mem_index_new(BV_DIM, 0);
    uint64_t t0 = clock_mono_ns();
    if (mem_index_load(ix, "bench", "bench", rows, n) != 0)
      return 1;
    uint64_t t1 = clock_mono_ns();
    double load_rate = (double)n / ((double)(t1 - t0) / 1e9);
    struct mem_index_stats st;
    mem_index_stats(ix, &st);
    double bpm = (double)st.bytes / (double)n;

    size_t nq = queries_for(n);
    double *lat = xmalloc(nq * sizeof(double));
    double *flat = xmalloc(nq * sizeof(double));
    float q[BV_DIM];
    struct mem_hit hits[64];
    uint32_t ex[64];
    size_t found = 0, near = 0;
    /* Index searches first, all timed back to back (the index stays warm as it would
       under steady traffic), then the exact float scans, which would evict it. */
    struct mem_hit *allhits = xcalloc(nq * k, sizeof(*allhits));
    size_t *nhs = xcalloc(nq, sizeof(size_t));
    for (size_t qi = 0; qi < nq; qi++) {
      bv_query(q, vecs, n, qi);
      uint64_t a = clock_mono_ns();
      if (mem_index_search(ix, "bench", "bench", q, k, NULL, 0, allhits + qi * k, &nhs[qi]) !=
          0)
        return 1;
      lat[qi] = (double)(clock_mono_ns() - a) / 1e6;
    }
    for (size_t qi = 0; qi < nq; qi++) {
      bv_query(q, vecs, n, qi);
      uint64_t b = clock_mono_ns();
      exact_topk(vecs, n, q, k, ex);
      flat[qi] = (double)(clock_mono_ns() - b) / 1e6;
      memcpy(hits, allhits + qi * k, k * sizeof(*hits));
      size_t nh = nhs[qi];
      float kth = mem_dot_f32(q, vecs + (size_t)ex[k - 1] * BV_DIM, BV_DIM);
      for (size_t h = 0; h < nh; h++) {
        size_t row = (size_t)strtoull(hits[h].id + 8, NULL, 16) - 1;
        near += mem_dot_f32(q, vecs + row * BV_DIM, BV_DIM) >= kth - 1e-3f;
      }
      for (size_t j = 0; j < k; j++) {
        char want[ID_LEN + 1];
        row_id(ex[j], want);
        for (size_t h = 0; h < nh; h++)
          found += strcmp(hits[h].id, want) == 0;
      }
    }
    free(allhits);
    free(nhs);
    double recall = (double)found / (double)(nq * k);
    double near_recall = (double)near / (double)(nq * k);

    /* Insert throughput: into an empty loaded user, the same rows one by one. */
    struct mem_index *ix2 = mem_index_new(BV_DIM, 0);
    if (mem_index_load(ix2, "bench", "bench", NULL, 0) != 0)
      return 1;
    size_t nins = EG_MIN(n, (size_t)200000);
    uint64_t i0 = clock_mono_ns();
    for (size_t i = 0; i < nins; i++)
      if (mem_index_add(ix2, "bench", "bench", &rows[i]) != 0)
        return 1;
    uint64_t i1 = clock_mono_ns();
    double ins_rate = (double)nins / ((double)(i1 - i0) / 1e9);
    mem_index_free(ix2);

    printf("| %zu | %zu | %.3f | %.3f | %.3f | %.4f | %.4f | %.0f | %.0f | %.0f |\n", n, nq,
           pct(lat, nq, 0.5), pct(lat, nq, 0.99), pct(flat, nq, 0.5), recall, near_recall,
           ins_rate, load_rate, bpm);
    fflush(stdout);
    free(lat);
    free(flat);
    mem_index_free(ix);
    free(rows);
    free(vecs);
  }
  return 0;
}
