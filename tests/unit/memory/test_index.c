/* Vector kernels (SIMD vs scalar) and the builtin index: insert, replace, delete, search
   exactness vs a float brute force, exclusions, user isolation, models, LRU and budget,
   concurrent readers with a writer. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "memory/memory.h"

static uint64_t rng = 88172645463325252ULL;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static float frand(void) {
  return (float)((double)(next_rand() >> 11) / 9007199254740992.0) * 2 - 1;
}

static void rand_unit(float *v, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    v[i] = frand();
    s += (double)v[i] * v[i];
  }
  for (size_t i = 0; i < n; i++)
    v[i] = (float)(v[i] / sqrt(s));
}

static void mk_id(char out[ID_LEN + 1], unsigned n) {
  snprintf(out, ID_LEN + 1, "%024x", n);
}

static void test_kernels_agree(void **state) {
  (void)state;
  if (!mem_simd_avx2())
    skip();
  float a[800], b[800];
  int8_t qa[800], qb[800];
  for (size_t n = 0; n <= 800; n = n < 70 ? n + 1 : n + 73) {
    for (size_t i = 0; i < n; i++) {
      a[i] = frand();
      b[i] = frand();
      qa[i] = (int8_t)(next_rand() % 255 - 127);
      qb[i] = (int8_t)(next_rand() % 255 - 127);
    }
    float s = mem__dot_f32_scalar(a, b, n), v = mem__dot_f32_avx2(a, b, n);
    assert_true(fabsf(s - v) <= 1e-4f * (1 + fabsf(s)));
    assert_int_equal(mem__dot_i8_scalar(qa, qb, n), mem__dot_i8_avx2(qa, qb, n));
    s = mem__dot_f32_i8_scalar(a, qb, n);
    v = mem__dot_f32_i8_avx2(a, qb, n);
    assert_true(fabsf(s - v) <= 1e-3f * (1 + fabsf(s)));
  }
  float big[768];
  for (int i = 0; i < 768; i++)
    big[i] = 127.0f;
  int8_t qq[768];
  for (int i = 0; i < 768; i++)
    qq[i] = -127;
  assert_int_equal(mem__dot_i8_avx2(qq, qq, 768), 127 * 127 * 768);
  (void)big;
}

/* The quad-column kernels agree with each other and with a plain dot product, for row
   counts around the 8-row stride. */
static void test_quad_kernels(void **state) {
  (void)state;
  int8_t col[4 * 40], q[4] = {-127, 3, 0, 127};
  for (size_t i = 0; i < sizeof col; i++)
    col[i] = (int8_t)(next_rand() % 255 - 127);
  for (size_t n = 0; n <= 40; n++) {
    int32_t a[40] = {0}, b[40] = {0};
    for (size_t r = 0; r < n; r++)
      a[r] = b[r] = (int32_t)r; /* accumulates onto what is there */
    mem__quad_col_scalar(col, q, n, a);
    if (mem_simd_avx2())
      mem__quad_col_avx2(col, q, n, b);
    else
      mem__quad_col_scalar(col, q, n, b);
    for (size_t r = 0; r < n; r++) {
      int32_t want = (int32_t)r + q[0] * col[4 * r] + q[1] * col[4 * r + 1] +
                     q[2] * col[4 * r + 2] + q[3] * col[4 * r + 3];
      assert_int_equal(a[r], want);
      assert_int_equal(b[r], want);
    }
  }
}

static const char *const CHAT_A = "00000000000000000000000a";
static const char *const CHAT_B = "00000000000000000000000b";

/* Rows with texts (some without vectors): the keyword side ranks by BM25 over this user's
   memories, finds rows that have no vector, never another user's; a vector given later
   keeps the text. */
static void test_keyword_side(void **state) {
  (void)state;
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  static const char *const texts[] = {
      "My sister Beatrice lives in Lisbon.",                  /* 1 */
      "The weather in Lisbon was lovely today.",              /* 2 */
      "Beatrice plays the violin, Beatrice practises daily.", /* 3 */
      "Nothing related at all here.",                         /* 4 */
  };
  struct mem_row rows[4];
  memset(rows, 0, sizeof rows);
  float vecs[4][MEM_DIM];
  for (unsigned i = 0; i < 4; i++) {
    mk_id(rows[i].id, i + 1);
    rows[i].created_at = 1000 + i;
    rows[i].text = texts[i];
    rows[i].chat_id = CHAT_A;
    mem_hash_embed(texts[i], strlen(texts[i]), vecs[i]);
    rows[i].vec = i == 2 ? NULL : vecs[i]; /* row 3: not embedded yet */
  }
  assert_int_equal(mem_index_load(ix, "alice", "m", rows, 4), 0);
  struct mem_row other = {.created_at = 5, .text = "Beatrice Beatrice Beatrice Lisbon"};
  mk_id(other.id, 99);
  assert_int_equal(mem_index_load(ix, "bob", "m", &other, 1), 0);

  struct mem_hit h[8];
  size_t n = 0;
  assert_int_equal(
      mem_index_keyword(ix, "alice", "Where does Beatrice live?", 8, NULL, 0, h, &n), 0);
  /* "beatric" is in rows 1 and 3 (twice in 3, which is longer); "live" only in row 1. */
  assert_int_equal(n, 2);
  char want[ID_LEN + 1];
  mk_id(want, 1);
  assert_string_equal(h[0].id, want);
  mk_id(want, 3);
  assert_string_equal(h[1].id, want); /* no vector, still found by its words */
  assert_true(h[0].score > h[1].score && h[1].score > 0);
  /* Stopwords alone find nothing; an excluded id never comes back. */
  assert_int_equal(mem_index_keyword(ix, "alice", "where is the", 8, NULL, 0, h, &n), 0);
  assert_int_equal(n, 0);
  mk_id(want, 1);
  const char *ex[1] = {want};
  assert_int_equal(mem_index_keyword(ix, "alice", "Beatrice lives", 8, ex, 1, h, &n), 0);
  assert_int_equal(n, 1);
  assert_string_not_equal(h[0].id, want);
  /* Bob's index only knows Bob's memory. */
  assert_int_equal(mem_index_keyword(ix, "bob", "Beatrice", 8, NULL, 0, h, &n), 0);
  assert_int_equal(n, 1);
  mk_id(want, 99);
  assert_string_equal(h[0].id, want);
  assert_int_equal(mem_index_keyword(ix, "carol", "Beatrice", 8, NULL, 0, h, &n), EG_ENOTFOUND);

  /* The vector of row 3 arrives (text, chat and role unchanged); the vector side finds it. */
  struct mem_row late = {.created_at = 1002, .vec = vecs[2], .text = "ignored"};
  mk_id(late.id, 3);
  assert_int_equal(mem_index_add(ix, "alice", "m", &late), 0);
  assert_int_equal(mem_index_search(ix, "alice", "m", vecs[2], 1, NULL, 0, h, &n), 0);
  assert_int_equal(n, 1);
  mk_id(want, 3);
  assert_string_equal(h[0].id, want);
  struct mem_recall_opts o;
  mem_recall_defaults(&o);
  o.k = 1;
  struct mem_found f[1];
  assert_int_equal(mem_index_recall(ix, "alice", "m", vecs[2], texts[2], 8, &o, false, f, &n),
                   0);
  assert_int_equal(n, 1);
  assert_string_equal(f[0].text, texts[2]);
  assert_string_equal(f[0].chat_id, CHAT_A);
  mem_found_free(f, n);
  /* A vector of another model is refused; a text-only row is not. */
  assert_int_equal(mem_index_add(ix, "alice", "other", &late), EG_EINVAL);
  struct mem_row note = {.created_at = 2000, .text = "a note", .role = MEM_ROLE_NOTE};
  mk_id(note.id, 50);
  assert_int_equal(mem_index_add(ix, "alice", "other", &note), 0);
  mem_index_free(ix);
}

