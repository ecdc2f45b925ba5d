// faiss_flat: the FAISS baseline for bench/memory_bench.c. Same vectors and queries
// (memory_bench_vec.h), faiss::IndexFlatIP (exact inner product, float32), one query at a
// time, one thread (omp_set_num_threads(1)), top-k. Prints one markdown row per size:
// memories, queries, p50 ms, p99 ms, add/s, RAM bytes per memory (the float32 codes).
//
// Usage: faiss_flat [--sizes 1000,10000,100000,1000000] [--k 3]
#include <faiss/IndexFlat.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "memory_bench_vec.h"

static size_t queries_for(size_t n) {
  if (n <= 10000) return 2000;
  if (n <= 100000) return 300;
  return 40;
}

static double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int main(int argc, char **argv) {
  std::vector<size_t> sizes = {1000, 10000, 100000, 1000000};
  size_t k = 3;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
      sizes.clear();
      char *s = argv[++i];
      while (*s) {
        sizes.push_back(strtoull(s, &s, 10));
        if (*s == ',') s++;
      }
    } else if (!strcmp(argv[i], "--k") && i + 1 < argc) {
      k = strtoull(argv[++i], nullptr, 10);
    } else {
      fprintf(stderr, "usage: faiss_flat [--sizes a,b,c] [--k K]\n");
      return 2;
    }
  }
  omp_set_num_threads(1);
  printf("faiss_flat: IndexFlatIP, dim %d, k %zu, 1 thread\n\n", BV_DIM, k);
  printf("| memories | queries | FAISS p50 ms | FAISS p99 ms | add/s | RAM B/memory |\n");
  printf("| --- | --- | --- | --- | --- | --- |\n");
  for (size_t n : sizes) {
    std::vector<float> vecs(n * BV_DIM);
    bv_fill(vecs.data(), n);
    faiss::IndexFlatIP index(BV_DIM);
    double t0 = now_ms();
    index.add((faiss::Index::idx_t)n, vecs.data());
    double t1 = now_ms();
    size_t nq = queries_for(n);
    std::vector<double> lat(nq);
    std::vector<float> q(BV_DIM), dist(k);
    std::vector<faiss::Index::idx_t> labels(k);
    for (size_t qi = 0; qi < nq; qi++) {
      bv_query(q.data(), vecs.data(), n, qi);
      double a = now_ms();
      index.search(1, q.data(), (faiss::Index::idx_t)k, dist.data(), labels.data());
      lat[qi] = now_ms() - a;
    }
    std::sort(lat.begin(), lat.end());
    auto pct = [&](double p) { return lat[(size_t)(p * (double)(nq - 1) + 0.5)]; };
    printf("| %zu | %zu | %.3f | %.3f | %.0f | %zu |\n", n, nq, pct(0.5), pct(0.99),
           (double)n / ((t1 - t0) / 1000.0), index.codes.size() / n);
    fflush(stdout);
  }
  return 0;
}
