/* The recall service over the real SQLite store, hash embedder and builtin index:
   - the date boost reaches the search (recall_search_sync passes the query to the fusion):
     for a time question a memory with a date scores higher than with date_boost 0, and a
     memory without a date scores the same;
   - neighbouring turns (recall_deps.neighbours): each hit's context holds the turn before
     and after it in its chat, not the hit itself; notes get none; off = NULL;
   - the async search never returns another user's memory;
   - vectors the store does not keep (vec_derived) are computed again when a user loads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "memory/memory.h"
#include "recall/recall.h"
#include "store/store.h"
#include "store/store_async.h"

struct fx {
  char dir[64];
  struct store *st;
  char user[ID_LEN + 1], other[ID_LEN + 1], chat[ID_LEN + 1];
  char ids[8][ID_LEN + 1];
};

static const char *turns[] = {
    "I need to book a checkup with my dentist soon",
    "Sure, when would you like to go?",
    "My dentist appointment is on March 14 at 10:30",
    "Noted: March 14 at 10:30 with the dentist.",
    "By the way my best friend is Tomasz, we met at university",
    "Tomasz sounds like a good friend.",
};
#define NTURNS (sizeof(turns) / sizeof(turns[0]))

static void add_user(struct store *st, const char *email, char *out) {
  struct store_user_new nu = {0};
  nu.email = email;
  nu.password_hash = "x";
  assert_int_equal(store_user_create(st, &nu), 0);
  memcpy(out, nu.id, ID_LEN + 1);
}

static void add_msg(struct store *st, const char *user, const char *chat, const char *role,
                    const char *text, char *id_out) {
  struct store_message_new m = {0};
  m.chat_id = chat;
  m.user_id = user;
  m.role = role;
  m.content = text;
  assert_int_equal(store_message_insert(st, &m), 0);
  static float v[MEM_DIM];
  mem_hash_embed(text, strlen(text), v);
  assert_int_equal(store_memory_set_vector(st, m.id, MEM_HASH_MODEL, v, MEM_DIM), 0);
  if (id_out)
    memcpy(id_out, m.id, ID_LEN + 1);
}

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/engram-recall-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  char url[128];
  snprintf(url, sizeof url, "sqlite:%s/t.db", f->dir);
  assert_int_equal(store_open(url, NULL, &f->st), 0);
  add_user(f->st, "rc1@test.example", f->user);
  add_user(f->st, "rc2@test.example", f->other);
  struct store_chat c = {0};
  memcpy(c.user_id, f->user, sizeof c.user_id);
  c.title = "t";
  assert_int_equal(store_chat_create(f->st, &c), 0);
  memcpy(f->chat, c.id, sizeof f->chat);
  for (size_t i = 0; i < NTURNS; i++)
    add_msg(f->st, f->user, f->chat, i % 2 ? "model" : "user", turns[i], f->ids[i]);
  struct store_chat c2 = {0};
  memcpy(c2.user_id, f->other, sizeof c2.user_id);
  c2.title = "t";
  assert_int_equal(store_chat_create(f->st, &c2), 0);
  add_msg(f->st, f->other, c2.id, "user", "My dentist appointment is on March 15 at 9:00",
          NULL);
  add_msg(f->st, f->other, c2.id, "user", "My best friend is Tomasz too", NULL);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  store_close(f->st);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", f->dir);
  free(f);
  return 0;
}

static float score_of(const struct recall_item *it, size_t n, const char *id) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(it[i].id, id))
      return it[i].score;
  return -1.0f;
}

static void test_date_boost_reaches_search(void **state) {
  struct fx *f = *state;
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  const char *q = "When is my dentist appointment?";
  static float qv[MEM_DIM];
  mem_hash_embed(q, strlen(q), qv);
  struct mem_recall_opts on, off;
  mem_recall_defaults(&on);
  assert_true(on.date_boost > 0.0f);
  off = on;
  off.date_boost = 0.0f;
  struct recall_item *a, *b;
  size_t na, nb;
  assert_int_equal(recall_search_sync(f->st, ix, MEM_HASH_MODEL, MEM_DIM, &on, f->user, q, qv,
                                      6, NULL, 0, &a, &na),
                   0);
  assert_int_equal(recall_search_sync(f->st, ix, MEM_HASH_MODEL, MEM_DIM, &off, f->user, q, qv,
                                      6, NULL, 0, &b, &nb),
                   0);
  assert_true(na >= 3);
  assert_string_equal(a[0].id, f->ids[2]); /* the dated statement first */
  /* Dated memory: boosted by 1 + date_boost; undated one (turn 0): unchanged. */
  float s_on = score_of(a, na, f->ids[2]), s_off = score_of(b, nb, f->ids[2]);
  assert_true(s_off > 0.0f);
  assert_float_equal(s_on, s_off * (1.0f + on.date_boost), 1e-4);
  float u_on = score_of(a, na, f->ids[0]), u_off = score_of(b, nb, f->ids[0]);
  assert_true(u_off > 0.0f);
  assert_float_equal(u_on, u_off, 1e-5);
  for (size_t i = 0; i < na; i++) {
    assert_null(a[i].context); /* the sync search never fills it */
    int own = 0;
    for (size_t t = 0; t < NTURNS; t++)
      own |= !strcmp(a[i].id, f->ids[t]);
    assert_true(own);
  }
  recall_items_free(a, na);
  recall_items_free(b, nb);
  mem_index_free(ix);
}