/* Neighbours: each recalled memory comes with the turns just before and after it in its
   own chat (not another chat's), and removing a turn relinks its neighbours. */
static void test_neighbours(void **state) {
  (void)state;
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  static const char *const texts[] = {
      "Where should we travel in spring?", /* 1, chat A, user */
      "How about Kyoto for the blossoms?", /* 2, chat B, user */
      "Kyoto is lovely in April.",         /* 3, chat A, model */
      "I booked the flight to Kyoto.",     /* 4, chat A, user */
      "Great, enjoy the temples!",         /* 5, chat A, model */
  };
  const char *chats[] = {CHAT_A, CHAT_B, CHAT_A, CHAT_A, CHAT_A};
  struct mem_row rows[5];
  memset(rows, 0, sizeof rows);
  for (unsigned i = 0; i < 5; i++) {
    mk_id(rows[i].id, i + 1);
    rows[i].created_at = 100 + i;
    rows[i].text = texts[i];
    rows[i].chat_id = chats[i];
    rows[i].role = i == 2 || i == 4 ? MEM_ROLE_MODEL : MEM_ROLE_USER;
  }
  assert_int_equal(mem_index_load(ix, "u", "m", rows, 5), 0);
  struct mem_recall_opts o;
  mem_recall_defaults(&o);
  o.k = 1;
  struct mem_found f[1];
  size_t n = 0;
  assert_int_equal(mem_index_recall(ix, "u", "m", NULL, "booked flight", 8, &o, true, f, &n),
                   0);
  assert_int_equal(n, 1);
  assert_string_equal(f[0].text, texts[3]);
  assert_string_equal(f[0].before, texts[2]); /* not row 2: another chat */
  assert_int_equal(f[0].before_role, MEM_ROLE_MODEL);
  assert_string_equal(f[0].after, texts[4]);
  mem_found_free(f, n);
  /* Remove row 3: row 4's previous turn is now row 1. */
  char id3[ID_LEN + 1];
  mk_id(id3, 3);
  assert_int_equal(mem_index_remove(ix, "u", id3), 0);
  assert_int_equal(mem_index_recall(ix, "u", "m", NULL, "booked flight", 8, &o, true, f, &n),
                   0);
  assert_string_equal(f[0].before, texts[0]);
  mem_found_free(f, n);
  /* A new turn of chat A follows row 5; without neighbours nothing is filled. */
  struct mem_row next = {
      .created_at = 200, .text = "We are back from the trip.", .chat_id = CHAT_A};
  mk_id(next.id, 6);
  assert_int_equal(mem_index_add(ix, "u", "m", &next), 0);
  assert_int_equal(mem_index_recall(ix, "u", "m", NULL, "temples", 8, &o, true, f, &n), 0);
  assert_string_equal(f[0].text, texts[4]);
  assert_string_equal(f[0].after, "We are back from the trip.");
  mem_found_free(f, n);
  assert_int_equal(mem_index_recall(ix, "u", "m", NULL, "temples", 8, &o, false, f, &n), 0);
  assert_null(f[0].before);
  assert_null(f[0].after);
  mem_found_free(f, n);
  mem_index_free(ix);
}

