/* Recall fusion: weights, normalisation, merging, exclusions, recency tie-break, k. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "memory/memory.h"

#define ID(n) "00000000000000000000000" #n

static void test_defaults(void **state) {
  (void)state;
  struct mem_recall_opts o;
  mem_recall_defaults(&o);
  assert_int_equal(o.k, 3);
  assert_true(o.w_kw > o.w_vec); /* measured: BM25 is the stronger side with hash */
  assert_true(o.w_vec > 0);
}

static void test_fuse_merges_and_ranks(void **state) {
  (void)state;
  struct mem_cand vec[] = {
      {.id = ID(1), .text = "one", .score = 0.9f, .created_at = 10},
      {.id = ID(2), .text = "two", .score = 0.45f, .created_at = 20},
      {.id = ID(3), .text = "three", .score = -0.2f, .created_at = 30},
  };
  struct mem_cand kw[] = {
      {.id = ID(2), .chat_id = ID(9), .score = 12.0f, .created_at = 20},
      {.id = ID(4), .text = "four", .score = 6.0f, .created_at = 40, .role = MEM_ROLE_MODEL},
  };
  struct mem_recall_opts o;
  mem_recall_defaults(&o);
  o.k = 10;
  o.w_vec = 0.5f;
  o.w_kw = 0.5f;
  struct mem_recalled out[10];
  size_t n = mem_recall_fuse(vec, 3, kw, 2, &o, out);
  assert_int_equal(n, 4);
  /* 2: 0.5*0.5 + 0.5*1 = 0.75; 1: 0.5*1 = 0.5; 4: 0.5*0.5 = 0.25; 3: 0 (negative cos). */
  assert_string_equal(out[0].id, ID(2));
  assert_float_equal(out[0].score, 0.75f, 1e-5);
  assert_string_equal(out[0].text, "two");    /* from the vector side */
  assert_string_equal(out[0].chat_id, ID(9)); /* from the keyword side */
  assert_float_equal(out[0].vec_score, 0.45f, 1e-6);
  assert_float_equal(out[0].kw_score, 12.0f, 1e-6);
  assert_string_equal(out[1].id, ID(1));
  assert_float_equal(out[1].score, 0.5f, 1e-5);
  assert_string_equal(out[2].id, ID(4));
  assert_int_equal(out[2].role, MEM_ROLE_MODEL);
  assert_string_equal(out[3].id, ID(3));
  assert_float_equal(out[3].score, 0.0f, 1e-6);
  /* min_score drops the weak tail; k caps. */
  o.min_score = 0.3f;
  assert_int_equal(mem_recall_fuse(vec, 3, kw, 2, &o, out), 2);
  o.min_score = 0;
  o.k = 1;
  assert_int_equal(mem_recall_fuse(vec, 3, kw, 2, &o, out), 1);
  assert_string_equal(out[0].id, ID(2));
  /* Keyword only weight: the keyword order. */
  o.k = 3;
  o.w_vec = 0;
  o.w_kw = 1;
  assert_int_equal(mem_recall_fuse(vec, 3, kw, 2, &o, out), 3);
  assert_string_equal(out[0].id, ID(2));
  assert_string_equal(out[1].id, ID(4));
}

static void test_exclusions_and_bad_ids(void **state) {
  (void)state;
  struct mem_cand vec[] = {
      {.id = ID(1), .score = 0.9f},
      {.id = "not-an-id", .score = 1.0f},
      {.id = NULL, .score = 1.0f},
      {.id = ID(5), .score = 0.3f},
  };
  struct mem_cand kw[] = {{.id = ID(1), .score = 3.0f}, {.id = ID(6), .score = 1.0f}};
  const char *ex[] = {ID(1), ID(6)};
  struct mem_recall_opts o;
  mem_recall_defaults(&o);
  o.exclude = ex;
  o.n_exclude = 2;
  struct mem_recalled out[3];
  size_t n = mem_recall_fuse(vec, 4, kw, 2, &o, out);
  assert_int_equal(n, 1);
  assert_string_equal(out[0].id, ID(5));
  /* Nothing at all. */
  assert_int_equal(mem_recall_fuse(NULL, 0, NULL, 0, &o, out), 0);
  /* NULL options mean the defaults. */
  assert_int_equal(mem_recall_fuse(vec, 4, kw, 2, NULL, out), 3);
}

static void test_recency_breaks_ties(void **state) {
  (void)state;
  struct mem_cand kw[] = {
      {.id = ID(1), .score = 2.0f, .created_at = 100},
      {.id = ID(2), .score = 2.0f, .created_at = 300},
      {.id = ID(3), .score = 2.0f, .created_at = 200},
  };
  struct mem_recalled out[3];
  assert_int_equal(mem_recall_fuse(NULL, 0, kw, 3, NULL, out), 3);
  assert_string_equal(out[0].id, ID(2));
  assert_string_equal(out[1].id, ID(3));
  assert_string_equal(out[2].id, ID(1));
}

static void test_time_questions(void **state) {
  (void)state;
  assert_true(mem__time_question("When is my flight to Lisbon?"));
  assert_true(mem__time_question("What time is my dentist appointment?"));
  assert_true(mem__time_question("which DAY do I leave"));
  assert_false(mem__time_question("What is my dog called?"));
  assert_false(mem__time_question("Whenever you like"));
  assert_false(mem__time_question(NULL));
  assert_true(mem__has_date("I'm flying to Lisbon on May 3."));
  assert_true(mem__has_date("dentist at 10:15"));
  assert_true(mem__has_date("moved here in 2019"));
  assert_true(mem__has_date("on the 21st"));
  assert_true(mem__has_date("see you tomorrow"));
  assert_true(mem__has_date("due 12/05"));
  assert_false(mem__has_date("maybe later"));
  assert_false(mem__has_date("I have 3 cats and 12345 stamps"));
  assert_false(mem__has_date("the firstly thing")); /* no digits before "st" */
  assert_false(mem__has_date(NULL));
  /* The boost moves a dated memory above an undated one for a time question only. */
  struct mem_cand kw[] = {
      {.id = ID(1), .text = "my flight to Lisbon is booked", .score = 10.0f},
      {.id = ID(2), .text = "flying to Lisbon on May 3", .score = 8.0f},
  };
  struct mem_recall_opts o;
  mem_recall_defaults(&o);
  assert_true(o.date_boost > 0);
  struct mem_recalled out[2];
  o.query = "When is my flight to Lisbon?";
  assert_int_equal(mem_recall_fuse(NULL, 0, kw, 2, &o, out), 2);
  assert_string_equal(out[0].id, ID(2));
  o.query = "Where am I flying?";
  assert_int_equal(mem_recall_fuse(NULL, 0, kw, 2, &o, out), 2);
  assert_string_equal(out[0].id, ID(1));
  o.query = NULL;
  assert_int_equal(mem_recall_fuse(NULL, 0, kw, 2, &o, out), 2);
  assert_string_equal(out[0].id, ID(1));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_fuse_merges_and_ranks),
      cmocka_unit_test(test_exclusions_and_bad_ids),
      cmocka_unit_test(test_recency_breaks_ties),
      cmocka_unit_test(test_time_questions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