struct wait {
  bool done;
  int status;
  struct recall_item items[8];
  size_t n;
};

static void on_found(void *ud, int status, const struct recall_item *items, size_t n) {
  struct wait *w = ud;
  w->done = true;
  w->status = status;
  w->n = n < 8 ? n : 8;
  for (size_t i = 0; i < w->n; i++) {
    w->items[i] = items[i];
    w->items[i].text = strdup(items[i].text);
    w->items[i].context = items[i].context ? strdup(items[i].context) : NULL;
  }
}

static void on_closed(void *arg) {
  *(bool *)arg = true;
}

static void search_async(struct fx *f, bool neighbours, const char *user, const char *q,
                         struct wait *w) {
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct store_async *as;
  assert_int_equal(store_async_new(&loop, f->st, &as), 0);
  struct mem_embedder *e = mem_embedder_hash_new(&loop);
  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  struct recall_deps d = {.loop = &loop,
                          .store = f->st,
                          .async = as,
                          .embedder = e,
                          .index = ix,
                          .neighbours = neighbours};
  struct recall *r;
  assert_int_equal(recall_new(&d, &r), 0);
  memset(w, 0, sizeof *w);
  assert_int_equal(recall_search(r, user, q, NULL, 3, NULL, 0, on_found, w), 0);
  while (!w->done)
    uv_run(&loop, UV_RUN_ONCE);
  bool closed = false;
  store_async_close(as, on_closed, &closed);
  while (!closed)
    uv_run(&loop, UV_RUN_ONCE);
  mem_embedder_free(e);
  uv_run(&loop, UV_RUN_DEFAULT);
  recall_free(r);
  mem_index_free(ix);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void wait_free(struct wait *w) {
  for (size_t i = 0; i < w->n; i++) {
    free(w->items[i].text);
    free(w->items[i].context);
  }
}

static void test_neighbours_as_context(void **state) {
  struct fx *f = *state;
  struct wait w;
  search_async(f, true, f->user, "Who is my best friend from university?", &w);
  assert_int_equal(w.status, 0);
  assert_true(w.n >= 1);
  assert_string_equal(w.items[0].id, f->ids[4]);
  assert_string_equal(w.items[0].text, turns[4]); /* the memory itself, unchanged */
  assert_non_null(w.items[0].context);
  char want[512];
  snprintf(want, sizeof want, "model: %s\nmodel: %s", turns[3], turns[5]);
  assert_string_equal(w.items[0].context, want);
  for (size_t i = 0; i < w.n; i++) {
    assert_non_null(w.items[i].context); /* every turn here has a neighbour */
    assert_null(strstr(w.items[i].context, w.items[i].text));
  }
  wait_free(&w);

  search_async(f, false, f->user, "Who is my best friend from university?", &w);
  assert_int_equal(w.status, 0);
  assert_true(w.n >= 1);
  for (size_t i = 0; i < w.n; i++)
    assert_null(w.items[i].context);
  wait_free(&w);
}

static void test_notes_have_no_context_and_users_stay_apart(void **state) {
  struct fx *f = *state;
  struct store_memory m = {0};
  memcpy(m.user_id, f->user, sizeof m.user_id);
  m.text = "Note: the spare key is under the blue flowerpot";
  assert_int_equal(store_memory_add(f->st, &m), 0);
  struct wait w;
  search_async(f, true, f->user, "where is the spare key flowerpot", &w);
  assert_int_equal(w.status, 0);
  assert_true(w.n >= 1);
  assert_string_equal(w.items[0].id, m.id);
  assert_null(w.items[0].context);
  wait_free(&w);

  search_async(f, true, f->other, "Who is my best friend Tomasz?", &w);
  assert_int_equal(w.status, 0);
  for (size_t i = 0; i < w.n; i++) {
    for (size_t t = 0; t < NTURNS; t++)
      assert_string_not_equal(w.items[i].id, f->ids[t]);
    if (w.items[i].context)
      for (size_t t = 0; t < NTURNS; t++)
        assert_null(strstr(w.items[i].context, turns[t]));
  }
  wait_free(&w);
}

/* A memory stored with a derived vector (store_message_new.vec_derived: the hash
   embedder's vector is not stored) gets its vector again when its user is loaded: the
   vector side finds it (cosine ~1 for its own text), though the store has no vector. */
static void test_derived_vectors_recomputed_at_load(void **state) {
  struct fx *f = *state;
  char u[ID_LEN + 1];
  add_user(f->st, "rc3@test.example", u);
  struct store_chat c = {0};
  memcpy(c.user_id, u, sizeof c.user_id);
  c.title = "t";
  assert_int_equal(store_chat_create(f->st, &c), 0);
  static const char *texts[] = {"My sister Ingrid plays the cello in Oslo",
                                "The garage door code is 4711"};
  static float v[MEM_DIM];
  char ids[2][ID_LEN + 1];
  for (size_t i = 0; i < 2; i++) {
    mem_hash_embed(texts[i], strlen(texts[i]), v);
    struct store_message_new m = {.chat_id = c.id,
                                  .user_id = u,
                                  .role = "user",
                                  .content = texts[i],
                                  .vec = v,
                                  .dims = MEM_DIM,
                                  .embed_model = MEM_HASH_MODEL,
                                  .vec_derived = true};
    assert_int_equal(store_message_insert(f->st, &m), 0);
    memcpy(ids[i], m.id, ID_LEN + 1);
  }
  struct store_vectors sv;
  assert_int_equal(store_memory_load_all(f->st, u, MEM_HASH_MODEL, &sv), 0);
  assert_int_equal(sv.n, 2);
  assert_false(sv.has_vec[0] || sv.has_vec[1]);
  store_vectors_free(&sv);

  struct mem_index *ix = mem_index_new(MEM_DIM, 0);
  struct mem_recall_opts o;
  mem_recall_defaults(&o);
  struct recall_item *items;
  size_t n;
  mem_hash_embed(texts[1], strlen(texts[1]), v);
  assert_int_equal(recall_search_sync(f->st, ix, MEM_HASH_MODEL, MEM_DIM, &o, u, texts[1], v, 2,
                                      NULL, 0, &items, &n),
                   0); /* loads the user */
  recall_items_free(items, n);
  assert_true(mem_index_loaded(ix, u));
  struct mem_hit hits[2];
  size_t nh = 0;
  assert_int_equal(mem_index_search(ix, u, MEM_HASH_MODEL, v, 2, NULL, 0, hits, &nh), 0);
  assert_int_equal(nh, 2); /* both rows have a vector */
  assert_string_equal(hits[0].id, ids[1]);
  assert_float_equal(hits[0].score, 1.0f, 0.02);
  assert_true(hits[1].score < 0.5f);
  mem_index_free(ix);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_date_boost_reaches_search, setup, teardown),
      cmocka_unit_test_setup_teardown(test_derived_vectors_recomputed_at_load, setup, teardown),
      cmocka_unit_test_setup_teardown(test_neighbours_as_context, setup, teardown),
      cmocka_unit_test_setup_teardown(test_notes_have_no_context_and_users_stay_apart, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