/* Removing most rows compacts the user in place: searches and the row count stay right. */
static void test_compaction(void **state) {
  (void)state;
  enum { N = 400 };
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  assert_int_equal(mem_index_load(ix, "u", "m", NULL, 0), 0);
  static float v[N][MEM_DIM];
  char text[64];
  for (unsigned i = 0; i < N; i++) {
    snprintf(text, sizeof text, "memory number %u about topic%u", i, i % 7);
    mem_hash_embed(text, strlen(text), v[i]);
    struct mem_row r = {.created_at = i, .vec = v[i], .text = text, .chat_id = CHAT_A};
    mk_id(r.id, i + 1);
    assert_int_equal(mem_index_add(ix, "u", "m", &r), 0);
  }
  for (unsigned i = 0; i < N; i++) {
    if (i % 10 == 3)
      continue;
    char id[ID_LEN + 1];
    mk_id(id, i + 1);
    assert_int_equal(mem_index_remove(ix, "u", id), 0);
  }
  struct mem_index_stats st;
  mem_index_stats(ix, &st);
  assert_int_equal(st.rows, N / 10);
  struct mem_hit h[4];
  size_t n = 0;
  assert_int_equal(mem_index_search(ix, "u", "m", v[13], 1, NULL, 0, h, &n), 0);
  char want[ID_LEN + 1];
  mk_id(want, 14);
  assert_int_equal(n, 1);
  assert_string_equal(h[0].id, want);
  assert_int_equal(mem_index_keyword(ix, "u", "topic6", 4, NULL, 0, h, &n), 0);
  assert_true(n > 0);
  for (size_t i = 0; i < n; i++) {
    unsigned id;
    assert_int_equal(sscanf(h[i].id, "%x", &id), 1);
    assert_int_equal((id - 1) % 10, 3);
    assert_int_equal((id - 1) % 7, 6);
  }
  mem_index_free(ix);
}

static void test_quantize(void **state) {
  (void)state;
  float v[MEM_DIM];
  int8_t q[MEM_DIM];
  rand_unit(v, MEM_DIM);
  float sc = mem_quantize_i8(v, MEM_DIM, q);
  assert_true(sc > 0);
  for (size_t i = 0; i < MEM_DIM; i++)
    assert_true(fabsf(q[i] * sc - v[i]) <= sc * 0.5f + 1e-6f);
  memset(v, 0, sizeof(v));
  assert_true(mem_quantize_i8(v, MEM_DIM, q) == 0.0f);
  v[3] = NAN;
  assert_true(mem_quantize_i8(v, MEM_DIM, q) == 0.0f);
}

/* Search returns exactly what a float brute force ranks first (recall@3 on random unit
   vectors, where the int8 error matters most, must stay >= 0.99). */
static void test_search_matches_brute_force(void **state) {
  (void)state;
  enum { N = 3000, Q = 200 };
  float *vecs = malloc((size_t)N * MEM_DIM * sizeof(float));
  struct mem_row *rows = calloc(N, sizeof(*rows));
  for (unsigned i = 0; i < N; i++) {
    rand_unit(vecs + (size_t)i * MEM_DIM, MEM_DIM);
    mk_id(rows[i].id, i + 1);
    rows[i].created_at = i;
    rows[i].vec = vecs + (size_t)i * MEM_DIM;
  }
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  assert_int_equal(mem_index_load(ix, "u1", "m", rows, N), 0);
  int found = 0;
  for (int qn = 0; qn < Q; qn++) {
    float q[MEM_DIM];
    /* A query near a random row, as real queries are near their answers. */
    const float *base = vecs + (size_t)(next_rand() % N) * MEM_DIM;
    for (size_t d = 0; d < MEM_DIM; d++)
      q[d] = base[d] + 0.05f * frand();
    float best[3] = {-2, -2, -2};
    int bi[3] = {-1, -1, -1};
    for (int i = 0; i < N; i++) {
      float s = mem__dot_f32_scalar(q, vecs + (size_t)i * MEM_DIM, MEM_DIM);
      for (int j = 0; j < 3; j++) {
        if (s > best[j]) {
          for (int m = 2; m > j; m--) {
            best[m] = best[m - 1];
            bi[m] = bi[m - 1];
          }
          best[j] = s;
          bi[j] = i;
          break;
        }
      }
    }
    struct mem_hit hits[3];
    size_t nh;
    assert_int_equal(mem_index_search(ix, "u1", "m", q, 3, NULL, 0, hits, &nh), 0);
    assert_int_equal(nh, 3);
    assert_true(hits[0].score >= hits[1].score && hits[1].score >= hits[2].score);
    for (int j = 0; j < 3; j++) {
      char want[ID_LEN + 1];
      mk_id(want, (unsigned)bi[j] + 1);
      for (int h = 0; h < 3; h++)
        found += strcmp(hits[h].id, want) == 0;
    }
  }
  assert_true(found >= (int)(0.99 * 3 * Q));
  mem_index_free(ix);
  free(rows);
  free(vecs);
}

