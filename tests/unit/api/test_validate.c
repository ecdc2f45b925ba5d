/* Unit tests for the REST body validation of src/api (register, login, chat title). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api.h"

static const char *reg_msg(const char *body) {
  struct api_register_body b;
  const char *msg = NULL;
  int rc = api_parse_register(body, strlen(body), &b, &msg);
  if (rc == 0) {
    api_register_body_clear(&b);
    return NULL;
  }
  assert_int_equal(rc, EG_EINVAL);
  assert_null(b.password);
  return msg;
}

static void test_register_ok(void **state) {
  (void)state;
  const char *body = "{\"email\":\"  Alice@Example.com \",\"password\":\"s3cret-pass\","
                     "\"fullName\":{\"firstName\":\" Alice \",\"lastName\":\"Liddell\"}}";
  struct api_register_body b;
  const char *msg;
  assert_int_equal(api_parse_register(body, strlen(body), &b, &msg), 0);
  assert_string_equal(b.email, "alice@example.com");
  assert_int_equal(b.password_len, 11);
  assert_memory_equal(b.password, "s3cret-pass", 11);
  assert_string_equal(b.first_name, "Alice");
  assert_string_equal(b.last_name, "Liddell");
  api_register_body_clear(&b);
  assert_null(b.password);
  /* Unicode names count characters, not bytes: 100 x "é" (200 bytes) is fine. */
  char big[600];
  char names[300] = "";
  for (int i = 0; i < 100; i++)
    strcat(names, "\xc3\xa9");
  snprintf(big, sizeof big,
           "{\"email\":\"a@b.co\",\"password\":\"12345678\",\"fullName\":{\"firstName\":\"%s\","
           "\"lastName\":\"x\"}}",
           names);
  assert_null(reg_msg(big));
  strcat(names, "e");
  snprintf(big, sizeof big,
           "{\"email\":\"a@b.co\",\"password\":\"12345678\",\"fullName\":{\"firstName\":\"%s\","
           "\"lastName\":\"x\"}}",
           names);
  assert_string_equal(reg_msg(big), "fullName.firstName must be 1 to 100 characters");
}

static void test_register_errors(void **state) {
  (void)state;
  const char *fn = ",\"fullName\":{\"firstName\":\"A\",\"lastName\":\"B\"}}";
  struct {
    const char *body, *msg;
  } cases[] = {
      {"", "Request body must be a JSON object"},
      {"[]", "Request body must be a JSON object"},
      {"\"x\"", "Request body must be a JSON object"},
      {"{", "Invalid JSON in request body"},
      {"{\"email\":1}x", "Invalid JSON in request body"},
      {"{\"email\":\"a@b.co\",\"email\":\"c@d.co\"}", "Invalid JSON in request body"},
      {"{}", "email is required"},
      {"{\"email\":null}", "email is required"},
      {"{\"email\":5}", "email must be a string"},
      {"{\"email\":\"a\\u0000@b.co\"}", "email must be a string"},
      {"{\"email\":\"nope\"}", "email is not a valid email address"},
      {"{\"email\":\"a@b.co\"}", "password is required"},
      {"{\"email\":\"a@b.co\",\"password\":[]}", "password must be a string"},
      {"{\"email\":\"a@b.co\",\"password\":\"1234567\"}",
       "Password must be at least 8 bytes long"},
      {"{\"email\":\"a@b.co\",\"password\":\"12345678\"}", "fullName is required"},
      {"{\"email\":\"a@b.co\",\"password\":\"12345678\",\"fullName\":\"A B\"}",
       "fullName must be an object {firstName, lastName}"},
      {"{\"email\":\"a@b.co\",\"password\":\"12345678\",\"fullName\":{}}",
       "fullName.firstName is required"},
      {"{\"email\":\"a@b.co\",\"password\":\"12345678\",\"fullName\":{\"firstName\":1}}",
       "fullName.firstName must be a string"},
      {"{\"email\":\"a@b.co\",\"password\":\"12345678\",\"fullName\":{\"firstName\":\"  \"}}",
       "fullName.firstName must be 1 to 100 characters"},
      {"{\"email\":\"a@b.co\",\"password\":\"12345678\",\"fullName\":{\"firstName\":\"A\"}}",
       "fullName.lastName is required"},
      {"{\"email\":\"a@b.co\",\"password\":\"12345678\",\"fullName\":{\"firstName\":\"A\","
       "\"lastName\":true}}",
       "fullName.lastName must be a string"},
      {"{\"email\":\"a@b.co\",\"password\":\"12345678\",\"fullName\":{\"firstName\":\"A\","
       "\"lastName\":\"a\\u0007b\"}}",
       "fullName.lastName must be 1 to 100 characters"},
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(cases); i++) {
    const char *m = reg_msg(cases[i].body);
    if (m == NULL || strcmp(m, cases[i].msg) != 0)
      fail_msg("case %zu %s: got '%s' want '%s'", i, cases[i].body, m ? m : "(ok)",
               cases[i].msg);
  }
  char pw[300];
  memset(pw, 'p', 129);
  pw[129] = '\0';
  char body[600];
  snprintf(body, sizeof body, "{\"email\":\"a@b.co\",\"password\":\"%s\"%s", pw, fn);
  assert_string_equal(reg_msg(body), "Password must be at most 128 bytes long");
  pw[128] = '\0';
  snprintf(body, sizeof body, "{\"email\":\"a@b.co\",\"password\":\"%s\"%s", pw, fn);
  assert_null(reg_msg(body));
}

