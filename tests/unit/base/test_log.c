/* Unit tests for src/base/log.c: request id validation and generation, the thread's log
   context, and the JSON / text line formats carrying it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/base.h"

static bool valid(const char *s) {
  return log_request_id_valid(s, strlen(s));
}

static void test_request_id_valid(void **state) {
  (void)state;
  assert_true(valid("a"));
  assert_true(valid("abc-DEF_123.x"));
  assert_true(valid("0f3c2a9b-7c1e-4d3a-9b2f-1c2d3e4f5a6b")); /* a UUID */
  char max[LOG_REQUEST_ID_MAX + 2];
  memset(max, 'z', sizeof max);
  max[LOG_REQUEST_ID_MAX] = '\0';
  assert_true(valid(max)); /* 64 characters */
  max[LOG_REQUEST_ID_MAX] = 'z';
  max[LOG_REQUEST_ID_MAX + 1] = '\0';
  assert_false(valid(max)); /* 65 */
  assert_false(valid(""));
  assert_false(log_request_id_valid(NULL, 0));
  const char *bad[] = {"a b", "a\"b", "a\\b", "a\nb",        "a\rb", "a/b",  "a:b",     "a=b",
                       "a;b", "a,b",  "a{b",  "caf\xc3\xa9", "\x01", "a\tb", "<script>"};
  for (size_t i = 0; i < EG_ARRAY_LEN(bad); i++)
    assert_false(valid(bad[i]));
  /* Only len bytes count: a NUL or anything after them is not looked at. */
  assert_true(log_request_id_valid("ok bad", 2));
  assert_false(log_request_id_valid("a\0b", 3));
}

static void test_request_id_new(void **state) {
  (void)state;
  char a[LOG_REQUEST_ID_MAX + 1], b[LOG_REQUEST_ID_MAX + 1];
  log_request_id_new(a);
  log_request_id_new(b);
  assert_int_equal(strlen(a), 16);
  assert_true(valid(a));
  for (const char *p = a; *p; p++)
    assert_non_null(strchr("0123456789abcdef", *p));
  assert_string_not_equal(a, b);
  /* Many in a row: all different (a thread's ids never repeat). */
  struct hmap seen = {0};
  for (int i = 0; i < 20000; i++) {
    log_request_id_new(a);
    assert_int_equal(strlen(a), 16);
    assert_null(hmap_put(&seen, a, &seen));
  }
  hmap_free(&seen);
}

static void test_numbers(void **state) {
  (void)state;
  const struct {
    double v;
    const char *text;
  } cases[] = {{200, "200"},
               {0, "0"},
               {0.032, "0.032"},
               {1.25, "1.25"},
               {-1.5, "-1.5"},
               {0.0004, "0"},
               {0.0006, "0.001"},
               {12.3456, "12.346"},
               {1e14, "100000000000000"},
               {1e20, "1e+20"},
               {-0.0001, "0"},
               {429, "429"}};
  for (size_t i = 0; i < EG_ARRAY_LEN(cases); i++) {
    struct log_field f = {"n", NULL, cases[i].v};
    char line[256], want[256];
    log_format_line(line, sizeof line, false, "T", LOG_INFO, NULL, &f, 1, "m");
    snprintf(want, sizeof want, "T info  m n=%s", cases[i].text);
    assert_string_equal(line, want);
  }
}

static void test_ctx(void **state) {
  (void)state;
  struct log_ctx saved, now;
  log_ctx_get(&saved);
  assert_string_equal(saved.request_id, "");
  assert_string_equal(saved.sid, "");
  log_ctx_set_request_id("req-1xyz", 5);
  log_ctx_set_sid("abcdefghijklmnopqrst");
  log_ctx_get(&now);
  assert_string_equal(now.request_id, "req-1");
  assert_string_equal(now.sid, "abcdefghijklmnopqrst");
  log_ctx_set_sid(NULL);
  log_ctx_get(&now);
  assert_string_equal(now.request_id, "req-1");
  assert_string_equal(now.sid, "");
  char big[200];
  memset(big, 'q', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  log_ctx_set_request_id(big, strlen(big)); /* cut, never overflows */
  log_ctx_set_sid(big);
  log_ctx_get(&now);
  assert_int_equal(strlen(now.request_id), LOG_REQUEST_ID_MAX);
  assert_int_equal(strlen(now.sid), LOG_SID_MAX);
  log_ctx_set(&saved);
  log_ctx_get(&now);
  assert_string_equal(now.request_id, "");
  assert_string_equal(now.sid, "");
}

static json_t *parse(const char *line) {
  json_error_t e;
  json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &e);
  if (!j)
    fail_msg("not JSON (%s): %s", e.text, line);
  return j;
}