static void test_insert_delete_exclude_isolation(void **state) {
  (void)state;
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  float v[4][MEM_DIM];
  for (int i = 0; i < 4; i++)
    rand_unit(v[i], MEM_DIM);
  struct mem_hit hits[8];
  size_t nh = 99;
  assert_int_equal(mem_index_search(ix, "alice", "m", v[0], 3, NULL, 0, hits, &nh),
                   EG_ENOTFOUND);
  assert_int_equal(nh, 0);
  struct mem_row r = {.created_at = 1, .vec = v[0]};
  mk_id(r.id, 1);
  assert_int_equal(mem_index_add(ix, "alice", "m", &r), EG_ENOTFOUND); /* not loaded */
  assert_int_equal(mem_index_load(ix, "alice", "m", NULL, 0), 0);
  assert_int_equal(mem_index_load(ix, "bob", "m", NULL, 0), 0);
  assert_true(mem_index_loaded(ix, "alice"));
  assert_false(mem_index_loaded(ix, "carol"));
  for (unsigned i = 0; i < 3; i++) {
    mk_id(r.id, i + 1);
    r.vec = v[i];
    r.created_at = i;
    assert_int_equal(mem_index_add(ix, "alice", "m", &r), 0);
  }
  mk_id(r.id, 100);
  r.vec = v[3];
  assert_int_equal(mem_index_add(ix, "bob", "m", &r), 0);
  /* Bad ids and other models are refused. */
  struct mem_row bad = r;
  snprintf(bad.id, sizeof(bad.id), "XYZ");
  assert_int_equal(mem_index_add(ix, "alice", "m", &bad), EG_EINVAL);
  static const char *const bad_ids[] = {"00000000000000000000006",  "00000000000000000000006A",
                                        "00000000000000000000006g", "0000000000000000000 0006",
                                        "G00000000000000000000064", ""};
  for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
    snprintf(bad.id, sizeof(bad.id), "%s", bad_ids[i]);
    assert_int_equal(mem_index_add(ix, "alice", "m", &bad), EG_EINVAL);
  }
  /* One past the 24 digits is not the id either. */
  assert_int_equal(mem_index_remove(ix, "bob", "0000000000000000000000640"), EG_ENOTFOUND);
  assert_int_equal(mem_index_add(ix, "alice", "other-model", &r), EG_EINVAL);
  assert_int_equal(mem_index_search(ix, "alice", "other-model", v[0], 3, NULL, 0, hits, &nh),
                   EG_EINVAL);
  /* Alice's search sees only hers, even for a query equal to Bob's vector. */
  assert_int_equal(mem_index_search(ix, "alice", "m", v[3], 8, NULL, 0, hits, &nh), 0);
  assert_int_equal(nh, 3);
  for (size_t i = 0; i < nh; i++)
    assert_string_not_equal(hits[i].id, "000000000000000000000064");
  /* Best match first; exclusion removes it. */
  assert_int_equal(mem_index_search(ix, "alice", "m", v[1], 1, NULL, 0, hits, &nh), 0);
  assert_string_equal(hits[0].id, "000000000000000000000002");
  assert_true(fabsf(hits[0].score - 1.0f) < 0.01f);
  const char *ex[] = {"000000000000000000000002", "junk"};
  assert_int_equal(mem_index_search(ix, "alice", "m", v[1], 3, ex, 2, hits, &nh), 0);
  assert_int_equal(nh, 2);
  for (size_t i = 0; i < nh; i++)
    assert_string_not_equal(hits[i].id, ex[0]);
  /* Replace id 2 with v[0]'s vector: searching v[0] now ties 1 and 2; newer first. */
  mk_id(r.id, 2);
  r.vec = v[0];
  r.created_at = 50;
  assert_int_equal(mem_index_add(ix, "alice", "m", &r), 0);
  assert_int_equal(mem_index_search(ix, "alice", "m", v[0], 2, NULL, 0, hits, &nh), 0);
  assert_string_equal(hits[0].id, "000000000000000000000002");
  assert_string_equal(hits[1].id, "000000000000000000000001");
  struct mem_index_stats st;
  mem_index_stats(ix, &st);
  assert_int_equal(st.users, 2);
  assert_int_equal(st.rows, 4);
  /* Delete. */
  assert_int_equal(mem_index_remove(ix, "alice", "000000000000000000000002"), 0);
  assert_int_equal(mem_index_remove(ix, "alice", "000000000000000000000002"), EG_ENOTFOUND);
  assert_int_equal(mem_index_remove(ix, "bob", "000000000000000000000001"), EG_ENOTFOUND);
  assert_int_equal(mem_index_search(ix, "alice", "m", v[0], 8, NULL, 0, hits, &nh), 0);
  assert_int_equal(nh, 2);
  assert_string_equal(hits[0].id, "000000000000000000000001");
  mem_index_stats(ix, &st);
  assert_int_equal(st.rows, 3);
  mem_index_drop(ix, "alice");
  assert_false(mem_index_loaded(ix, "alice"));
  mem_index_stats(ix, &st);
  assert_int_equal(st.users, 1);
  assert_int_equal(st.rows, 1);
  mem_index_free(ix);
}

/* Many inserts and deletes keep the id map consistent with a reference model. */
static void test_churn(void **state) {
  (void)state;
  enum { IDS = 500 };
  struct mem_index *ix = mem_index_new(16, 0);
  assert_int_equal(mem_index_load(ix, "u", "m", NULL, 0), 0);
  bool present[IDS] = {0};
  float v[16];
  for (int step = 0; step < 20000; step++) {
    unsigned id = (unsigned)(next_rand() % IDS);
    char hex[ID_LEN + 1];
    mk_id(hex, id + 1);
    if (next_rand() % 3) {
      for (int d = 0; d < 16; d++)
        v[d] = frand();
      struct mem_row r = {.created_at = step, .vec = v};
      memcpy(r.id, hex, sizeof(hex));
      assert_int_equal(mem_index_add(ix, "u", "m", &r), 0);
      present[id] = true;
    } else {
      assert_int_equal(mem_index_remove(ix, "u", hex), present[id] ? 0 : EG_ENOTFOUND);
      present[id] = false;
    }
  }
  size_t count = 0;
  for (int i = 0; i < IDS; i++)
    count += present[i];
  struct mem_index_stats st;
  mem_index_stats(ix, &st);
  assert_int_equal(st.rows, count);
  struct mem_hit *hits = calloc(IDS, sizeof(*hits));
  size_t nh;
  assert_int_equal(mem_index_search(ix, "u", "m", v, IDS, NULL, 0, hits, &nh), 0);
  assert_int_equal(nh, count);
  for (size_t i = 0; i < nh; i++) {
    unsigned id;
    assert_int_equal(sscanf(hits[i].id, "%x", &id), 1);
    assert_true(present[id - 1]);
  }
  free(hits);
  mem_index_free(ix);
}