static void test_register_splits(void **state) {
  (void)state;
  /* Every prefix of a valid body is refused with a 400 message, never a crash. */
  const char *body = "{\"email\":\"a@b.co\",\"password\":\"12345678\","
                     "\"fullName\":{\"firstName\":\"A\",\"lastName\":\"B\"}}";
  size_t n = strlen(body);
  for (size_t i = 0; i < n; i++) {
    struct api_register_body b;
    const char *msg = NULL;
    char *copy = malloc(i + 1);
    memcpy(copy, body, i);
    assert_int_equal(api_parse_register(copy, i, &b, &msg), EG_EINVAL);
    assert_non_null(msg);
    free(copy);
  }
}

static void test_login(void **state) {
  (void)state;
  struct api_login_body b;
  const char *msg;
  const char *ok = "{\"email\":\"Bob@Example.com\",\"password\":\"hunter22\"}";
  assert_int_equal(api_parse_login(ok, strlen(ok), &b, &msg), 0);
  assert_string_equal(b.email, "bob@example.com");
  assert_int_equal(b.password_len, 8);
  api_login_body_clear(&b);
  /* Malformed email or out-of-bounds password: accepted for a uniform 401 (email ""). */
  const char *bad_email = "{\"email\":\"bob\",\"password\":\"hunter22\"}";
  assert_int_equal(api_parse_login(bad_email, strlen(bad_email), &b, &msg), 0);
  assert_string_equal(b.email, "");
  api_login_body_clear(&b);
  const char *short_pw = "{\"email\":\"bob@example.com\",\"password\":\"x\"}";
  assert_int_equal(api_parse_login(short_pw, strlen(short_pw), &b, &msg), 0);
  assert_string_equal(b.email, "");
  api_login_body_clear(&b);
  const char *missing = "{\"email\":\"bob@example.com\"}";
  assert_int_equal(api_parse_login(missing, strlen(missing), &b, &msg), EG_EINVAL);
  assert_string_equal(msg, "email and password are required");
  const char *types = "{\"email\":\"bob@example.com\",\"password\":12345678}";
  assert_int_equal(api_parse_login(types, strlen(types), &b, &msg), EG_EINVAL);
  assert_string_equal(msg, "email and password must be strings");
  assert_int_equal(api_parse_login("nope", 4, &b, &msg), EG_EINVAL);
  assert_string_equal(msg, "Invalid JSON in request body");
}