static void test_json_line(void **state) {
  (void)state;
  char line[4096];
  const char *ts = "2026-01-02T03:04:05.678Z";
  log_format_line(line, sizeof line, true, ts, LOG_INFO, NULL, NULL, 0, "hello \"x\"\n\\");
  json_t *j = parse(line);
  assert_string_equal(json_string_value(json_object_get(j, "ts")), ts);
  assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
  assert_string_equal(json_string_value(json_object_get(j, "msg")), "hello \"x\"\n\\");
  assert_null(json_object_get(j, "request_id"));
  assert_null(json_object_get(j, "sid"));
  json_decref(j);

  struct log_ctx c = {0};
  strcpy(c.request_id, "abc-123");
  log_format_line(line, sizeof line, true, ts, LOG_WARN, &c, NULL, 0, "m");
  j = parse(line);
  assert_string_equal(json_string_value(json_object_get(j, "request_id")), "abc-123");
  assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
  assert_null(json_object_get(j, "sid"));
  json_decref(j);

  strcpy(c.sid, "SIDsid0123456789abcd");
  log_format_line(line, sizeof line, true, ts, LOG_ERROR, &c, NULL, 0, "m");
  j = parse(line);
  assert_string_equal(json_string_value(json_object_get(j, "request_id")), "abc-123");
  assert_string_equal(json_string_value(json_object_get(j, "sid")), "SIDsid0123456789abcd");
  json_decref(j);

  const struct log_field f[] = {{"method", "GET", 0},
                                {"path", "/api/\"x\"", 0},
                                {"status", NULL, 404},
                                {"duration_ms", NULL, 0.125}};
  log_format_line(line, sizeof line, true, ts, LOG_INFO, &c, f, 4, "access");
  j = parse(line);
  assert_string_equal(json_string_value(json_object_get(j, "method")), "GET");
  assert_string_equal(json_string_value(json_object_get(j, "path")), "/api/\"x\"");
  assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
  assert_true(json_real_value(json_object_get(j, "duration_ms")) == 0.125);
  assert_string_equal(json_string_value(json_object_get(j, "request_id")), "abc-123");
  json_decref(j);
}

/* A message too long for the line is cut, and the line stays one valid JSON object that
   still carries the context, whatever the cut point. */
static void test_json_line_cut(void **state) {
  (void)state;
  struct log_ctx c = {0};
  memset(c.request_id, 'r', LOG_REQUEST_ID_MAX);
  memset(c.sid, 's', LOG_SID_MAX);
  char msg[1200];
  for (size_t i = 0; i < sizeof msg - 1; i++)
    msg[i] = i % 7 == 0 ? '"' : i % 11 == 0 ? '\x01' : 'm';
  msg[sizeof msg - 1] = '\0';
  char longv[600];
  memset(longv, '\\', sizeof longv - 1); /* escapes to twice its length */
  longv[sizeof longv - 1] = '\0';
  const struct log_field f[] = {{"path", longv, 0}, {"status", NULL, 200}, {"k", "\"", 0}};
  for (size_t cap = 1400; cap < 4000; cap += 37) {
    char line[4000];
    log_format_line(line, cap, true, "2026-01-02T03:04:05.678Z", LOG_DEBUG, &c, f, 3, msg);
    assert_true(strlen(line) < cap);
    json_t *j = parse(line);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "request_id"))),
                     LOG_REQUEST_ID_MAX);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "sid"))), LOG_SID_MAX);
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
    assert_string_equal(json_string_value(json_object_get(j, "k")), "\"");
    const char *path = json_string_value(json_object_get(j, "path"));
    assert_true(strlen(path) > 100 && strlen(path) <= LOG_FIELD_MAX);
    json_decref(j);
  }
}

static void test_text_line(void **state) {
  (void)state;
  char line[512];
  struct log_ctx c = {0};
  log_format_line(line, sizeof line, false, "2026-01-02T03:04:05.678Z", LOG_INFO, &c, NULL, 0,
                  "hi");
  assert_string_equal(line, "2026-01-02T03:04:05.678Z info  hi");
  strcpy(c.request_id, "r1");
  strcpy(c.sid, "s1");
  const struct log_field f[] = {{"method", "GET", 0}, {"duration_ms", NULL, 1.25}};
  log_format_line(line, sizeof line, false, "2026-01-02T03:04:05.678Z", LOG_INFO, &c, f, 2,
                  "hi");
  assert_string_equal(line, "2026-01-02T03:04:05.678Z info  hi method=GET duration_ms=1.25 "
                            "request_id=r1 sid=s1");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_id_valid),
      cmocka_unit_test(test_request_id_new),
      cmocka_unit_test(test_ctx),
      cmocka_unit_test(test_json_line),
      cmocka_unit_test(test_json_line_cut),
      cmocka_unit_test(test_text_line),
      cmocka_unit_test(test_numbers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