static void test_lru_budget(void **state) {
  (void)state;
  enum { PER = 100 };
  float *vecs = malloc(PER * MEM_DIM * sizeof(float));
  struct mem_row rows[PER] = {0};
  for (unsigned i = 0; i < PER; i++) {
    rand_unit(vecs + i * MEM_DIM, MEM_DIM);
    mk_id(rows[i].id, i + 1);
    rows[i].created_at = i;
    rows[i].vec = vecs + i * MEM_DIM;
  }
  /* Measure one user's bytes, then allow three users. */
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  assert_int_equal(mem_index_load(ix, "probe", "m", rows, PER), 0);
  struct mem_index_stats st;
  mem_index_stats(ix, &st);
  size_t one = st.bytes;
  assert_true(one / PER <= 1024); /* <= 1 KiB per memory */
  mem_index_free(ix);

  ix = mem_index_new(MEM_DIM, one * 3 + one / 2);
  assert_int_equal(mem_index_load(ix, "u1", "m", rows, PER), 0);
  assert_int_equal(mem_index_load(ix, "u2", "m", rows, PER), 0);
  assert_int_equal(mem_index_load(ix, "u3", "m", rows, PER), 0);
  assert_true(mem_index_loaded(ix, "u1")); /* u1 is now the most recently used */
  assert_int_equal(mem_index_load(ix, "u4", "m", rows, PER), 0);
  /* u2 was the least recently used: gone, the others stay. */
  assert_false(mem_index_loaded(ix, "u2"));
  assert_true(mem_index_loaded(ix, "u1"));
  assert_true(mem_index_loaded(ix, "u3"));
  assert_true(mem_index_loaded(ix, "u4"));
  mem_index_stats(ix, &st);
  assert_int_equal(st.users, 3);
  assert_true(st.bytes <= st.budget);
  assert_int_equal(st.evictions, 1);
  /* Growing u4 by inserts past the budget evicts the least recently used other user. */
  float v[MEM_DIM];
  for (unsigned i = 0; i < PER; i++) {
    rand_unit(v, MEM_DIM);
    struct mem_row r = {.created_at = 1000 + i, .vec = v};
    mk_id(r.id, 5000 + i);
    assert_int_equal(mem_index_add(ix, "u4", "m", &r), 0);
  }
  mem_index_stats(ix, &st);
  assert_true(st.bytes <= st.budget);
  assert_true(mem_index_loaded(ix, "u4"));
  assert_false(mem_index_loaded(ix, "u3"));
  /* Reloading a user replaces its rows. */
  assert_int_equal(mem_index_load(ix, "u4", "m", rows, 10), 0);
  mem_index_stats(ix, &st);
  size_t n4 = 0;
  struct mem_hit hits[PER];
  assert_int_equal(mem_index_search(ix, "u4", "m", vecs, PER, NULL, 0, hits, &n4), 0);
  assert_int_equal(n4, 10);
  mem_index_free(ix);
  free(vecs);
}

struct reader_arg {
  struct mem_index *ix;
  float q[MEM_DIM];
  int bad;
};

static void *reader(void *p) {
  struct reader_arg *a = p;
  for (int i = 0; i < 300; i++) {
    struct mem_hit hits[5];
    size_t nh;
    int rc = mem_index_search(a->ix, "u", "m", a->q, 5, NULL, 0, hits, &nh);
    if (rc == EG_ENOTFOUND)
      continue; /* dropped by the writer for a moment */
    if (rc != 0 || nh > 5)
      a->bad++;
  }
  return NULL;
}

static void test_concurrent_readers_writer(void **state) {
  (void)state;
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  assert_int_equal(mem_index_load(ix, "u", "m", NULL, 0), 0);
  struct reader_arg ra[2] = {{.ix = ix}, {.ix = ix}};
  rand_unit(ra[0].q, MEM_DIM);
  rand_unit(ra[1].q, MEM_DIM);
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, reader, &ra[i]), 0);
  float v[MEM_DIM];
  for (unsigned i = 0; i < 2000; i++) {
    rand_unit(v, MEM_DIM);
    struct mem_row r = {.created_at = i, .vec = v};
    mk_id(r.id, i + 1);
    int rc = mem_index_add(ix, "u", "m", &r);
    assert_true(rc == 0 || rc == EG_ENOTFOUND);
    if (i % 7 == 0)
      (void)mem_index_remove(ix, "u", r.id);
    if (i % 500 == 499) {
      mem_index_drop(ix, "u");
      assert_int_equal(mem_index_load(ix, "u", "m", NULL, 0), 0);
    }
  }
  for (int i = 0; i < 2; i++) {
    pthread_join(th[i], NULL);
    assert_int_equal(ra[i].bad, 0);
  }
  mem_index_free(ix);
}

/* mem__quads32 (32 row sums over some quad columns, added to dots, then the threshold
   mask) agrees between its scalar and AVX2 forms, and with mem__quad_col. */
static void test_quads32_kernels(void **state) {
  (void)state;
  enum { ROWS = 96, NQ = 24 };
  int8_t *colbuf = malloc((size_t)NQ * ROWS * 4);
  const int8_t *cols[NQ];
  int32_t qw[NQ];
  float scale[ROWS];
  for (int it = 0; it < 300; it++) {
    for (size_t i = 0; i < (size_t)NQ * ROWS * 4; i++)
      colbuf[i] = (int8_t)((int)(next_rand() % 255) - 127);
    for (int i = 0; i < NQ; i++) {
      cols[i] = colbuf + (size_t)i * ROWS * 4;
      int8_t q[4];
      for (int c = 0; c < 4; c++)
        q[c] = (int8_t)((int)(next_rand() % 255) - 127);
      memcpy(&qw[i], q, 4);
    }
    for (int r = 0; r < ROWS; r++)
      scale[r] = (float)(next_rand() % 1000) / 1e5f;
    size_t nq = next_rand() % (NQ + 1), r0 = next_rand() % (ROWS - 32 + 1);
    size_t n = it % 3 ? 32 : 1 + next_rand() % 32;
    float thr = it % 5 == 0 ? -INFINITY : frand() * 50;
    int32_t init[32], a[32], b[32], ref[32];
    for (int j = 0; j < 32; j++)
      init[j] = (int32_t)(next_rand() % 20001) - 10000;
    memcpy(a, init, sizeof a);
    memcpy(b, init, sizeof b);
    memcpy(ref, init, sizeof ref);
    for (size_t i = 0; i < nq; i++) {
      int8_t q[4];
      memcpy(q, &qw[i], 4);
      mem__quad_col_scalar(cols[i] + 4 * r0, q, n, ref);
    }
    uint32_t ma = mem__quads32_scalar(cols, qw, nq, r0, n, scale, thr, a);
    uint32_t mb = mem_simd_avx2() ? mem__quads32_avx2(cols, qw, nq, r0, n, scale, thr, b)
                                  : mem__quads32_scalar(cols, qw, nq, r0, n, scale, thr, b);
    assert_memory_equal(a, ref, n * sizeof(int32_t));
    assert_memory_equal(b, ref, n * sizeof(int32_t));
    assert_int_equal(ma, mb);
    for (size_t j = 0; j < n; j++)
      assert_int_equal(ma >> j & 1, (float)ref[j] * scale[r0 + j] > thr);
    if (n < 32)
      assert_int_equal(ma >> n, 0);
  }
  free(colbuf);
}