static void test_title(void **state) {
  (void)state;
  char *t;
  const char *msg;
  const char *ok = "{\"title\":\"  My first chat  \"}";
  assert_int_equal(api_parse_title(ok, strlen(ok), &t, &msg), 0);
  assert_string_equal(t, "My first chat");
  free(t);
  const char *bad[][2] = {
      {"{}", "title is required"},
      {"{\"title\":null}", "title is required"},
      {"{\"title\":3}", "title must be a string"},
      {"{\"title\":\"\"}", "title must be 1 to 200 characters, without control characters"},
      {"{\"title\":\" \\n \"}",
       "title must be 1 to 200 characters, without control characters"},
      {"{\"title\":\"a\\u0001\"}",
       "title must be 1 to 200 characters, without control characters"},
      {"{\"title\":\"a\\u0000b\"}", "title must be a string"},
      {"[1]", "Request body must be a JSON object"},
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(bad); i++) {
    assert_int_equal(api_parse_title(bad[i][0], strlen(bad[i][0]), &t, &msg), EG_EINVAL);
    assert_null(t);
    assert_string_equal(msg, bad[i][1]);
  }
  char body[400];
  char title[260];
  memset(title, 't', 200);
  title[200] = '\0';
  snprintf(body, sizeof body, "{\"title\":\"%s\"}", title);
  assert_int_equal(api_parse_title(body, strlen(body), &t, &msg), 0);
  assert_int_equal(strlen(t), 200);
  free(t);
  title[200] = 't';
  title[201] = '\0';
  snprintf(body, sizeof body, "{\"title\":\"%s\"}", title);
  assert_int_equal(api_parse_title(body, strlen(body), &t, &msg), EG_EINVAL);
}

static void test_note(void **state) {
  (void)state;
  char *t;
  int64_t at;
  const char *msg;
  const char *ok = "{\"text\":\"I like green tea\\nand cats\"}";
  assert_int_equal(api_parse_note(ok, strlen(ok), &t, &at, &msg), 0);
  assert_string_equal(t, "I like green tea\nand cats");
  assert_int_equal(at, 0);
  free(t);
  const char *iso = "{\"text\":\"x\",\"createdAt\":\"2024-01-02T03:04:05.678Z\"}";
  assert_int_equal(api_parse_note(iso, strlen(iso), &t, &at, &msg), 0);
  assert_int_equal(at, 1704164645678);
  free(t);
  const char *ms = "{\"text\":\"x\",\"createdAt\":1704164645678}";
  assert_int_equal(api_parse_note(ms, strlen(ms), &t, &at, &msg), 0);
  assert_int_equal(at, 1704164645678);
  free(t);
  const char *bad[][2] = {
      {"{}", "text is required"},
      {"{\"text\":1}", "text must be a string"},
      {"{\"text\":\" \\n \"}", "text must be 1 to 65536 bytes and not only whitespace"},
      {"{\"text\":\"a\\u0000\"}", "text must be a string"},
      {"{\"text\":\"x\",\"createdAt\":\"yesterday\"}", "createdAt must be an ISO 8601 date"},
      {"{\"text\":\"x\",\"createdAt\":true}",
       "createdAt must be an ISO 8601 date or epoch milliseconds"},
      {"{\"text\":\"x\",\"createdAt\":-5}", "createdAt is out of range"},
      {"{\"text\":\"x\",\"createdAt\":\"2999-01-01T00:00:00Z\"}", "createdAt is out of range"},
  };
  for (size_t i = 0; i < EG_ARRAY_LEN(bad); i++) {
    assert_int_equal(api_parse_note(bad[i][0], strlen(bad[i][0]), &t, &at, &msg), EG_EINVAL);
    assert_null(t);
    assert_string_equal(msg, bad[i][1]);
  }
  size_t big = API_NOTE_MAX + 1;
  char *body = malloc(big + 32);
  memcpy(body, "{\"text\":\"", 9);
  memset(body + 9, 'n', big);
  memcpy(body + 9 + big, "\"}", 3);
  assert_int_equal(api_parse_note(body, strlen(body), &t, &at, &msg), EG_EINVAL);
  body[9 + big - 1] = '"';
  body[9 + big] = '}';
  body[9 + big + 1] = '\0';
  assert_int_equal(api_parse_note(body, strlen(body), &t, &at, &msg), 0);
  assert_int_equal(strlen(t), API_NOTE_MAX);
  free(t);
  free(body);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_register_ok),     cmocka_unit_test(test_register_errors),
      cmocka_unit_test(test_register_splits), cmocka_unit_test(test_login),
      cmocka_unit_test(test_title),           cmocka_unit_test(test_note),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
