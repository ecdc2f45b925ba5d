/* User isolation end to end over the real SQLite store: three users with the same
   sentences (and some of their own), every message of every user used as a query through
   the keyword side (store_memory_search), the vector side (hash embedder + builtin index
   loaded from the store) and the fusion: never a memory of another user. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "memory/memory.h"
#include "store/store.h"

#define NU 3
static const char *texts[] = {
    "My dog Biscuit loves the beach",
    "I'm flying to Lisbon on May 3 for my cousin's wedding",
    "My sister Clara works as a nurse in Porto",
    "Remind me to buy oat milk",
    "What is my dog called?",
    "The wedding is in Lisbon",
};
#define NT (sizeof(texts) / sizeof(texts[0]))

static void test_no_cross_user_results(void **state) {
  (void)state;
  char dir[] = "/tmp/engram-iso-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char url[128];
  snprintf(url, sizeof(url), "sqlite:%s/t.db", dir);
  struct store *st = NULL;
  assert_int_equal(store_open(url, NULL, &st), 0);
  char users[NU][ID_LEN + 1];
  char ids[NU][NT + 1][ID_LEN + 1];
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  static float v[MEM_DIM];
  for (int u = 0; u < NU; u++) {
    struct store_user_new nu = {0};
    char email[64];
    snprintf(email, sizeof(email), "iso%d@test.example", u);
    nu.email = email;
    nu.password_hash = "x";
    assert_int_equal(store_user_create(st, &nu), 0);
    memcpy(users[u], nu.id, sizeof(users[u]));
    struct store_chat c = {0};
    memcpy(c.user_id, users[u], sizeof(c.user_id));
    c.title = "t";
    assert_int_equal(store_chat_create(st, &c), 0);
    for (size_t i = 0; i <= NT; i++) {
      char own[64];
      snprintf(own, sizeof(own), "user %d private note number %zu", u, i);
      struct store_message_new m = {0};
      m.chat_id = c.id;
      m.user_id = users[u];
      m.role = i % 2 ? "model" : "user";
      m.content = i < NT ? texts[i] : own;
      assert_int_equal(store_message_insert(st, &m), 0);
      memcpy(ids[u][i], m.id, sizeof(ids[u][i]));
      mem_hash_embed(m.content, strlen(m.content), v);
      assert_int_equal(store_memory_set_vector(st, m.id, MEM_HASH_MODEL, v, MEM_DIM), 0);
    }
  }
  for (int u = 0; u < NU; u++) {
    struct store_vectors sv = {0};
    assert_int_equal(store_memory_load_all(st, users[u], MEM_HASH_MODEL, &sv), 0);
    assert_int_equal(sv.n, NT + 1);
    struct mem_row rows[NT + 1];
    for (size_t i = 0; i < sv.n; i++) {
      assert_true(sv.has_vec[i]);
      memset(&rows[i], 0, sizeof rows[i]);
      memcpy(rows[i].id, sv.ids[i], ID_LEN + 1);
      rows[i].created_at = sv.created_at[i];
      rows[i].vec = sv.vec + i * sv.dims;
      rows[i].text = sv.texts[i];
      rows[i].chat_id = sv.chat_ids[i];
    }
    assert_int_equal(mem_index_load(ix, users[u], MEM_HASH_MODEL, rows, sv.n), 0);
    store_vectors_free(&sv);
  }
  size_t checked = 0;
  for (int u = 0; u < NU; u++) {
    for (int qu = 0; qu < NU; qu++) {
      for (size_t i = 0; i <= NT; i++) {
        char own[64];
        snprintf(own, sizeof(own), "user %d private note number %zu", qu, i);
        const char *q = i < NT ? texts[i] : own;
        struct store_hits kh = {0};
        assert_int_equal(store_memory_search(st, users[u], q, 20, &kh), 0);
        mem_hash_embed(q, strlen(q), v);
        struct mem_hit vh[20];
        size_t nv = 0;
        assert_int_equal(
            mem_index_search(ix, users[u], MEM_HASH_MODEL, v, 20, NULL, 0, vh, &nv), 0);
        struct mem_cand vc[20], kc[20];
        for (size_t j = 0; j < nv; j++)
          vc[j] = (struct mem_cand){.id = vh[j].id, .score = vh[j].score};
        size_t nk = EG_MIN(kh.n, (size_t)20);
        for (size_t j = 0; j < nk; j++)
          kc[j] = (struct mem_cand){.id = kh.v[j].id, .score = (float)kh.v[j].score};
        struct mem_recall_opts o;
        mem_recall_defaults(&o);
        o.k = 40;
        o.query = q;
        struct mem_recalled out[40];
        size_t n = mem_recall_fuse(vc, nv, kc, nk, &o, out);
        /* Every id, from each side and fused, is one of user u's. */
        const char *all[80];
        size_t na = 0;
        for (size_t j = 0; j < nv; j++)
          all[na++] = vh[j].id;
        for (size_t j = 0; j < nk; j++)
          all[na++] = kh.v[j].id;
        for (size_t j = 0; j < n; j++)
          all[na++] = out[j].id;
        for (size_t a = 0; a < na; a++) {
          bool mine = false;
          for (size_t t = 0; t <= NT && !mine; t++)
            mine = strcmp(all[a], ids[u][t]) == 0;
          assert_true(mine);
          checked++;
        }
        /* The other user's private note is never found; one's own is. */
        if (i == NT && qu == u)
          assert_true(n > 0 && strcmp(out[0].id, ids[u][NT]) == 0);
        store_hits_free(&kh);
        /* The same through the index's own keyword side and its whole recall. */
        struct mem_hit ih[20];
        size_t ni = 0;
        assert_int_equal(mem_index_keyword(ix, users[u], q, 20, NULL, 0, ih, &ni), 0);
        struct mem_found fo[40];
        size_t nf = 0;
        assert_int_equal(
            mem_index_recall(ix, users[u], MEM_HASH_MODEL, v, q, 20, &o, true, fo, &nf), 0);
        const char *more[60];
        size_t nm = 0;
        for (size_t j = 0; j < ni; j++)
          more[nm++] = ih[j].id;
        for (size_t j = 0; j < nf; j++)
          more[nm++] = fo[j].id;
        for (size_t a = 0; a < nm; a++) {
          bool mine = false;
          for (size_t t = 0; t <= NT && !mine; t++)
            mine = strcmp(more[a], ids[u][t]) == 0;
          assert_true(mine);
          checked++;
        }
        if (i == NT && qu == u) {
          assert_true(ni > 0 && strcmp(ih[0].id, ids[u][NT]) == 0);
          assert_true(nf > 0 && strcmp(fo[0].id, ids[u][NT]) == 0);
        }
        mem_found_free(fo, nf);
      }
    }
  }
  assert_true(checked > 100);
  mem_index_free(ix);
  store_close(st);
  char cmd[160];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_cross_user_results),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