/* The AVX2 quantisation gives the scalar one's values and scale, edge cases included. */
static void test_quantize_agree(void **state) {
  (void)state;
  if (!mem_simd_avx2())
    skip();
  float v[777];
  int8_t a[777], b[777];
  for (int it = 0; it < 200; it++) {
    size_t n = 1 + next_rand() % 777;
    for (size_t i = 0; i < n; i++)
      v[i] = it % 4 == 0 ? (float)((int)(next_rand() % 9) - 4) / 8 : frand();
    if (it % 7 == 1)
      v[next_rand() % n] = NAN;
    if (it % 11 == 2)
      v[next_rand() % n] = INFINITY;
    if (it % 13 == 3)
      for (size_t i = 0; i < n; i++)
        v[i] = (i % 5 == 0) ? 1e-42f : 0; /* subnormal: 127 / max overflows */
    if (it % 17 == 4)
      memset(v, 0, n * sizeof(float));
    float sa = mem__quantize_i8_scalar(v, n, a), sb = mem__quantize_i8_avx2(v, n, b);
    assert_memory_equal(&sa, &sb, sizeof sa);
    assert_memory_equal(a, b, n);
  }
}

/* The reference of mem_index_search (memory.h): int8 scores of every row with the
   quantised query, the best C = max(2k, 32) by (score, then row), those re-scored with the
   float query over its nonzero dimensions, sorted by (score, newer, row). */
struct ref_row {
  int8_t q[MEM_DIM];
  float scale;
  bool live;
  int64_t created;
};

static size_t ref_search(const struct ref_row *rows, size_t n, const float *query, size_t k,
                         const bool *excl, uint32_t *out, float *score) {
  int8_t qq[MEM_DIM];
  (void)mem_quantize_i8(query, MEM_DIM, qq);
  size_t cap = k * 2 > 32 ? k * 2 : 32;
  uint32_t *best = calloc(cap + 1, sizeof *best);
  float *bs = calloc(cap + 1, sizeof *bs);
  size_t nb = 0;
  bool any = false;
  for (size_t d = 0; d < MEM_DIM; d++)
    any |= qq[d] != 0;
  for (size_t r = 0; r < n && any; r++) {
    if (!rows[r].live || excl[r])
      continue;
    int32_t dot = mem__dot_i8_scalar(qq, rows[r].q, MEM_DIM);
    float s = (float)dot * rows[r].scale;
    size_t j = nb < cap ? nb++ : cap;
    if (j == cap && !(s > bs[cap - 1]))
      continue;
    if (j == cap)
      j = cap - 1;
    while (j > 0 && s > bs[j - 1]) { /* earlier rows win ties */
      best[j] = best[j - 1];
      bs[j] = bs[j - 1];
      j--;
    }
    best[j] = (uint32_t)r;
    bs[j] = s;
  }
  for (size_t i = 0; i < nb; i++) {
    float d = 0;
    for (size_t dd = 0; dd < MEM_DIM; dd++)
      if (query[dd] != 0.0f)
        d += query[dd] * (float)rows[best[i]].q[dd];
    bs[i] = d * rows[best[i]].scale;
  }
  for (size_t i = 1; i < nb; i++) { /* insertion sort by (score, newer, row) */
    for (size_t j = i; j > 0; j--) {
      uint32_t x = best[j - 1], y = best[j];
      bool swap = bs[j] > bs[j - 1] ||
                  (bs[j] == bs[j - 1] && (rows[y].created > rows[x].created ||
                                          (rows[y].created == rows[x].created && y < x)));
      if (!swap)
        break;
      best[j - 1] = y;
      best[j] = x;
      float t = bs[j];
      bs[j] = bs[j - 1];
      bs[j - 1] = t;
    }
  }
  size_t m = nb < k ? nb : k;
  memcpy(out, best, m * sizeof *out);
  memcpy(score, bs, m * sizeof *score);
  free(best);
  free(bs);
  return m;
}

static void check_against_ref(struct mem_index *ix, const struct ref_row *rows, size_t n,
                              const float *query, size_t k, size_t nex) {
  char ids[8][ID_LEN + 1];
  const char *ex[8];
  bool *excl = calloc(n, sizeof *excl);
  for (size_t i = 0; i < nex; i++) {
    unsigned r = (unsigned)(n - 1 - next_rand() % 40); /* recent rows, like a chat window */
    mk_id(ids[i], r + 1);
    ex[i] = ids[i];
    excl[r] = true;
  }
  struct mem_hit hits[40];
  size_t nh = 0;
  assert_int_equal(mem_index_search(ix, "u", MEM_HASH_MODEL, query, k, ex, nex, hits, &nh), 0);
  uint32_t want[40];
  float ws[40];
  size_t nw = ref_search(rows, n, query, k, excl, want, ws);
  assert_int_equal(nh, nw);
  for (size_t i = 0; i < nh; i++) {
    char id[ID_LEN + 1];
    mk_id(id, want[i] + 1);
    assert_string_equal(hits[i].id, id);
    assert_memory_equal(&hits[i].score, &ws[i], sizeof(float));
  }
  free(excl);
}

