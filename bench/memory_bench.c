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
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int main(int argc, char **argv) {
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
      if (mem_index_search(ix, "bench", "bench", q, k, NULL, 0, allhits + qi * k, &nhs[qi]) != 0)
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
           ins_rate,
           load_rate, bpm);
    fflush(stdout);
    free(lat);
    free(flat);
    mem_index_free(ix);
    free(rows);
    free(vecs);
  }
  return 0;
}