/* A user past SPARSE_MIN_ROWS with the hash embedder's sparse vectors (a word in every
   text: long lists, read from the columns), dense rows among them, duplicates (ties),
   vectors replaced and rows removed: every search equals the reference exactly. */
static void test_sparse_lists_exact(void **state) {
  (void)state;
  enum { N = 2600 };
  static const char *const words[] = {
      "apple",  "river",  "stone",  "cloud",  "piano",  "tiger",  "garden", "lemon",
      "rocket", "violet", "candle", "harbor", "meadow", "copper", "falcon", "quartz"};
  struct ref_row *ref = calloc(N, sizeof *ref);
  struct mem_row *rows = calloc(N, sizeof *rows);
  float *vecs = calloc((size_t)N * MEM_DIM, sizeof(float));
  char(*texts)[96] = calloc(N, sizeof *texts);
  for (unsigned i = 0; i < N; i++) {
    float *v = vecs + (size_t)i * MEM_DIM;
    if (i % 13 == 5) {
      rand_unit(v, MEM_DIM); /* a dense row: drow */
    } else if (i % 17 == 3 && i > 0) {
      memcpy(v, vecs + (size_t)(i - 1) * MEM_DIM, MEM_DIM * sizeof(float)); /* a tie */
    } else {
      snprintf(texts[i], sizeof texts[i], "always %s %s near %s %u", words[next_rand() % 16],
               words[next_rand() % 16], words[next_rand() % 16], (unsigned)(next_rand() % 50));
      mem_hash_embed(texts[i], strlen(texts[i]), v);
    }
    mk_id(rows[i].id, i + 1);
    rows[i].created_at = 1000 + i / 3; /* equal times too */
    rows[i].vec = v;
    ref[i].scale = mem_quantize_i8(v, MEM_DIM, ref[i].q);
    ref[i].live = true;
    ref[i].created = rows[i].created_at;
  }
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  /* Loaded below SPARSE_MIN_ROWS, then added one by one past it (the lists are built). */
  assert_int_equal(mem_index_load(ix, "u", MEM_HASH_MODEL, rows, 1000), 0);
  for (unsigned i = 1000; i < N; i++)
    assert_int_equal(mem_index_add(ix, "u", MEM_HASH_MODEL, &rows[i]), 0);
  float q[MEM_DIM];
  for (int it = 0; it < 60; it++) {
    if (it % 6 == 5) {
      rand_unit(q, MEM_DIM);
    } else {
      char t[96];
      snprintf(t, sizeof t, "%s always %s", words[next_rand() % 16], words[next_rand() % 16]);
      mem_hash_embed(t, strlen(t), q);
    }
    check_against_ref(ix, ref, N, q, 1 + (size_t)(it % 20), (size_t)(it % 8));
  }
  /* New vectors for some rows (sparse <-> dense), some rows removed. */
  for (unsigned i = 0; i < 300; i++) {
    unsigned r = (unsigned)(next_rand() % N);
    float *v = vecs + (size_t)r * MEM_DIM;
    if (i % 2)
      rand_unit(v, MEM_DIM);
    else
      mem_hash_embed(words[i % 16], strlen(words[i % 16]), v);
    ref[r].scale = mem_quantize_i8(v, MEM_DIM, ref[r].q);
    assert_int_equal(mem_index_add(ix, "u", MEM_HASH_MODEL, &rows[r]), 0);
  }
  for (unsigned i = 0; i < 100; i++) {
    unsigned r = (unsigned)(next_rand() % (N - 60));
    if (ref[r].live) {
      assert_int_equal(mem_index_remove(ix, "u", rows[r].id), 0);
      ref[r].live = false;
    }
  }
  for (int it = 0; it < 60; it++) {
    char t[96];
    snprintf(t, sizeof t, "%s %u %u", words[next_rand() % 16], (unsigned)(next_rand() % 50),
             (unsigned)(next_rand() % 50)); /* rare words: the lists */
    mem_hash_embed(t, strlen(t), q);
    check_against_ref(ix, ref, N, q, 1 + (size_t)(it % 20), (size_t)(it % 8));
  }
  mem_index_free(ix);
  free(texts);
  free(vecs);
  free(rows);
  free(ref);
}

/* mem_index_recall is mem_recall_fuse over the index's two sides (mem_index_search and
   mem_index_keyword, kc candidates each): the same memories, fused scores (bit for bit),
   order, texts, chats, roles and neighbours; with time questions (the date boost), equal
   scores and times, exclusions, removed rows and min_score. */
static void test_recall_equals_fuse(void **state) {
  (void)state;
  enum { N = 1500, NCHAT = 7 };
  static const char *const words[] = {"apple",  "river", "stone",    "cloud",
                                      "piano",  "tiger", "garden",   "lemon",
                                      "monday", "2019",  "at 10:30", "copper"};
  struct mem_row *rows = calloc(N, sizeof *rows);
  float *vecs = calloc((size_t)N * MEM_DIM, sizeof(float));
  char(*texts)[96] = calloc(N, sizeof *texts);
  char chats[NCHAT][ID_LEN + 1];
  bool *live = calloc(N, sizeof *live);
  for (unsigned c = 0; c < NCHAT; c++)
    snprintf(chats[c], sizeof chats[c], "c%023x", c + 1);
  for (unsigned i = 0; i < N; i++) {
    if (i % 11 == 4 && i > 0)
      memcpy(texts[i], texts[i - 1], sizeof texts[i]); /* equal scores on both sides */
    else
      snprintf(texts[i], sizeof texts[i], "the %s and %s by the %s", words[next_rand() % 12],
               words[next_rand() % 12], words[next_rand() % 12]);
    mem_hash_embed(texts[i], strlen(texts[i]), vecs + (size_t)i * MEM_DIM);
    mk_id(rows[i].id, i + 1);
    rows[i].created_at = 1000 + i / 4;
    rows[i].vec = i % 29 == 7 ? NULL : vecs + (size_t)i * MEM_DIM; /* keyword side only */
    rows[i].text = texts[i];
    rows[i].chat_id = i % 5 == 0 ? NULL : chats[i % NCHAT];
    rows[i].role = (enum mem_role)(i % 2);
    live[i] = true;
  }
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  assert_int_equal(mem_index_load(ix, "u", MEM_HASH_MODEL, rows, N - 300), 0);
  for (unsigned i = N - 300; i < N; i++)
    assert_int_equal(mem_index_add(ix, "u", MEM_HASH_MODEL, &rows[i]), 0);
  for (unsigned i = 0; i < 40; i++) {
    unsigned r = (unsigned)(next_rand() % N);
    if (live[r] && mem_index_remove(ix, "u", rows[r].id) == 0)
      live[r] = false;
  }
  for (int it = 0; it < 80; it++) {
    char q[96];
    snprintf(q, sizeof q, "%s %s the %s %s", it % 3 == 0 ? "when did I see" : "where is",
             words[next_rand() % 12], words[next_rand() % 12], words[next_rand() % 12]);
    float qv[MEM_DIM];
    mem_hash_embed(q, strlen(q), qv);
    size_t kc = 8 + (size_t)(it % 30);
    char exid[6][ID_LEN + 1];
    const char *ex[6];
    size_t nex = (size_t)(it % 7);
    for (size_t e = 0; e < nex; e++) {
      mk_id(exid[e], (unsigned)(N - next_rand() % 30));
      ex[e] = exid[e];
    }
    struct mem_recall_opts o;
    mem_recall_defaults(&o);
    o.k = 1 + (size_t)(it % 10);
    o.exclude = ex;
    o.n_exclude = nex;
    o.query = q;
    if (it % 5 == 4)
      o.min_score = 0.4f;
    const float *v = it % 9 == 8 ? NULL : qv;
    struct mem_found f[16];
    size_t nf = 0;
    assert_int_equal(mem_index_recall(ix, "u", MEM_HASH_MODEL, v, q, kc, &o, true, f, &nf), 0);
    /* The reference: the two sides as the API gives them, then mem_recall_fuse. */
    struct mem_hit vh[40], kh[40];
    size_t nv = 0, nk = 0;
    if (v)
      assert_int_equal(mem_index_search(ix, "u", MEM_HASH_MODEL, v, kc, ex, nex, vh, &nv), 0);
    assert_int_equal(mem_index_keyword(ix, "u", q, kc, ex, nex, kh, &nk), 0);
    struct mem_cand vc[40], kcand[40];
    for (int side = 0; side < 2; side++) {
      for (size_t j = 0; j < (side ? nk : nv); j++) {
        const struct mem_hit *h = side ? &kh[j] : &vh[j];
        unsigned r = (unsigned)strtoul(h->id, NULL, 16) - 1;
        assert_true(r < N && live[r]);
        (side ? kcand : vc)[j] = (struct mem_cand){.id = rows[r].id,
                                                   .chat_id = rows[r].chat_id,
                                                   .text = texts[r],
                                                   .role = rows[r].role,
                                                   .created_at = rows[r].created_at,
                                                   .score = h->score};
      }
    }
    struct mem_recalled want[16];
    size_t nw = mem_recall_fuse(vc, nv, kcand, nk, &o, want);
    assert_int_equal(nf, nw);
    for (size_t i = 0; i < nf; i++) {
      unsigned r = (unsigned)strtoul(want[i].id, NULL, 16) - 1;
      assert_string_equal(f[i].id, want[i].id);
      assert_memory_equal(&f[i].score, &want[i].score, sizeof(float));
      assert_string_equal(f[i].text, texts[r]);
      assert_string_equal(f[i].chat_id, rows[r].chat_id ? rows[r].chat_id : "");
      assert_int_equal(f[i].role, rows[r].role);
      assert_int_equal(f[i].created_at, rows[r].created_at);
      /* Neighbours: the live turns just before and after it in its chat. */
      const char *before = NULL, *after = NULL;
      if (rows[r].chat_id) {
        for (unsigned b = r; b-- > 0 && !before;)
          if (live[b] && rows[b].chat_id == rows[r].chat_id)
            before = texts[b];
        for (unsigned a = r + 1; a < N && !after; a++)
          if (live[a] && rows[a].chat_id == rows[r].chat_id)
            after = texts[a];
      }
      if (before)
        assert_string_equal(f[i].before, before);
      else
        assert_null(f[i].before);
      if (after)
        assert_string_equal(f[i].after, after);
      else
        assert_null(f[i].after);
    }
    mem_found_free(f, nf);
  }
  mem_index_free(ix);
  free(live);
  free(texts);
  free(vecs);
  free(rows);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kernels_agree),
      cmocka_unit_test(test_quantize),
      cmocka_unit_test(test_quad_kernels),
      cmocka_unit_test(test_keyword_side),
      cmocka_unit_test(test_neighbours),
      cmocka_unit_test(test_compaction),
      cmocka_unit_test(test_search_matches_brute_force),
      cmocka_unit_test(test_insert_delete_exclude_isolation),
      cmocka_unit_test(test_churn),
      cmocka_unit_test(test_lru_budget),
      cmocka_unit_test(test_concurrent_readers_writer),
      cmocka_unit_test(test_quads32_kernels),
      cmocka_unit_test(test_quantize_agree),
      cmocka_unit_test(test_sparse_lists_exact),
      cmocka_unit_test(test_recall_equals_fuse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
